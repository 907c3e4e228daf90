"""Training configuration: YAML validated strictly into dataclasses.

Unknown keys are errors that list the valid keys of their section; wrong types and out-of-range values are
errors naming the key. :func:`load_config` reads a YAML file, :func:`config_from_dict` a mapping, and
:func:`config_to_dict` returns the resolved configuration written as ``config.yaml`` into every run directory.

Example
-------
>>> cfg = config_from_dict({"name": "demo", "data": {"dynamic_inputs": ["pr", "tas"], "targets": ["q_mm"],
...     "train_period": ["2000-01-01", "2005-12-31"]}, "model": {"name": "lstm", "hidden_size": 16}})
>>> cfg.model.name, cfg.model.params["hidden_size"], cfg.train.loss
('lstm', 16, 'mse')
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from hydroml._io import load_yaml
from hydroml.exceptions import ConfigError

__all__ = [
    "DataConfig",
    "ModelConfig",
    "OptimiserConfig",
    "ScheduleConfig",
    "EarlyStoppingConfig",
    "TrainConfig",
    "Config",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "parse_bytes",
]


@dataclass
class DataConfig:
    """Where the data come from and how samples are cut.

    Attributes
    ----------
    source : str
        A data catalog name (``"demo"``, ``"camels_us_4basins"``...) or a path to a NetCDF file / catalog YAML.
    product : str, optional
        For multi-product sources (the demo): which product, e.g. ``"basins"``.
    root : str, optional
        Data root for catalog entries (default: ``HYDROML_DATA_ROOT`` or the catalog's default).
    dynamic_inputs, static_inputs, targets : list of str
        Canonical variable names.
    basins : list of str, optional
        Basin ids to use (default: all).
    train_period, validation_period, test_period : [start, end]
        Inclusive ISO dates; validation drives early stopping, test is recorded for later evaluation.
    seq_len : int
        Input window length in time steps.
    predict_last_n : int
        Number of final steps of each window that enter the loss.
    lead_time : int
        Steps between the last input and the predicted target (0: same step).
    log_targets : bool
        Log-transform targets before normalising (discharge).
    """

    source: str = "demo"
    product: str | None = None
    root: str | None = None
    dynamic_inputs: list[str] = field(default_factory=list)
    static_inputs: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    basins: list[str] | None = None
    train_period: list[str] = field(default_factory=list)
    validation_period: list[str] | None = None
    test_period: list[str] | None = None
    seq_len: int = 365
    predict_last_n: int = 1
    lead_time: int = 0
    log_targets: bool = False


@dataclass
class ModelConfig:
    """The model: a registry ``name`` plus its keyword arguments (checked against the factory's signature).

    ``n_dynamic``, ``n_static`` and ``n_targets`` are filled in from the data section.
    """

    name: str = "lstm"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimiserConfig:
    """Optimiser: ``adam`` or ``adamw`` with learning rate ``lr`` and ``weight_decay``."""

    name: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, stepped once per epoch.

    ``none``; ``step`` (multiply by ``gamma`` every ``step_size`` epochs); ``cosine`` (to ``min_lr`` over the
    epochs); ``exponential`` (multiply by ``gamma`` each epoch). ``warmup_epochs`` ramps the rate linearly first.
    """

    name: Literal["none", "step", "cosine", "exponential"] = "none"
    step_size: int = 10
    gamma: float = 0.5
    min_lr: float = 0.0
    warmup_epochs: int = 0


@dataclass
class EarlyStoppingConfig:
    """Stop when the validation ``metric`` has not improved by ``min_delta`` for ``patience`` epochs.

    ``metric``: ``nse`` (median over basins, higher is better), ``kge`` (likewise) or ``loss`` (validation loss,
    lower is better). ``patience: null`` never stops early but still keeps the best weights.
    """

    metric: Literal["nse", "kge", "loss"] = "nse"
    patience: int | None = None
    min_delta: float = 0.0


@dataclass
class TrainConfig:
    """The training loop.

    Attributes
    ----------
    epochs : int
    batch_size : int
        Global batch size (split over processes under torchrun).
    loss : {"mse", "nse"}
        MSE, or the basin-variance-weighted NSE loss of Kratzert et al. (2019); NaN targets are masked.
    clip_grad_norm : float, optional
        Clip the global gradient norm to this value.
    bf16 : bool
        bfloat16 autocast of the training forward pass (the loss and the optimiser stay float32): on GPU, and
        on CPUs with native bf16 arithmetic (AVX-512 BF16 / AMX, see
        :func:`hydroml.training.loop.cpu_has_native_bf16`); ignored with a log message on other CPUs, where it
        is much slower. Validation and forecasts run in float32.
    memory_budget : str or int, optional
        Activation-memory budget (``"1.5GB"``); ``hydroml.memory`` plans checkpointing to meet it.
    checkpointing : bool or int
        Time-chunked activation checkpointing without a budget (``true``: sqrt(T) chunks; int: chunk length).
    num_workers : int
        Background threads that gather the next batches while the model trains (0: gather in the loop).
        Batches are one vectorised gather each, so 1 is plenty; no worker processes are forked.
    threads : int, optional
        Torch intra-op threads for this run (restored afterwards); ``null`` leaves torch's setting. On a
        shared or small CPU, 1 thread per process is often much faster for small models.
    flush_denormal : bool
        Flush subnormal floats to zero on CPU during training (reset to off afterwards). Gradients that decay
        over long sequences can become subnormal, which CPUs process very slowly (an ad-hoc measurement on the
        shared development machine: one backward pass of an ``nn.LSTM`` with batch 256, 365 steps, hidden 128
        and PyTorch's default initialisation took 26 s with subnormals and 4.3 s flushed; no difference with the
        forget-gate bias of 3 that ``lstm`` starts from). Values below 1.2e-38 do not matter to training.
    validate_every : int
        Validate every n epochs (the last epoch always).
    device : {"auto", "cpu", "cuda"}
    progress : bool, optional
        Progress bars; ``null`` follows ``HYDROML_PROGRESS``.
    compile : bool or {"default", "reduce-overhead", "max-autotune"}
        ``torch.compile`` the training forward pass (``true`` = mode ``"default"``); a model that cannot
        compile runs eagerly with one log line (:func:`hydroml.export.compile_model`).
    keep_checkpoints : bool
        Also keep each epoch's weights as ``checkpoints/epoch_NNNN.safetensors`` (for
        :mod:`hydroml.diagnostics`); by default only the last checkpoint is kept.
    """

    epochs: int = 10
    batch_size: int = 256
    loss: Literal["mse", "nse"] = "mse"
    clip_grad_norm: float | None = 1.0
    bf16: bool = False
    memory_budget: str | int | None = None
    checkpointing: bool | int = False
    num_workers: int = 0
    threads: int | None = None
    flush_denormal: bool = True
    validate_every: int = 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    progress: bool | None = None
    compile: bool | Literal["default", "reduce-overhead", "max-autotune"] = False
    keep_checkpoints: bool = False


@dataclass
class Config:
    """A complete training configuration.

    Attributes
    ----------
    name : str
        Run name: the run directory is ``runs/<name>_<YYYYmmdd_HHMMSS>/``.
    seed : int
        Seeds weights, dropout and the data order (a pure function of ``(seed, epoch)``).
    deterministic : bool
        ``torch.use_deterministic_algorithms(True)`` (and cuDNN determinism on GPU).
    data, model, optimiser, schedule, early_stopping, train
        The sections; see their classes.
    """

    name: str = "run"
    seed: int = 0
    deterministic: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimiser: OptimiserConfig = field(default_factory=OptimiserConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# -- strict conversion -------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (arg,) = typing.get_args(tp) or (Any,)
        return f"list of {_type_name(arg)}"
    if origin is dict:
        return "mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, where)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: expected one of {_type_name(tp)}, found {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{where}: expected {_type_name(tp)}, found null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: expected {_type_name(tp)}, found {value!r}")
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, found {value!r}")
        (arg,) = typing.get_args(tp) or (Any,)
        return [_convert(v, arg, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, found {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, found {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, found {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            try:
                value = float(value)  # YAML reads "1e-3" as a string
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, found {value!r}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{where}: expected a finite number, found {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, found {value!r}")
        return value
    return value


def _from_dict(cls: type, data: Any, where: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, found {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        section = f"section {where!r}" if where else "the top level"
        raise ConfigError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(repr(k) for k in unknown)} in {section} "
            f"of the training config; valid keys: {', '.join(names)}"
        )
    kwargs = {}
    for name in names:
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], f"{where}.{name}" if where else name)
    return cls(**kwargs)


def _model_section(data: Any) -> dict:
    """``model: {name: lstm, hidden_size: 64}`` (flat) or ``{name: lstm, params: {...}}``."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"model: expected a mapping, found {data!r}")
    data = dict(data)
    if "params" in data:
        extra = [k for k in data if k not in {"name", "params"}]
        if extra:
            raise ConfigError(f"model: with 'params', only 'name' may sit beside it; found {extra}")
        return data
    name = data.pop("name", "lstm")
    return {"name": name, "params": data}


def _validate(cfg: Config) -> None:
    d = cfg.data
    if not cfg.name or not re.fullmatch(r"[A-Za-z0-9_.-]+", cfg.name):
        raise ConfigError(f"name: expected letters, digits, '_', '-', '.', found {cfg.name!r}")
    if not d.dynamic_inputs:
        raise ConfigError("data.dynamic_inputs: expected at least one variable, found none")
    if not d.targets:
        raise ConfigError("data.targets: expected at least one variable, found none")
    for key in ("train_period", "validation_period", "test_period"):
        period = getattr(d, key)
        if period is None:
            continue
        if len(period) != 2:
            raise ConfigError(f"data.{key}: expected [start, end], found {period!r}")
        import pandas as pd

        try:
            start, end = (pd.Timestamp(p) for p in period)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"data.{key}: expected ISO dates, found {period!r}") from err
        if end < start:
            raise ConfigError(f"data.{key}: end {period[1]} is before start {period[0]}")
    if not d.train_period:
        raise ConfigError("data.train_period: expected [start, end], found nothing")
    for key, value, low in [
        ("data.seq_len", d.seq_len, 1),
        ("data.predict_last_n", d.predict_last_n, 1),
        ("data.lead_time", d.lead_time, 0),
        ("train.epochs", cfg.train.epochs, 1),
        ("train.batch_size", cfg.train.batch_size, 1),
        ("train.num_workers", cfg.train.num_workers, 0),
        ("train.validate_every", cfg.train.validate_every, 1),
        ("schedule.step_size", cfg.schedule.step_size, 1),
        ("schedule.warmup_epochs", cfg.schedule.warmup_epochs, 0),
    ]:
        if value < low:
            raise ConfigError(f"{key}: expected >= {low}, found {value}")
    if d.predict_last_n > d.seq_len:
        raise ConfigError(f"data.predict_last_n ({d.predict_last_n}) exceeds data.seq_len ({d.seq_len})")
    if not 0 <= cfg.seed < 2**32:
        raise ConfigError(f"seed: expected an integer in [0, 2**32 - 1], found {cfg.seed}")
    o, sc, es = cfg.optimiser, cfg.schedule, cfg.early_stopping
    if o.lr <= 0:
        raise ConfigError(f"optimiser.lr: expected > 0, found {o.lr}")
    if o.weight_decay < 0:
        raise ConfigError(f"optimiser.weight_decay: expected >= 0, found {o.weight_decay}")
    if len(o.betas) != 2:
        raise ConfigError(f"optimiser.betas: expected two numbers, found {o.betas!r}")
    for i, b in enumerate(o.betas):
        if not 0 <= b < 1:
            raise ConfigError(f"optimiser.betas[{i}]: expected a number in [0, 1), found {b}")
    if sc.gamma <= 0:
        raise ConfigError(
            f"schedule.gamma: expected > 0 (the factor applied to the learning rate), found {sc.gamma}"
        )
    if sc.min_lr < 0:
        raise ConfigError(f"schedule.min_lr: expected >= 0, found {sc.min_lr}")
    if sc.name == "cosine" and sc.min_lr > o.lr:
        raise ConfigError(f"schedule.min_lr: expected <= optimiser.lr ({o.lr}), found {sc.min_lr}")
    if es.min_delta < 0:
        raise ConfigError(f"early_stopping.min_delta: expected >= 0, found {es.min_delta}")
    if cfg.train.threads is not None and cfg.train.threads < 1:
        raise ConfigError(f"train.threads: expected >= 1 or null, found {cfg.train.threads}")
    if cfg.train.clip_grad_norm is not None and cfg.train.clip_grad_norm <= 0:
        raise ConfigError(f"train.clip_grad_norm: expected > 0 or null, found {cfg.train.clip_grad_norm}")
    if cfg.early_stopping.patience is not None and cfg.early_stopping.patience < 1:
        raise ConfigError(
            f"early_stopping.patience: expected >= 1 or null, found {cfg.early_stopping.patience}"
        )
    if cfg.train.memory_budget is not None:
        parse_bytes(cfg.train.memory_budget, "train.memory_budget")
    _validate_model_params(cfg)


_DATA_FILLED = ("n_dynamic", "n_static", "n_targets")


def _validate_model_params(cfg: Config) -> None:
    from hydroml.models import list_models
    from hydroml.models.registry import _REGISTRY

    names = list_models()
    if cfg.model.name not in names:
        raise ConfigError(
            f"model.name: unknown model {cfg.model.name!r}; registered models: {', '.join(names)}"
        )
    sig = inspect.signature(_REGISTRY[cfg.model.name])
    params = sig.parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        _check_model_ranges(cfg.model.params)
        return
    valid = [n for n in params if n not in _DATA_FILLED]
    bad = [k for k in cfg.model.params if k not in valid]
    if bad:
        raise ConfigError(
            f"unknown key{'s' if len(bad) > 1 else ''} {', '.join(repr(k) for k in bad)} in section 'model' "
            f"(model {cfg.model.name!r}); valid keys: name, {', '.join(valid)}"
        )
    for key, value in cfg.model.params.items():
        if key in _DATA_FILLED:
            raise ConfigError(f"model.{key}: filled in from the data section; remove it from the config")
        tp = _annotation_type(params[key].annotation)
        if tp is not None:
            cfg.model.params[key] = _convert(value, tp, f"model.{key}")
    _check_model_ranges(cfg.model.params)


_SIMPLE_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "None": type(None)}
#: Model parameters that count something (at least 1) or are probabilities (in [0, 1)).
_POSITIVE_INTS = (
    "hidden_size",
    "num_layers",
    "embedding_size",
    "channels",
    "base_channels",
    "depth",
    "kernel_size",
)
_PROBABILITIES = ("dropout",)


def _annotation_type(annotation: Any) -> Any:
    """``int``, ``float | None``... from a factory's annotation (a string under ``from __future__ import
    annotations``); None when it names anything else (then the model checks the value itself)."""
    if isinstance(annotation, str):
        names = [a.strip() for a in annotation.split("|")]
        if not names or any(n not in _SIMPLE_TYPES for n in names):
            return None
        types_ = [_SIMPLE_TYPES[n] for n in names]
    elif annotation in _SIMPLE_TYPES.values():
        types_ = [annotation]
    else:
        return None
    if len(types_) == 1:
        return types_[0]
    return typing.Union[tuple(types_)]  # noqa: UP007 - built at run time


def _check_model_ranges(params: dict[str, Any]) -> None:
    for key, value in params.items():
        if value is None or isinstance(value, bool):
            continue
        if key in _POSITIVE_INTS or key.endswith("_size") and isinstance(value, int):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.{key}: expected an integer >= 1, found {value!r}")
        if key in _PROBABILITIES or key.endswith("_dropout"):
            if not isinstance(value, int | float) or not 0 <= value < 1:
                raise ConfigError(f"model.{key}: expected a probability in [0, 1), found {value!r}")


def parse_bytes(value: str | int | float, where: str = "memory_budget") -> int:
    """Parse a byte size such as ``"1.5GB"``, ``"512MiB"`` or ``2e9``.

    Uses ``hydroml.memory.parse_bytes`` when available; decimal (kB, MB, GB) and binary (KiB, MiB, GiB) units.

    Parameters
    ----------
    value : str, int or float
        The size.
    where : str
        Config key named in errors.

    Returns
    -------
    int
        Bytes.
    """
    try:
        from hydroml.memory import parse_bytes as _pb  # type: ignore[attr-defined]
    except ImportError:
        _pb = None
    if _pb is not None:
        try:
            return int(_pb(value))
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{where}: expected a size like '1.5GB', found {value!r}") from err
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    m = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([kKMGT]i?B|B)?\s*", str(value))
    if not m:
        raise ConfigError(f"{where}: expected a size like '1.5GB', found {value!r}")
    num = float(m.group(1))
    unit = (m.group(2) or "B").upper().replace("IB", "iB")
    factors = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
    factors.update({"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40})
    factors["KIB"] = 2**10
    return int(num * factors[unit if unit in factors else unit.upper()])


def config_from_dict(data: dict) -> Config:
    """Validate a mapping into a :class:`Config`.

    Parameters
    ----------
    data : dict
        The parsed YAML.

    Returns
    -------
    Config

    Raises
    ------
    ConfigError
        Unknown keys (the message lists the valid keys of the section), wrong types, out-of-range values.
    """
    if not isinstance(data, dict):
        raise ConfigError(
            f"training config: expected a mapping at the top level, found {type(data).__name__}"
        )
    data = dict(data)
    if "model" in data:
        data["model"] = _model_section(data["model"])
    cfg = _from_dict(Config, data, "")
    _validate(cfg)
    return cfg


def load_config(path: str | os.PathLike) -> Config:
    """Read and validate a YAML training config.

    Parameters
    ----------
    path : path-like
        The YAML file.

    Returns
    -------
    Config
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training config {path} not found")
    try:
        data = load_yaml(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    try:
        return config_from_dict(data or {})
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err


def config_to_dict(cfg: Config) -> dict:
    """The resolved configuration as plain data (what ``config.yaml`` holds); inverse of
    :func:`config_from_dict`."""
    out = dataclasses.asdict(cfg)
    out["model"] = {"name": cfg.model.name, **cfg.model.params}
    return out
