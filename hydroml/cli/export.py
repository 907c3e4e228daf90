"""``hydroml export``: a run (or zoo model) to ONNX or TorchScript with its normalisation embedded."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = "export a trained model to ONNX or TorchScript (normalisation and inputs embedded)"
DESCRIPTION = (
    "Write RUN_DIR/model.onnx (or model.pt) with the inputs, targets, normalisation statistics, seq_len and the "
    "resolved config embedded as JSON (ONNX metadata_props / TorchScript extra file 'hydroml.json'). The "
    "exported graph takes normalised tensors; hydroml.export.load_exported(PATH) gives a model that "
    "hydroml.forecast.forecast runs with ONNX Runtime or TorchScript. Exportable architectures: lstm, unet, "
    "closure. RUN may also be a zoo name (then give --out)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``hydroml export``."""
    parser.add_argument(
        "run", metavar="RUN_DIR", help="run directory (or zoo name, e.g. lstm.demo_discharge)"
    )
    parser.add_argument(
        "--format", choices=("onnx", "torchscript"), default="onnx", help="export format (default: onnx)"
    )
    parser.add_argument("--out", default=None, help="output file (default: RUN_DIR/model.onnx or model.pt)")
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="skip running the exported model against the eager one on random inputs",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``hydroml export``."""
    from hydroml.export import export_model, read_metadata

    path = export_model(args.run, args.out, args.format, check=not args.no_check)
    meta = read_metadata(path)
    print(
        f"wrote {path} ({args.format}): {meta['architecture']} {' '.join(meta['input_names'])} -> "
        f"{', '.join(meta['targets'])}"
    )
    return 0
