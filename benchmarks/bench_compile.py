"""Eager vs torch.compile vs the fused CPU LSTM kernel vs ONNX Runtime, side by side in one run (issue 15).

Three workloads, each variant timed in the same process after the same warm-up rules:

- ``lstm_train``: one LSTM training step (forward, NSE-free MSE loss on the last step, backward, Adam step) on a
  batch of ``--batch`` windows of ``--seq`` days, ``--hidden`` units, 5 inputs. Variants: ``eager`` (``nn.LSTM``,
  oneDNN), ``compiled`` (``torch.compile`` of the model with ``nn.LSTM``), ``fused`` (hydroml's fused kernel),
  ``fused+compiled``. ONNX Runtime has no training path here.
- ``lstm_stateful``: stateful inference, one call per chunk of ``--chunk`` days carrying ``(h, c)``, for 1, 100
  and 1000 basins. Variants: ``eager``, ``compiled``, ``torchscript``, ``onnxruntime``. The fused kernel is a
  training kernel (it is used only with gradients enabled), so it has no inference row.
- ``unet_tiled``: :func:`hydroml.memory.tiled_predict` of the zoo U-Net (``unet.demo_evaporation``, 11 channels)
  over a ``--size`` x ``--size`` grid in tiles of ``--tile``. Variants: ``eager``, ``compiled``, ``onnxruntime``.

Timing: every variant's first call is made, then ``--reps`` rounds call each variant once in turn (so a change
of load on the shared machine hits all alike); Inductor compiles cold, into a fresh cache folder, unless
``--warm-cache``. For each variant: ``first_s`` (the first call: tracing, compilation and session creation included; for
ONNX Runtime the export too), ``call_s`` (median of ``--reps`` later calls), ``speedup`` (eager ``call_s`` /
``call_s``), ``overhead_s`` (``first_s - call_s``: what compilation costs once) and ``break_even_calls``
(``overhead_s`` over the time saved per call, relative to the eager first call's overhead; ``never`` when the
variant is not faster).

Run::

    OMP_NUM_THREADS=1 python benchmarks/bench_compile.py [--threads 1] [--size 2048] [--json]
    OMP_NUM_THREADS=1 python benchmarks/bench_compile.py --only unet_tiled --size 8192 --reps 1 --variants eager,onnxruntime

With ``--json``: one object per line (``workload``, ``variant``, ``basins``/``size``, ``first_s``, ``call_s``,
``speedup``, ``overhead_s``, ``break_even_calls``, ``threads``, versions).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable

# Cold compilation unless --warm-cache: Inductor reuses kernels compiled by earlier processes from its on-disk
# cache, which would hide the compile time a user pays once per machine and shape.
if "--warm-cache" not in sys.argv:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="hydroml_bench_inductor_")

import numpy as np  # noqa: E402
import torch  # noqa: E402

warnings.filterwarnings("ignore")


def _interleaved(
    calls: dict[str, tuple[float, Callable[[], object]]], reps: int
) -> dict[str, tuple[float, float]]:
    """``{variant: (first_s, median call_s)}``: each variant's first call (plus its preparation time ``prep``),
    then ``reps`` rounds that call every variant once in turn, so load changes on a shared machine hit every
    variant alike."""
    first: dict[str, float] = {}
    for variant, (prep, fn) in calls.items():
        t0 = time.perf_counter()
        fn()
        first[variant] = prep + time.perf_counter() - t0
    times: dict[str, list[float]] = {v: [] for v in calls}
    for _ in range(reps):
        for variant, (_, fn) in calls.items():
            t0 = time.perf_counter()
            fn()
            times[variant].append(time.perf_counter() - t0)
    return {v: (first[v], statistics.median(times[v])) for v in calls}


def _rows(workload: str, results: dict[str, tuple[float, float]], extra: dict) -> list[dict]:
    base_first, base = results["eager"]
    base_over = base_first - base
    rows = []
    for variant, (first, call) in results.items():
        over = first - call
        saved = base - call
        if variant == "eager":
            be = 0
        elif saved > 0:
            be = int(np.ceil(max(0.0, over - base_over) / saved))
        else:
            be = "never"
        rows.append(
            {
                "workload": workload,
                "variant": variant,
                **extra,
                "first_s": round(first, 4),
                "call_s": round(call, 5),
                "speedup": round(base / call, 3),
                "overhead_s": round(over, 3),
                "break_even_calls": be,
            }
        )
    return rows


def bench_lstm_train(args, variants: list[str]) -> list[dict]:
    from hydroml.export import compile_model
    from hydroml.models import create

    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.seq, 5, generator=g)
    y = torch.randn(args.batch, 1, generator=g)
    calls = {}
    for variant in variants:
        if variant not in ("eager", "compiled", "fused", "fused+compiled"):
            continue
        torch.manual_seed(0)
        kernel = "fused" if variant.startswith("fused") else "native"
        model = create("lstm", n_dynamic=5, n_targets=1, hidden_size=args.hidden, kernel=kernel).train()
        run = compile_model(model, name=variant) if "compiled" in variant else model
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(run=run, opt=opt) -> None:
            opt.zero_grad(set_to_none=True)
            loss = ((run({"x_dynamic": x})["y_hat"][:, -1] - y) ** 2).mean()
            loss.backward()
            opt.step()

        calls[variant] = (0.0, step)
    results = _interleaved(calls, args.reps)
    extra = {"batch": args.batch, "seq": args.seq, "hidden": args.hidden, "basins": None, "size": None}
    return _rows("lstm_train", results, extra)


def bench_lstm_stateful(args, variants: list[str]) -> list[dict]:
    import hydroml.zoo  # noqa: F401 - registers nothing; keeps import order the same as users'
    from hydroml.export import OnnxModel, TorchScriptModel, compile_model, export_bytes
    from hydroml.export._export import read_metadata_bytes
    from hydroml.forecast import ForecastModel
    from hydroml.models import create

    rows = []
    torch.manual_seed(0)
    model = create("lstm", n_dynamic=5, n_targets=1, hidden_size=args.hidden).eval()
    fm = ForecastModel(
        model=model,
        architecture="lstm",
        inputs=["a", "b", "c", "d", "e"],
        targets=["q"],
        normaliser={v: (0.0, 1.0) for v in "abcdeq"},
        seq_len=args.chunk,
    )
    for basins in args.basins:
        g = torch.Generator().manual_seed(basins)
        chunks = [torch.randn(basins, args.chunk, 5, generator=g) for _ in range(args.chunks)]
        calls = {}
        for variant in variants:
            if variant not in ("eager", "compiled", "torchscript", "onnxruntime"):
                continue
            t0 = time.perf_counter()
            if variant == "compiled":
                run = compile_model(model, name="lstm")
            elif variant == "onnxruntime":
                data = export_bytes(fm, "onnx", check=False)
                run = OnnxModel(data, read_metadata_bytes(data, "onnx"), threads=args.threads)
            elif variant == "torchscript":
                data = export_bytes(fm, "torchscript", check=False)
                run = TorchScriptModel(data, read_metadata_bytes(data, "torchscript"))
            else:
                run = model
            prep = time.perf_counter() - t0

            @torch.no_grad()
            def period(run=run, chunks=chunks) -> None:
                state = None
                for c in chunks:
                    out = run({"x_dynamic": c} if state is None else {"x_dynamic": c, "state": state})
                    state = out["state"]

            calls[variant] = (prep, period)
        results = _interleaved(calls, args.reps)
        extra = {
            "basins": basins,
            "chunk": args.chunk,
            "chunks": args.chunks,
            "hidden": args.hidden,
            "size": None,
        }
        rows += _rows("lstm_stateful", results, extra)
    return rows


def bench_unet_tiled(args, variants: list[str]) -> list[dict]:
    import hydroml.zoo
    from hydroml.export import OnnxModel, compile_model, export_bytes
    from hydroml.export._export import read_metadata_bytes
    from hydroml.memory import tiled_predict

    model = hydroml.zoo.load("unet.demo_evaporation")
    rf = model.receptive_field()
    c = model.card.model_params["in_channels"]
    x = torch.randn(c, args.size, args.size, generator=torch.Generator().manual_seed(0))
    calls = {}
    for variant in variants:
        if variant not in ("eager", "compiled", "onnxruntime"):
            continue
        t0 = time.perf_counter()
        if variant == "compiled":
            run = compile_model(model, name="unet")
        elif variant == "onnxruntime":
            data = export_bytes(model, "onnx", check=False)
            run = OnnxModel(data, read_metadata_bytes(data, "onnx"), threads=args.threads)
        else:
            run = model
        prep = time.perf_counter() - t0

        @torch.no_grad()
        def predict(run=run) -> None:
            tiled_predict(run, x, tile=args.tile, halo=rf.halo, stride=rf.stride, progress=False)

        calls[variant] = (prep, predict)
    results = _interleaved(calls, args.reps)
    return _rows("unet_tiled", results, {"size": args.size, "tile": args.tile, "basins": None})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="lstm_train,lstm_stateful,unet_tiled")
    p.add_argument("--variants", default="eager,compiled,fused,fused+compiled,torchscript,onnxruntime")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--seq", type=int, default=365)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--basins", default="1,100,1000")
    p.add_argument("--chunk", type=int, default=365, help="days per stateful call")
    p.add_argument("--chunks", type=int, default=10, help="calls per stateful period")
    p.add_argument("--size", type=int, default=2048, help="U-Net grid side (the issue's figure is 8192)")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--warm-cache", action="store_true", help="reuse Inductor's on-disk cache (default: cold)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    args.basins = [int(b) for b in args.basins.split(",")]
    torch.set_num_threads(args.threads)
    logging.getLogger("hydroml").setLevel(logging.WARNING)
    variants = ["eager"] + [v for v in args.variants.split(",") if v != "eager"]
    only = args.only.split(",")
    import onnxruntime

    info = {
        "threads": args.threads,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "cpu": platform.processor() or platform.machine(),
    }
    rows: list[dict] = []
    for name, fn in (
        ("lstm_train", bench_lstm_train),
        ("lstm_stateful", bench_lstm_stateful),
        ("unet_tiled", bench_unet_tiled),
    ):
        if name in only:
            new = fn(args, variants)
            rows += new
            if args.json:
                for r in new:
                    print(json.dumps({**r, **info}), flush=True)
    if args.json:
        return
    print(f"torch {info['torch']}, onnxruntime {info['onnxruntime']}, {args.threads} thread(s)")
    print(
        f"{'workload':<14} {'case':<22} {'variant':<15} {'first s':>9} {'call s':>9} {'speedup':>8} {'overhead s':>10} {'break-even':>10}"
    )
    for r in rows:
        if r["workload"] == "lstm_train":
            case = f"B{r['batch']} T{r['seq']} H{r['hidden']}"
        elif r["workload"] == "lstm_stateful":
            case = f"{r['basins']} basins {r['chunks']}x{r['chunk']}d"
        else:
            case = f"{r['size']}^2 tile {r['tile']}"
        print(
            f"{r['workload']:<14} {case:<22} {r['variant']:<15} {r['first_s']:9.3f} {r['call_s']:9.4f} "
            f"{r['speedup']:8.2f} {r['overhead_s']:10.2f} {str(r['break_even_calls']):>10}"
        )


if __name__ == "__main__":
    main()
