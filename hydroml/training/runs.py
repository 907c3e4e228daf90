"""Run directories and atomic, pickle-free checkpoints.

A run directory ``runs/<name>_<YYYYmmdd_HHMMSS>/`` holds:

- ``config.yaml``: the resolved configuration;
- ``normalisation.json``: the normaliser fitted on the training period and basins (layout version 1; run
  directories with the earlier ``{"kind": "mean_std"}`` layout load too, see
  :meth:`hydroml.datasets.Normaliser.from_dict`);
- ``model.safetensors``: the weights (the best validation epoch when a validation period is set, else the
  last epoch);
- ``checkpoint.safetensors`` + ``checkpoint.json``: everything needed to resume after the last finished epoch.
  The tensors (model weights, optimiser moments, torch RNG states) are in safetensors; the scalars (epoch,
  optimiser hyper-parameters and step counts, numpy and Python RNG states, early-stopping state, metrics
  history) are JSON, stored both inside the safetensors metadata (so the checkpoint is **one** atomic file and
  can never be half old, half new) and as ``checkpoint.json`` for people and tools;
- ``metrics.csv``: one row per epoch; ``train.log``: the log of the run.

No pickle is involved anywhere: loading never executes code from the run directory.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, safe_open, save_file

from hydroml._io import _umask, atomic_path, load_yaml, write_json_atomic, write_text_atomic
from hydroml.exceptions import ConfigError, DataError, WriteError

log = logging.getLogger("hydroml.training")

__all__ = [
    "make_run_dir",
    "save_weights",
    "load_weights",
    "save_checkpoint",
    "load_checkpoint",
    "write_metrics_csv",
    "capture_rng",
    "restore_rng",
    "load_run",
    "read_weights",
    "check_state_dict",
]

CHECKPOINT_VERSION = 1


def make_run_dir(
    runs_dir: str | os.PathLike,
    name: str,
    now: _dt.datetime | None = None,
    files: Mapping[str, str | Callable[[Path], Any]] | None = None,
) -> Path:
    """Create ``runs_dir/<name>_<YYYYmmdd_HHMMSS>/`` (with a ``_2``, ``_3``... suffix if it exists) atomically.

    The folder is built as a hidden ``.<name>_<stamp>.tmp-*`` sibling holding ``files`` and renamed into place,
    so a process killed at any moment leaves either no run directory or one with all of ``files`` (a run
    directory always has its ``config.yaml`` and ``normalisation.json`` and can be resumed).

    Parameters
    ----------
    runs_dir : path-like
        Parent folder (created if needed).
    name : str
        Run name from the config.
    now : datetime, optional
        Timestamp (default: now, UTC).
    files : mapping of file name to text or writer, optional
        Files to put in the folder before it appears: text, or a callable taking the destination path
        (e.g. ``normaliser.to_json``).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    WriteError
        ``runs_dir`` cannot be created or written (read-only, full disk).
    """
    now = now or _dt.datetime.now(_dt.timezone.utc)
    runs_dir = Path(runs_dir)
    base = runs_dir / f"{name}_{now:%Y%m%d_%H%M%S}"
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{base.name}.tmp-", dir=runs_dir))
    except OSError as err:
        raise WriteError(f"cannot create a run directory in {runs_dir}: {err.strerror or err}") from err
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        for fname, content in (files or {}).items():
            if callable(content):
                content(tmp / fname)
            else:
                write_text_atomic(tmp / fname, content)
        path, k = base, 1
        while True:
            if not path.exists():
                try:
                    os.rename(tmp, path)
                    return path
                except OSError as err:
                    if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
            k += 1
            path = base.with_name(f"{base.name}_{k}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _tensors(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}{k}": v.detach().cpu().contiguous().clone() for k, v in state.items()}


def save_weights(
    path: str | os.PathLike, model: torch.nn.Module, metadata: dict[str, str] | None = None
) -> Path:
    """Write a model's ``state_dict`` to safetensors atomically.

    Parameters
    ----------
    path : path-like
        Destination (``model.safetensors``).
    model : torch.nn.Module
        The model (unwrapped from DDP).
    metadata : dict, optional
        String metadata stored in the file header.

    Returns
    -------
    pathlib.Path
    """
    with atomic_path(path) as tmp:
        save_file(_tensors(model.state_dict(), ""), str(tmp), metadata=metadata or {})
    return Path(path)


def read_weights(path: str | os.PathLike, where: str = "") -> dict[str, torch.Tensor]:
    """Read a safetensors file; a truncated or corrupt file is a :class:`DataError` naming it.

    Parameters
    ----------
    path : path-like
        The ``.safetensors`` file.
    where : str
        What the file belongs to (``"run runs/x_2024..."``), for the message.

    Returns
    -------
    dict of str to torch.Tensor
    """
    path = Path(path)
    ctx = f"{where}: " if where else ""
    if not path.is_file():
        raise FileNotFoundError(f"{ctx}no weights file {path}")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own SafetensorError / OSError / ValueError
        raise DataError(
            f"{ctx}{path} is not a readable safetensors file (truncated or corrupt? {path.stat().st_size} bytes): "
            f"{str(err).splitlines()[0][:200] if str(err) else type(err).__name__}"
        ) from None


def check_state_dict(state: Mapping[str, torch.Tensor], model: torch.nn.Module, where: str) -> None:
    """Check weights against a model before loading them: names, shapes, dtypes and finite values.

    Raises
    ------
    DataError
        Naming ``where`` (the run or zoo entry), the tensor and, for a shape mismatch, both shapes; missing or
        unexpected tensors are listed; NaN or infinite values are refused (they would forecast NaN).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        raise DataError(
            f"{where}: weights do not match the model: "
            + (f"missing tensor(s) {missing[:5]}" if missing else "")
            + ("; " if missing and extra else "")
            + (f"unexpected tensor(s) {extra[:5]}" if extra else "")
            + f" (the model expects {len(expected)} tensors)"
        )
    for k, ref in expected.items():
        got = state[k]
        if tuple(got.shape) != tuple(ref.shape):
            raise DataError(
                f"{where}: tensor {k!r} has shape {tuple(got.shape)} in the weights file but the model expects "
                f"{tuple(ref.shape)} (config and weights from different models?)"
            )
        if got.is_floating_point() != ref.is_floating_point():
            raise DataError(f"{where}: tensor {k!r} has dtype {got.dtype}, the model expects {ref.dtype}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            n = int((~torch.isfinite(got)).sum())
            raise DataError(
                f"{where}: tensor {k!r} holds {n} non-finite value(s) (NaN or inf) of {got.numel()}; expected "
                "finite weights (a diverged training?)"
            )


def load_weights(path: str | os.PathLike, model: torch.nn.Module, where: str = "") -> torch.nn.Module:
    """Load safetensors weights into ``model`` (strict, checked by :func:`check_state_dict`) and return it."""
    where = where or str(path)
    state = read_weights(path, where)
    check_state_dict(state, model, where)
    model.load_state_dict(state, strict=True)
    return model


# -- RNG states ------------------------------------------------------------------------------------------


def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The torch (CPU and CUDA), numpy and Python RNG states as (tensors, JSON-able scalars)."""
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda{i}"] = s
    py = random.getstate()
    scalars = {
        "numpy": _np_state_to_json(np.random.get_state()),  # noqa: NPY002
        "python": [py[0], list(py[1]), py[2]],
    }
    return tensors, scalars


def restore_rng(tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> None:
    """Restore the states captured by :func:`capture_rng`."""
    torch.set_rng_state(tensors["rng/torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng/cuda"))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    np.random.set_state(_np_state_from_json(scalars["numpy"]))  # noqa: NPY002
    v, st, g = scalars["python"]
    random.setstate((v, tuple(st), g))


def _np_state_to_json(state: tuple) -> list:
    name, keys, pos, has_gauss, cached = state
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _np_state_from_json(state: list) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)


# -- optimiser state -----------------------------------------------------------------------------------------


def _split_optimiser(state: dict) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for idx, pstate in state["state"].items():
        entry: dict[str, Any] = {}
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{idx}/{key}"] = value.detach().cpu().contiguous().clone()
                entry[key] = {"tensor": f"optim/{idx}/{key}"}
            else:
                entry[key] = value
        scalars["state"][str(idx)] = entry
    return tensors, scalars


def _join_optimiser(tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> dict:
    state = {}
    for idx, entry in scalars["state"].items():
        pstate = {}
        for key, value in entry.items():
            pstate[key] = tensors[value["tensor"]] if isinstance(value, dict) and "tensor" in value else value
        state[int(idx)] = pstate
    return {"state": state, "param_groups": scalars["param_groups"]}


# -- checkpoints -------------------------------------------------------------------------------------------


def save_checkpoint(
    run_dir: str | os.PathLike,
    model: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    info: dict[str, Any],
) -> Path:
    """Write ``checkpoint.safetensors`` (one atomic file) and ``checkpoint.json``.

    Parameters
    ----------
    run_dir : path-like
        The run directory.
    model : torch.nn.Module
        The (unwrapped) model.
    optimiser : torch.optim.Optimizer
        Its optimiser.
    info : dict
        JSON-able training state: ``epoch`` (the last finished epoch), early-stopping state, metrics history...

    Returns
    -------
    pathlib.Path
        The safetensors file.
    """
    run_dir = Path(run_dir)
    rng_t, rng_s = capture_rng()
    opt_t, opt_s = _split_optimiser(optimiser.state_dict())
    tensors = {**_tensors(model.state_dict(), "model/"), **opt_t, **rng_t}
    meta = {"version": CHECKPOINT_VERSION, **info, "optimiser": opt_s, "rng": rng_s}
    text = json.dumps(meta)
    path = run_dir / "checkpoint.safetensors"
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"hydroml_checkpoint": text})
    write_json_atomic(run_dir / "checkpoint.json", meta)
    return path


def load_checkpoint(run_dir: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict, dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    run_dir : path-like
        The run directory.

    Returns
    -------
    model_state : dict of tensors
    optimiser_state : dict
        Ready for ``optimiser.load_state_dict``.
    info : dict
        The JSON state (``epoch``, ``rng``...) and ``"rng_tensors"``.
    """
    path = Path(run_dir) / "checkpoint.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint in {run_dir} (expected {path.name}); was the run started?")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as err:  # safetensors' own error type for truncated / corrupt files
        raise DataError(
            f"{path} is not a readable checkpoint (truncated or corrupt?): {str(err).splitlines()[0][:200]}"
        ) from None
    if "hydroml_checkpoint" not in meta:
        raise ConfigError(f"{path} is not a hydroml checkpoint (no 'hydroml_checkpoint' metadata)")
    try:
        info = json.loads(meta["hydroml_checkpoint"])
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: checkpoint metadata is not valid JSON ({err})") from None
    tensors = read_weights(path, "checkpoint")
    model_state = {k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")}
    optim_state = _join_optimiser(tensors, info.pop("optimiser"))
    info["rng_tensors"] = {k: v for k, v in tensors.items() if k.startswith("rng/")}
    return model_state, optim_state, info


def write_metrics_csv(path: str | os.PathLike, history: list[dict[str, Any]]) -> Path:
    """Write the per-epoch metrics history as CSV (atomically, rewritten whole each epoch)."""
    if not history:
        return Path(path)
    cols: list[str] = []
    for row in history:
        cols += [k for k in row if k not in cols]

    def fmt(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return repr(v)
        return str(v)

    lines = [",".join(cols)] + [",".join(fmt(row.get(c)) for c in cols) for row in history]
    return write_text_atomic(path, "\n".join(lines) + "\n")


def load_run(run_dir: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load a finished (or interrupted) run for forecasting.

    Parameters
    ----------
    run_dir : path-like
        A run directory written by :func:`hydroml.training.train`.
    device : str or torch.device
        Where to put the model.

    Returns
    -------
    model : torch.nn.Module
        The model with ``model.safetensors`` loaded, in ``eval()`` mode.
    config : hydroml.training.config.Config
        The resolved configuration.
    normaliser : hydroml.datasets.Normaliser
        The normaliser of the run.
    """

    from hydroml.training.loop import build_model, load_normaliser

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a hydroml run directory (no config.yaml)")
    config = read_run_config(run_dir)
    norm_path = run_dir / "normalisation.json"
    if not norm_path.is_file():
        raise FileNotFoundError(f"run {run_dir}: no normalisation.json (the run directory is incomplete)")
    try:
        normaliser = load_normaliser(norm_path)
    except (ValueError, KeyError, TypeError) as err:
        if isinstance(err, DataError | ConfigError):
            raise
        raise DataError(
            f"run {run_dir}: {norm_path.name} is not a valid normaliser file ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200] if str(err) else ''}); expected the JSON written by training"
        ) from None
    weights = run_dir / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{run_dir} has no model.safetensors yet (no epoch finished)")
    model = build_model(config)
    load_weights(weights, model, where=f"run {run_dir} ({weights.name})")
    return model.to(device).eval(), config, normaliser


def read_run_config(run_dir: str | os.PathLike):
    """The validated :class:`~hydroml.training.config.Config` of a run directory's ``config.yaml``.

    Raises
    ------
    ConfigError
        The file is not valid YAML or not a valid training config (naming the file and the key).
    """
    import yaml

    from hydroml.training.config import config_from_dict

    path = Path(run_dir) / "config.yaml"
    try:
        data = load_yaml(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0][:200]})") from None
    try:
        return config_from_dict(data if data is not None else {})
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
