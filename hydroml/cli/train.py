"""``hydroml train``: train a model from a YAML config, resume a run, or run under torchrun."""

from __future__ import annotations

NAME = "train"
HELP = "train a model from a YAML config into runs/<name>_<YYYYmmdd_HHMMSS>/"
DESCRIPTION = """Train a model from a YAML config, or from an example shipped inside the package
(`hydroml train --example demo_lstm`; `--list-examples` lists them and where they are).

The run directory holds the resolved config.yaml, normalisation.json, model.safetensors, an atomic
checkpoint of every epoch, metrics.csv and train.log. A run killed at any point continues with
`hydroml train --resume RUN_DIR` and reaches the same weights as an uninterrupted run.
Several processes: `torchrun --nproc_per_node=2 -m hydroml train CONFIG` (gloo on CPU, nccl on GPU;
each process validates its share of the validation windows and all stop at the same epoch; only rank 0
writes files)."""


def add_arguments(parser) -> None:
    parser.add_argument("config", nargs="?", help="training config (YAML); optional with --resume")
    parser.add_argument(
        "--example", metavar="NAME", help="train a shipped example config instead (e.g. demo_lstm)"
    )
    parser.add_argument(
        "--list-examples", action="store_true", help="list the shipped example configs and their paths"
    )
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its last checkpoint")
    parser.add_argument(
        "--runs-dir", default="runs", metavar="DIR", help="parent of new run directories (default: runs)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    import sys
    from pathlib import Path

    from hydroml.examples import example_path, list_examples
    from hydroml.exceptions import ConfigError
    from hydroml.training import train

    if args.list_examples:
        for name in list_examples():
            sys.stdout.write(f"{name:<16} {example_path(name)}\n")
        return 0
    if args.example is not None and args.config is not None:
        raise ConfigError(
            f"give either CONFIG or --example, not both (found {args.config!r} and {args.example!r})"
        )
    config = example_path(args.example) if args.example is not None else args.config
    if config is None and args.resume is None:
        raise ConfigError("give a CONFIG file, --example NAME or --resume RUN_DIR")
    if config is not None and args.resume is None and not Path(config).is_file():
        raise ConfigError(f"CONFIG: no such file {config!r} (a YAML training config; or --example NAME)")
    run_dir = train(
        config,
        runs_dir=args.runs_dir,
        resume=args.resume,
        progress=False if args.no_progress else None,
    )
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        sys.stdout.write(f"{run_dir}\n")
    return 0
