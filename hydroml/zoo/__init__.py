"""The model zoo: named pretrained models ``architecture.tag`` with their metadata cards.

>>> import hydroml.zoo
>>> hydroml.zoo.list()  # doctest: +SKIP
['ealstm.demo_discharge', 'lstm.demo_discharge', 'unet.demo_evaporation']
>>> model = hydroml.zoo.load("lstm.demo_discharge")  # doctest: +SKIP
>>> print(model.card.summary())  # doctest: +SKIP

Weights are safetensors files shipped as package data, trained on the built-in (synthetic) demo data by
``scripts/train_zoo.py``, which anyone can re-run to reproduce them.
"""

from hydroml.zoo.cards import ModelCard
from hydroml.zoo.registry import get_card, list_models, load, reproduce_scores, save

list = list_models  # noqa: A001 - ``hydroml.zoo.list()`` is the public name

__all__ = ["ModelCard", "get_card", "list", "list_models", "load", "reproduce_scores", "save"]
