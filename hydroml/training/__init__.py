"""hydroml.training: YAML configs, the training loop, run directories, exact resume and several processes.

>>> from hydroml.training import train, load_run     # doctest: +SKIP
>>> run_dir = train("examples/demo_lstm.yaml")        # runs/demo_lstm_<YYYYmmdd_HHMMSS>/
>>> model, config, normaliser = load_run(run_dir)

``hydroml train CONFIG``, ``hydroml train --resume RUN_DIR`` and ``torchrun --nproc_per_node=2 -m hydroml train
CONFIG`` are the command-line faces of :func:`train`.
"""

from hydroml.training.config import Config, config_from_dict, config_to_dict, load_config
from hydroml.training.loop import build_model, train
from hydroml.training.runs import load_checkpoint, load_run

__all__ = [
    "Config",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "train",
    "build_model",
    "load_run",
    "load_checkpoint",
]
