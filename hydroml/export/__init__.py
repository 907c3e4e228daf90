"""hydroml.export: compiled and exported models.

- :func:`compile_model` -- ``torch.compile`` any registered model, falling back to eager execution with one log
  line where it cannot compile (``train.compile``, ``forecast(compile=True)``);
- :func:`export_model` -- ONNX or TorchScript file with the normalisation, inputs, targets and config embedded
  (``hydroml export RUN_DIR --format onnx|torchscript``); :func:`read_metadata` reads them back;
- :func:`load_exported` -- an exported file as a :class:`hydroml.forecast.ForecastModel`, run by ONNX Runtime
  (:class:`OnnxModel`) or TorchScript (:class:`TorchScriptModel`); ``forecast(..., engine="onnxruntime")``
  exports in memory and runs ONNX Runtime in one call.

ONNX export needs ``onnx`` and ``onnxruntime`` (``pip install hydroml[export]``).
"""

from hydroml.export._compile import COMPILE_MODES, CompiledModel, compile_model
from hydroml.export._export import (
    EXPORTABLE,
    FORMATS,
    METADATA_KEY,
    OnnxModel,
    TorchScriptModel,
    export_bytes,
    export_model,
    load_exported,
    read_metadata,
    with_engine,
)

__all__ = [
    "COMPILE_MODES",
    "EXPORTABLE",
    "FORMATS",
    "METADATA_KEY",
    "CompiledModel",
    "OnnxModel",
    "TorchScriptModel",
    "compile_model",
    "export_bytes",
    "export_model",
    "load_exported",
    "read_metadata",
    "with_engine",
]
