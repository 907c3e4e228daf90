"""ONNX and TorchScript export with the normalisation and input metadata embedded, and runtimes for both."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hydroml._io import atomic_path
from hydroml.exceptions import ConfigError, DataError, require

log = logging.getLogger("hydroml.export")

__all__ = [
    "EXPORTABLE",
    "FORMATS",
    "METADATA_KEY",
    "OnnxModel",
    "TorchScriptModel",
    "export_model",
    "load_exported",
    "read_metadata",
    "with_engine",
]

#: Export formats.
FORMATS = ("onnx", "torchscript")
#: Architectures that export, and the tensor signature they export with.
EXPORTABLE = {"lstm": "recurrent", "unet": "grid", "closure": "grid"}
#: Key of the JSON metadata: an ONNX ``metadata_props`` entry, a TorchScript extra file ``hydroml.json``.
METADATA_KEY = "hydroml"
_TS_EXTRA = "hydroml.json"
_SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
OPSET = 17


# -- tensor signatures -------------------------------------------------------------------------------------
class _RecurrentSignature(nn.Module):
    """``(x_dynamic [B, T, F], [x_static [B, S]], h0, c0 [L, B, H]) -> (y_hat [B, T, n], h_n, c_n)``."""

    def __init__(self, model: nn.Module, n_static: int) -> None:
        super().__init__()
        self.model, self.n_static = model, n_static

    def forward(self, x_dynamic: torch.Tensor, *rest: torch.Tensor):
        batch: dict[str, Any] = {"x_dynamic": x_dynamic}
        if self.n_static:
            batch["x_static"] = rest[0]
            rest = rest[1:]
        batch["state"] = (rest[0], rest[1])
        out = self.model(batch)
        return out["y_hat"], out["h_n"], out["c_n"]


class _GridSignature(nn.Module):
    """``x [B, C, H, W] -> y_hat [B, n, H, W]``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model({"x": x})["y_hat"]


def _names(kind: str, n_static: int) -> tuple[list[str], list[str]]:
    if kind == "grid":
        return ["x"], ["y_hat"]
    inputs = ["x_dynamic"] + (["x_static"] if n_static else []) + ["h0", "c0"]
    return inputs, ["y_hat", "h_n", "c_n"]


def _example(fm, kind: str, n_static: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    model = fm.model
    dtype = next(model.parameters()).dtype
    if kind == "grid":
        c = int(model.config["in_channels"])
        s = int(getattr(model, "stride", 1) or 1)
        side = max(32, 2 * s)
        return (torch.randn(2, c, side, side, generator=generator, dtype=dtype),)
    b, t = 3, min(int(fm.seq_len), 24)
    h, layers = int(model.hidden_size), int(getattr(model, "num_layers", 1))
    x = (torch.randn(b, t, len(fm.inputs), generator=generator, dtype=dtype),)
    if n_static:
        x += (torch.randn(b, n_static, generator=generator, dtype=dtype),)
    return x + (torch.zeros(layers, b, h, dtype=dtype), torch.zeros(layers, b, h, dtype=dtype))


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _metadata(fm, kind: str, fmt: str, input_names: list[str], output_names: list[str]) -> dict:
    from hydroml import __version__
    from hydroml.forecast import _Scaler

    norm = fm.normaliser
    if not isinstance(norm, dict) and hasattr(norm, "to_dict"):
        norm = norm.to_dict()
    _Scaler(norm).arrays(list(fm.inputs) + list(fm.static_inputs) + list(fm.targets))  # complete statistics
    model = fm.model
    return {
        "format": f"hydroml.export.{fmt}",
        "version": 1,
        "hydroml_version": __version__,
        "architecture": fm.architecture,
        "signature": kind,
        "input_names": input_names,
        "output_names": output_names,
        "inputs": list(fm.inputs),
        "static_inputs": list(fm.static_inputs),
        "targets": list(fm.targets),
        "normalisation": _jsonable(norm),
        "seq_len": int(fm.seq_len),
        "lags": int(fm.lags),
        "valid_mask": fm.valid_mask,
        "lead_time": int(fm.lead_time),
        "hidden_size": getattr(model, "hidden_size", None),
        "num_layers": getattr(model, "num_layers", None),
        "stride": int(getattr(model, "stride", 1) or 1) if kind == "grid" else None,
        "padding_mode": getattr(model, "padding_mode", "zeros") if kind == "grid" else None,
        "config": _jsonable(fm.config),
        "config_hash": fm.config_hash,
        "model_id": fm.model_id,
        "model_version": fm.model_version,
        "source": fm.source,
    }


def _resolve(model_or_run: Any):
    """A :class:`hydroml.forecast.ForecastModel` from a run directory, a zoo name or a loaded model."""
    from hydroml.forecast import ForecastModel, _resolve_model

    if isinstance(model_or_run, str | os.PathLike) and not Path(model_or_run).exists():
        from hydroml import zoo

        if str(model_or_run) in zoo.list_models():
            model_or_run = zoo.load(str(model_or_run))
    fm = _resolve_model(model_or_run)
    if not isinstance(fm, ForecastModel):  # pragma: no cover - _resolve_model returns one or raises
        raise TypeError(type(fm))
    return fm


def _unsupported(fm) -> ConfigError:
    return ConfigError(
        f"export: architecture {fm.architecture!r} of {fm.model_id or 'the model'} cannot be exported; "
        f"exportable architectures: {', '.join(EXPORTABLE)} (ealstm and cnn_lstm loop over time in Python, "
        "which tracing would unroll to one fixed sequence length)"
    )


def _onnx_bytes(sig: nn.Module, example: tuple, inputs: list[str], outputs: list[str], kind: str) -> bytes:
    if kind == "grid":
        axes = {"x": {0: "batch", 2: "height", 3: "width"}, "y_hat": {0: "batch", 2: "height", 3: "width"}}
    else:
        axes = {"x_dynamic": {0: "batch", 1: "time"}, "y_hat": {0: "batch", 1: "time"}}
        axes.update({n: {1: "batch"} for n in ("h0", "c0", "h_n", "c_n")})
        if "x_static" in inputs:
            axes["x_static"] = {0: "batch"}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript-based exporter maps nn.LSTM to the ONNX LSTM operator (one kernel in ONNX Runtime);
        # the dynamo exporter decomposes it.
        torch.onnx.export(
            sig,
            example,
            buf,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return buf.getvalue()


def _with_metadata(onnx_bytes: bytes, meta: dict) -> bytes:
    onnx = require("onnx", "export")
    proto = onnx.load_from_string(onnx_bytes)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    proto.doc_string = f"hydroml {meta['architecture']} {meta['model_id']}: inputs {meta['inputs']}"
    return proto.SerializeToString()


def export_model(
    model_or_run: Any,
    path: str | os.PathLike | None = None,
    format: str = "onnx",
    *,
    check: bool = True,
    seed: int = 0,
) -> Path:
    """Export a trained model to ONNX or TorchScript with its normalisation and inputs embedded.

    The file carries everything :func:`load_exported` (and so :func:`hydroml.forecast.forecast`) needs: the
    dynamic and static inputs in order, the targets, the normaliser's statistics, ``seq_len``, ``lags``,
    ``lead_time``, the resolved config and its hash, as JSON under the key ``"hydroml"`` (ONNX
    ``metadata_props``; TorchScript extra file ``hydroml.json``).

    The exported graph takes **normalised** tensors (as the network does): recurrent models
    ``(x_dynamic [B, T, F], x_static [B, S] (if any), h0, c0 [layers, B, hidden]) -> (y_hat [B, T, n], h_n,
    c_n)`` with dynamic batch and time; gridded models ``x [B, C, H, W] -> y_hat [B, n, H, W]`` with dynamic
    batch, height and width.

    Parameters
    ----------
    model_or_run : path-like, str, ForecastModel or torch.nn.Module
        A run directory, a zoo name (``"lstm.demo_discharge"``), a :class:`hydroml.forecast.ForecastModel` or a
        model from :func:`hydroml.zoo.load`.
    path : path-like, optional
        Output file (default: ``<run_dir>/model.onnx`` or ``model.pt``; required for a zoo model).
    format : {"onnx", "torchscript"}
        Export format.
    check : bool
        Run the exported model on random inputs and log its largest difference from the eager model.
    seed : int
        Seed of the example inputs.

    Returns
    -------
    pathlib.Path
        The written file (atomically).

    Raises
    ------
    ConfigError
        An unknown format or an architecture that cannot be exported.
    """
    if format not in FORMATS:
        raise ConfigError(f"export format: expected one of {', '.join(FORMATS)}, found {format!r}")
    fm = _resolve(model_or_run)
    if path is None:
        if not isinstance(model_or_run, str | os.PathLike) or not Path(model_or_run).is_dir():
            raise ConfigError("export: give the output path (the model does not come from a run directory)")
        path = Path(model_or_run) / f"model{_SUFFIX[format]}"
    path = Path(path)
    data = export_bytes(fm, format, check=check, seed=seed)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    log.info("exported %s (%s) to %s", fm.model_id or fm.architecture, format, path)
    return path


def export_bytes(fm: Any, format: str = "onnx", *, check: bool = True, seed: int = 0) -> bytes:
    """The exported model as bytes (see :func:`export_model`); ``fm`` is anything :func:`export_model` takes."""
    fm = _resolve(fm)
    kind = EXPORTABLE.get(fm.architecture)
    if kind is None:
        raise _unsupported(fm)
    model = fm.model
    was_training = model.training
    model.eval()
    try:
        return _export_eval(fm, model, kind, format, check, seed)
    finally:
        model.train(was_training)


def _export_eval(fm: Any, model: nn.Module, kind: str, format: str, check: bool, seed: int) -> bytes:
    n_static = len(fm.static_inputs) if kind == "recurrent" else 0
    sig = (_RecurrentSignature(model, n_static) if kind == "recurrent" else _GridSignature(model)).eval()
    inputs, outputs = _names(kind, n_static)
    gen = torch.Generator().manual_seed(seed)
    example = _example(fm, kind, n_static, gen)
    meta = _metadata(fm, kind, format, inputs, outputs)
    with torch.no_grad():
        if format == "onnx":
            data = _with_metadata(_onnx_bytes(sig, example, inputs, outputs, kind), meta)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(sig, example, check_trace=False)
            buf = io.BytesIO()
            torch.jit.save(traced, buf, _extra_files={_TS_EXTRA: json.dumps(meta)})
            data = buf.getvalue()
    if check:
        _check(data, format, meta, sig, fm, kind, n_static, gen)
    return data


def _check(data: bytes, format: str, meta: dict, sig, fm, kind: str, n_static: int, gen) -> None:
    """Compare the exported model with the eager one on fresh inputs of another shape (checks dynamic axes)."""
    runner = OnnxModel(data, meta) if format == "onnx" else TorchScriptModel(data, meta)
    if kind == "grid":
        c = int(fm.model.config["in_channels"])
        s = int(getattr(fm.model, "stride", 1) or 1)
        x = torch.randn(1, c, 3 * s + 5, 2 * s + 3, generator=gen, dtype=torch.float32)
        batch = {"x": x}
    else:
        b, t = 2, min(int(fm.seq_len), 24) + 5
        batch = {"x_dynamic": torch.randn(b, t, len(fm.inputs), generator=gen)}
        if n_static:
            batch["x_static"] = torch.randn(b, n_static, generator=gen)
    with torch.no_grad():
        ref = fm.model(batch)["y_hat"]
        got = runner(batch)["y_hat"]
    if ref.shape != got.shape:
        raise DataError(f"export check: exported output shape {tuple(got.shape)} != eager {tuple(ref.shape)}")
    diff = float((ref.float() - got).abs().max())
    log.info("export check (%s): largest difference from the eager model %.3g", format, diff)
    if not np.isfinite(diff) or diff > 1e-3:
        raise DataError(f"export check ({format}): exported model differs from the eager one by {diff:.3g}")


# -- runtimes ----------------------------------------------------------------------------------------------
class _ExportedBase(nn.Module):
    """An exported model behind the model contract: ``forward(batch: dict) -> dict``."""

    def __init__(self, meta: dict) -> None:
        super().__init__()
        self.meta = meta
        self.signature = meta["signature"]
        self.hidden_size = meta.get("hidden_size")
        self.num_layers = meta.get("num_layers") or 1
        self.gridded = self.signature == "grid"

    def _inputs(self, batch: dict) -> list[torch.Tensor]:
        if self.signature == "grid":
            return [self._pad(batch["x"].float())]
        x = batch["x_dynamic"].float()
        args = [x]
        if "x_static" in self.meta["input_names"]:
            args.append(batch["x_static"].float())
        state = batch.get("state")
        if state is None:
            z = x.new_zeros(self.num_layers, x.shape[0], self.hidden_size)
            h, c = z, z
        elif isinstance(state, dict):
            h, c = state["h_n"], state["c_n"]
        else:
            h, c = state
        return args + [h.float().contiguous(), c.float().contiguous()]

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Pad ``x`` to a multiple of the stride as the U-Net does (the graph was traced on such sizes)."""
        h, w = x.shape[-2:]
        self._crop = (h, w)
        s = int(self.meta.get("stride") or 1)
        ph, pw = (-h) % s, (-w) % s
        if not (ph or pw):
            return x
        mode = self.meta.get("padding_mode") or "zeros"
        mode = "constant" if mode == "zeros" else mode
        if mode == "reflect" and (ph >= h or pw >= w):
            mode = "replicate"
        return torch.nn.functional.pad(x, (0, pw, 0, ph), mode=mode)

    def _outputs(self, outs: list[torch.Tensor]) -> dict:
        if self.signature == "grid":
            h, w = self._crop
            return {"y_hat": outs[0][..., :h, :w]}
        y, h, c = outs
        return {"y_hat": y, "h_n": h, "c_n": c, "state": (h, c)}


class OnnxModel(_ExportedBase):
    """An ONNX model run by ONNX Runtime, callable like the hydroml model it was exported from.

    Parameters
    ----------
    source : path-like or bytes
        The ``.onnx`` file (or its bytes).
    meta : dict, optional
        Its hydroml metadata (read from the file when omitted).
    threads : int, optional
        ONNX Runtime intra-op threads (default: ``torch.get_num_threads()``).
    """

    def __init__(
        self, source: str | os.PathLike | bytes, meta: dict | None = None, threads: int | None = None
    ):
        ort = require("onnxruntime", "export")
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        super().__init__(meta or _onnx_meta(data, str(source) if not isinstance(source, bytes) else "bytes"))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
        self._names = [i.name for i in self.session.get_inputs()]

    def forward(self, batch: dict) -> dict:
        """Run on a batch dict (``x_dynamic``/``x_static``/``state`` or ``x``)."""
        feeds = {n: t.detach().cpu().numpy() for n, t in zip(self._names, self._inputs(batch))}
        outs = self.session.run(None, feeds)
        return self._outputs([torch.from_numpy(o) for o in outs])


class TorchScriptModel(_ExportedBase):
    """A TorchScript model exported by :func:`export_model`, callable like the hydroml model."""

    def __init__(self, source: str | os.PathLike | bytes, meta: dict | None = None) -> None:
        extra = {_TS_EXTRA: ""}
        buf = io.BytesIO(source) if isinstance(source, bytes) else str(source)
        module = torch.jit.load(buf, map_location="cpu", _extra_files=extra)
        if meta is None:
            if not extra[_TS_EXTRA]:
                raise DataError(
                    f"{source if not isinstance(source, bytes) else 'model'}: no hydroml.json inside"
                )
            meta = json.loads(extra[_TS_EXTRA])
        super().__init__(meta)
        self.module = module

    def forward(self, batch: dict) -> dict:
        """Run on a batch dict (``x_dynamic``/``x_static``/``state`` or ``x``)."""
        outs = self.module(*self._inputs(batch))
        return self._outputs(list(outs) if isinstance(outs, tuple | list) else [outs])


def _onnx_meta(data: bytes, where: str) -> dict:
    onnx = require("onnx", "export")
    proto = onnx.load_from_string(data)
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            return json.loads(entry.value)
    raise DataError(f"{where}: ONNX model without hydroml metadata (metadata_props key {METADATA_KEY!r})")


def read_metadata(path: str | os.PathLike) -> dict:
    """The hydroml metadata embedded in an exported ``.onnx`` or TorchScript ``.pt`` file.

    Parameters
    ----------
    path : path-like
        The exported file.

    Returns
    -------
    dict
        Inputs, targets, normalisation, ``seq_len``, config...
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported model {path} not found")
    if path.suffix == ".onnx":
        return _onnx_meta(path.read_bytes(), str(path))
    extra = {_TS_EXTRA: ""}
    torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    if not extra[_TS_EXTRA]:
        raise DataError(f"{path}: TorchScript model without hydroml metadata (extra file {_TS_EXTRA})")
    return json.loads(extra[_TS_EXTRA])


def _forecast_model(runner: _ExportedBase, meta: dict, source: str):
    from hydroml.forecast import ForecastModel

    return ForecastModel(
        model=runner,
        architecture=meta["architecture"],
        inputs=list(meta["inputs"]),
        static_inputs=list(meta["static_inputs"]),
        targets=list(meta["targets"]),
        normaliser=meta["normalisation"],
        seq_len=int(meta["seq_len"]),
        config=meta["config"],
        model_id=meta["model_id"],
        model_version=meta["model_version"],
        source=source,
        lags=int(meta["lags"]),
        valid_mask=meta["valid_mask"],
        lead_time=int(meta["lead_time"]),
    )


def load_exported(path: str | os.PathLike, threads: int | None = None):
    """Load an exported model for :func:`hydroml.forecast.forecast` (ONNX Runtime or TorchScript).

    Parameters
    ----------
    path : path-like
        A ``.onnx`` file (run by ONNX Runtime) or a TorchScript ``.pt`` file, written by :func:`export_model`.
    threads : int, optional
        ONNX Runtime intra-op threads.

    Returns
    -------
    hydroml.forecast.ForecastModel
        With ``model`` an :class:`OnnxModel` or :class:`TorchScriptModel`.

    Examples
    --------
    >>> from hydroml.export import load_exported          # doctest: +SKIP
    >>> fm = load_exported("runs/demo_20260101_120000/model.onnx")
    >>> forecast(fm, ds, "2013-01-01", "2015-12-31", mode="stateful")
    """
    path = Path(path)
    meta = read_metadata(path)
    runner = OnnxModel(path, meta, threads) if path.suffix == ".onnx" else TorchScriptModel(path, meta)
    return _forecast_model(runner, meta, f"{path.resolve()} ({path.suffix[1:]})")


def with_engine(fm: Any, engine: str = "torch", compile: bool | str = False):
    """The :class:`~hydroml.forecast.ForecastModel` run by another engine (used by ``forecast(engine=...)``).

    Parameters
    ----------
    fm : ForecastModel
        The model.
    engine : {"torch", "onnxruntime", "torchscript"}
        ``"onnxruntime"``: exported to ONNX in memory and run by ONNX Runtime; ``"torchscript"``: traced.
    compile : bool or str
        With ``engine="torch"``: ``torch.compile`` the model (:func:`hydroml.export.compile_model`).

    Returns
    -------
    ForecastModel
        A copy with the model replaced (the original is unchanged).
    """
    from hydroml.export._compile import compile_model

    engines = ("torch", "onnxruntime", "torchscript")
    if engine not in engines:
        raise ConfigError(f"forecast engine: expected one of {', '.join(engines)}, found {engine!r}")
    if engine == "torch":
        if not compile:
            return fm
        return dataclasses.replace(fm, model=compile_model(fm.model, compile, name=fm.architecture))
    if compile:
        raise ConfigError(f"forecast: compile=True applies to engine='torch', not {engine!r}")
    fmt = "onnx" if engine == "onnxruntime" else "torchscript"
    data = export_bytes(fm, fmt, check=False)
    meta = read_metadata_bytes(data, fmt)
    runner = OnnxModel(data, meta) if fmt == "onnx" else TorchScriptModel(data, meta)
    return dataclasses.replace(fm, model=runner)


def read_metadata_bytes(data: bytes, format: str) -> dict:
    """The hydroml metadata of an exported model held in memory (``format`` ``"onnx"`` or ``"torchscript"``)."""
    if format == "onnx":
        return _onnx_meta(data, "bytes")
    extra = {_TS_EXTRA: ""}
    torch.jit.load(io.BytesIO(data), map_location="cpu", _extra_files=extra)
    return json.loads(extra[_TS_EXTRA])
