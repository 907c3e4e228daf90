"""The zoo's registry: model cards and safetensors weights shipped in ``hydroml/zoo/weights/``.

Each model ``architecture.tag`` is a pair of files, ``<name>.json`` (its :class:`~hydroml.zoo.cards.ModelCard`)
and ``<name>.safetensors`` (its weights). ``scripts/train_zoo.py`` writes both from the demo data.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from hydroml.exceptions import ConfigError, DataError
from hydroml.zoo.cards import ModelCard

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def _weights_dir() -> Path:
    return Path(os.environ.get("HYDROML_ZOO_DIR", WEIGHTS_DIR))


def list_models(pattern: str = "*") -> list[str]:
    """Names of the pretrained models matching a glob ``pattern``, sorted.

    Parameters
    ----------
    pattern : str
        Shell-style pattern, e.g. ``"lstm.*"``.

    Returns
    -------
    list of str
    """
    root = _weights_dir()
    names = [p.stem for p in root.glob("*.json") if (root / f"{p.stem}.safetensors").is_file()]
    return sorted(n for n in names if fnmatch.fnmatch(n, pattern))


def get_card(name: str) -> ModelCard:
    """The metadata record of a pretrained model.

    Parameters
    ----------
    name : str
        Zoo name, e.g. ``"lstm.demo_discharge"``.

    Returns
    -------
    ModelCard

    Raises
    ------
    ConfigError
        If ``name`` is not in the zoo (the message lists the available names).
    """
    path = _weights_dir() / f"{name}.json"
    if not path.is_file() or not path.with_suffix(".safetensors").is_file():
        raise ConfigError(
            f"no pretrained model {name!r} in the zoo; available: {', '.join(list_models()) or 'none'}"
        )
    return ModelCard.read(path)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load(name: str, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Load a pretrained model: its network with the weights, in ``eval()`` mode.

    The returned module carries its metadata as ``model.card`` (:class:`ModelCard`) and everything
    :func:`hydroml.forecast.forecast` needs as ``model.forecast_model``, so ``forecast(model, data, ...)`` works.

    Parameters
    ----------
    name : str
        Zoo name, e.g. ``"lstm.demo_discharge"``; see :func:`list_models`.
    device : str or torch.device
        Where to put the model.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    ConfigError
        Unknown name.
    DataError
        The weights file does not match the card (checksum) or the architecture.

    Examples
    --------
    >>> import hydroml.zoo
    >>> model = hydroml.zoo.load("lstm.demo_discharge")  # doctest: +SKIP
    >>> model.card.inputs  # doctest: +SKIP
    {'pr': 'mm/day', 'tas': 'degC', ...}
    """
    from safetensors.torch import load_file

    from hydroml.forecast import ForecastModel
    from hydroml.models import create

    card = get_card(name)
    path = _weights_dir() / f"{name}.safetensors"
    digest = _sha256(path)
    if card.weights_sha256 and digest != card.weights_sha256:
        raise DataError(
            f"{path}: sha256 {digest} does not match the card's weights_sha256 {card.weights_sha256}; "
            "re-run scripts/train_zoo.py or reinstall hydroml"
        )
    model = create(card.architecture, **card.model_params)
    state = load_file(str(path))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise DataError(f"{path}: weights do not fit {card.architecture} {card.model_params}: {err}") from err
    model = model.to(device).eval()
    model.card = card
    model.forecast_model = ForecastModel(
        model=model,
        architecture=card.architecture,
        inputs=list(card.inputs),
        static_inputs=list(card.static_inputs),
        targets=list(card.targets),
        normaliser=card.normalisation,
        seq_len=int(card.seq_len),
        lags=int(card.lags),
        valid_mask=card.valid_mask,
        config=card.config,
        model_id=card.name,
        model_version=card.version,
        source=f"hydroml.zoo:{card.name}",
    )
    return model


def reproduce_scores(model: torch.nn.Module | str, data: Any = None) -> dict[str, Any]:
    """Recompute a zoo model's scores on its test period (the numbers recorded in its card).

    Basin models: forecast the card's test period with ``card.forecast_mode`` and score NSE and KGE per basin
    against the demo discharge; gridded models: NSE and KGE per cell over time (valid cells) and the RMSE.

    Parameters
    ----------
    model : torch.nn.Module or str
        A model from :func:`load`, or a zoo name.
    data : xarray.Dataset, optional
        The data to score on (default: the demo product named in the card's config).

    Returns
    -------
    dict
        ``{"nse_median": ..., "kge_median": ..., "nse": {basin: ...}, "kge": {...}}`` (basin models) or
        ``{"nse_median": ..., "kge_median": ..., "rmse": ...}`` (gridded).
    """
    import numpy as np

    from hydroml.evaluation import evaluate
    from hydroml.forecast import forecast

    if isinstance(model, str):
        model = load(model)
    card: ModelCard = model.card
    if data is None:
        from hydroml.data.demo import load_demo

        data = load_demo(card.config.get("data", {}).get("product") or ("monthly" if card.lags else "basins"))
    target = next(iter(card.targets))
    start, end = card.test_period
    pred = forecast(model, data, start, end, mode=card.forecast_mode, progress=False)
    obs = data[target].sel(time=slice(start, end))
    sim = pred[target]
    if "basin" in sim.dims:
        sc = evaluate(obs, sim, ["nse", "kge"], dim="time")
        nse = {str(b): round(float(v), 6) for b, v in zip(sc["basin"].values, sc["nse"].values)}
        kge = {str(b): round(float(v), 6) for b, v in zip(sc["basin"].values, sc["kge"].values)}
        return {
            "nse_median": round(float(np.median(list(nse.values()))), 6),
            "kge_median": round(float(np.median(list(kge.values()))), 6),
            "nse": nse,
            "kge": kge,
        }
    sc = evaluate(obs, sim, ["nse", "kge", "rmse"], dim="time")
    valid = np.isfinite(sim).all("time").values
    return {
        "nse_median": round(float(np.nanmedian(sc["nse"].values[valid])), 6),
        "kge_median": round(float(np.nanmedian(sc["kge"].values[valid])), 6),
        "rmse_median": round(float(np.nanmedian(sc["rmse"].values[valid])), 6),
        "cells": int(valid.sum()),
    }


def save(card: ModelCard, model: torch.nn.Module, directory: str | os.PathLike | None = None) -> ModelCard:
    """Write a model's weights (safetensors) and card (JSON) into the zoo folder, atomically.

    The card's ``weights_sha256`` is filled in from the written file.

    Parameters
    ----------
    card : ModelCard
        The metadata (``weights_sha256`` is overwritten).
    model : torch.nn.Module
        The trained network.
    directory : path-like, optional
        Target folder (default: the package's ``weights/``).

    Returns
    -------
    ModelCard
        The card as written.
    """
    import dataclasses

    from safetensors.torch import save_file

    from hydroml._io import atomic_path

    root = Path(directory) if directory is not None else _weights_dir()
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{card.name}.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(target) as tmp:
        save_file(state, str(tmp), metadata={"name": card.name, "architecture": card.architecture})
    card = dataclasses.replace(card, weights_sha256=_sha256(target))
    card.write(root / f"{card.name}.json")
    for path in (target, root / f"{card.name}.json"):  # package data: readable by everyone
        os.chmod(path, 0o644)
    return card
