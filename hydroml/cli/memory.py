"""``hydroml memory plan CONFIG``: profile a model and plan activation checkpointing under a memory budget."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

NAME = "memory"
HELP = "profile a model's activation memory and plan checkpointing under a budget"
DESCRIPTION = """\
Profile a model stage by stage (bytes kept for backward, forward time) on a random batch of the configured
shape, plan the checkpointing schedule with the least recomputation under the memory budget, and print the
per-stage table, the schedule, the predicted peak and the recomputation overhead.

CONFIG is a YAML file, e.g.

    model:
      name: unet            # any registered model; other keys are its parameters
      in_channels: 12
      base_width: 32
      depth: 4
    batch:                  # shapes of the batch entries (random normal data)
      x: [8, 12, 512, 512]
    memory_budget: 1.5GB
    chunk: 5                # time steps per stage for recurrent models (lstm, ealstm)

A training config is accepted too (e.g. `hydroml memory plan $(hydroml train --list-examples | awk '{print
$2}') --budget 50MB`): the model is built exactly as training builds it, the batch from `train.batch_size`,
`data.seq_len` and the data's inputs, and the budget is --budget or `train.memory_budget` (without either the
profile is shown and nothing is checkpointed). The totals are explained in words after the table.
"""

log = logging.getLogger("hydroml.cli.memory")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    p = sub.add_parser("plan", help="print the per-stage table, the schedule, predicted peak and overhead")
    p.add_argument(
        "config", help="YAML file with model, batch and memory_budget (see `hydroml memory --help`)"
    )
    p.add_argument("--budget", help="memory budget overriding the config's, e.g. 1.5GB or 800MiB")
    p.add_argument("--chunk", type=int, help="time steps per stage for recurrent models")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--measure", action="store_true", help="also run one step under the schedule and measure")


def _load(path: str) -> dict:
    import yaml

    from hydroml.exceptions import ConfigError

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    cfg = yaml.safe_load(p.read_text()) or {}
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level, found {type(cfg).__name__}")
    return cfg


def _model_spec(cfg: dict, path: str) -> tuple[str, dict]:
    from hydroml.exceptions import ConfigError

    m = cfg.get("model")
    if isinstance(m, str):
        return m, dict(cfg.get("model_config") or {})
    if not isinstance(m, dict) or "name" not in m:
        raise ConfigError(f"{path}: needs a 'model:' section with a 'name' (e.g. unet, lstm)")
    params = {k: v for k, v in m.items() if k not in ("name", "config")}
    params.update(m.get("config") or {})
    return str(m["name"]), params


def _is_training_config(cfg: dict) -> bool:
    return isinstance(cfg.get("data"), dict) and "batch" not in cfg


def _from_training_config(path: str) -> tuple[str, Any, dict, str, str | int | None]:
    """Model, random batch and budget of a training config (the model exactly as training builds it)."""
    import torch

    from hydroml.exceptions import ConfigError
    from hydroml.training import load_config
    from hydroml.training.loop import build_model

    cfg = load_config(path)
    name, d, t = cfg.model.name, cfg.data, cfg.train
    if name not in ("lstm", "ealstm"):
        raise ConfigError(
            f"{path}: a training config of a {name!r} model has no batch shape for the profile (the grid size "
            "comes from the data); add 'batch:' with the input shapes, e.g. x: [8, 12, 512, 512]"
        )
    model = build_model(cfg)
    b, T, nd, ns = int(t.batch_size), int(d.seq_len), len(d.dynamic_inputs), len(d.static_inputs)
    gen = torch.Generator().manual_seed(0)
    batch = {"x_dynamic": torch.randn(b, T, nd, generator=gen)}
    if ns:
        batch["x_static"] = torch.randn(b, ns, generator=gen)
    what = (
        f"a training batch of {b} windows x {T} time steps x {nd} dynamic inputs"
        + (f" (+ {ns} static)" if ns else "")
        + " (train.batch_size, data.seq_len, data.dynamic_inputs)"
    )
    return name, model, batch, what, t.memory_budget


def _batch(cfg: dict, name: str, params: dict, path: str) -> dict:
    import torch

    from hydroml.exceptions import ConfigError

    spec = cfg.get("batch")
    if spec is None:
        data, train = cfg.get("data") or {}, cfg.get("train") or {}
        if name in ("lstm", "ealstm") and "seq_len" in data:
            b = int(train.get("batch_size", 256))
            T = int(data["seq_len"])
            nd = int(params.get("n_dynamic", len(data.get("dynamic_inputs", [])) or 1))
            ns = int(params.get("n_static", len(data.get("static_inputs", []))))
            spec = {"x_dynamic": [b, T, nd]} | ({"x_static": [b, ns]} if ns else {})
        else:
            raise ConfigError(f"{path}: needs a 'batch:' mapping of input shapes, e.g. x: [8, 12, 512, 512]")
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: 'batch' must map input names to shapes, found {type(spec).__name__}")
    gen = torch.Generator().manual_seed(0)
    return {k: torch.randn(*[int(s) for s in v], generator=gen) for k, v in spec.items()}


def run(args: argparse.Namespace) -> int:
    if getattr(args, "action", None) != "plan":
        import sys

        sys.stderr.write("usage: hydroml memory plan CONFIG [--budget 1.5GB] [--json]\n")
        return 2
    import torch

    from hydroml import memory
    from hydroml.exceptions import ConfigError
    from hydroml.models import create

    cfg = _load(args.config)
    training_error = None
    if _is_training_config(cfg):
        try:
            name, model, batch, what, cfg_budget = _from_training_config(args.config)
        except ConfigError as err:  # not a complete training config: read it as a plan config below
            training_error = err
    if training_error is not None or not _is_training_config(cfg):
        name, params = _model_spec(cfg, args.config)
        try:
            model = create(name, **params)
        except TypeError as err:
            if training_error is not None:
                raise training_error from err
            raise ConfigError(
                f"{args.config}: model {name!r} cannot be built from its parameters: {err}"
            ) from err
        batch = _batch(cfg, name, params, args.config)
        what = "the batch " + ", ".join(f"{k} {list(v.shape)}" for k, v in batch.items()) + " (batch:)"
        cfg_budget = cfg.get("memory_budget") or (cfg.get("train") or {}).get("memory_budget")
    model.train()
    budget_text = args.budget or cfg_budget
    budget = None
    if budget_text is not None:
        try:
            budget = memory.parse_bytes(budget_text)
        except (ValueError, TypeError) as err:
            where = "--budget" if args.budget else f"{args.config}: memory_budget"
            raise ConfigError(
                f"{where}: expected a size such as 1.5GB or 800MiB, found {budget_text!r}"
            ) from err
    chunk = args.chunk or cfg.get("chunk")
    if chunk is None and "x_dynamic" in batch:
        chunk = max(1, int(round(batch["x_dynamic"].shape[1] ** 0.5 / 2)))
    log.info("profiling %s on %s", name, {k: tuple(v.shape) for k, v in batch.items()})
    prof = memory.profile(model, batch, chunk=chunk if "x_dynamic" in batch else None)
    sched = memory.plan(prof, budget if budget is not None else max(1, prof.total_saved_bytes) * 4)
    sqrt = memory.sqrt_schedule(prof)
    result = {
        "model": name,
        "budget_bytes": budget,
        "profile": prof.to_dict(),
        "plan": sched.to_dict(),
        "sqrt": sqrt.to_dict(),
    }
    if args.measure:
        model = memory.apply(model, sched)
        with torch.enable_grad(), memory.SavedTensorCounter(exclude=[model]) as counter:
            out = model(batch)
            y = out["y_hat"] if isinstance(out, dict) else out
            y.float().square().mean().backward()
        result["measured_peak_bytes"] = int(counter.peak_bytes)
    if args.json:
        print(json.dumps(result))
        return 0
    fb = memory.format_bytes
    print(prof.table())
    print()
    print(sched.summary())
    print(
        f"for comparison, sqrt(n) segments (checkpoint_sequential): predicted peak "
        f"{fb(sqrt.predicted_peak_bytes)}, recomputation {100 * sqrt.recompute_ratio:.0f}% of a forward pass"
    )
    if "measured_peak_bytes" in result:
        print(f"measured peak under the schedule: {fb(result['measured_peak_bytes'])}")
    if "x_dynamic" in batch and hasattr(model, "set_checkpoint_schedule"):
        print(f"time items (model.set_checkpoint_schedule): {sched.to_time_items()}")
    print()
    print(_explain(model, what, prof, sched, budget, args.config))
    return 0


def _explain(model: Any, what: str, prof: Any, sched: Any, budget: int | None, path: str) -> str:
    """The totals in words: what was profiled, what is kept, what the budget buys, what it costs."""
    import textwrap

    from hydroml import memory

    fb = memory.format_bytes
    n_par = sum(p.numel() for p in model.parameters())
    par_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    text = (
        f"In words: profiled on {what}. Without checkpointing, backward needs {fb(sched.store_all_bytes)} of "
        f"activations kept from the forward pass, over {sched.n_stages} stages. That is on top of the "
        f"{n_par:,} parameters ({fb(par_bytes)}; with gradients and Adam's two moments about "
        f"{fb(4 * par_bytes)}), which no schedule changes. "
    )
    if budget is None:
        text += (
            f"{path} sets no memory_budget and no --budget was given, so nothing is checkpointed; pass e.g. "
            f"--budget {fb(max(1, sched.store_all_bytes // 3))} to plan a schedule that keeps a third."
        )
    elif sched.predicted_peak_bytes <= budget and sched.recompute_s == 0:
        text += f"The budget of {fb(budget)} holds them all: nothing is recomputed."
    else:
        text += (
            f"Under the budget of {fb(budget)} the schedule keeps at most {fb(sched.predicted_peak_bytes)} "
            f"(the predicted peak of kept activations) by recomputing {100 * sched.recompute_ratio:.0f}% of one "
            "forward pass during backward"
            + (
                "; the budget is below what any schedule can reach, so this is the smallest peak found."
                if sched.predicted_peak_bytes > budget
                else "."
            )
        )
    return textwrap.fill(text, 110)
