"""Memory benchmark of hydroml.memory: checkpointing plans, reversible blocks, tiled inference, catchment training.

Every measurement runs in a fresh subprocess so that the process peak (``VmHWM`` of ``/proc/self/status``) is its
own. Per measurement:

- ``peak_saved_bytes``: peak of live tensors saved for backward during one training step
  (``hydroml.memory.SavedTensorCounter``: ``saved_tensors_hooks``, deduplicated by storage, parameters excluded);
- ``peak_alloc_mb``: peak of bytes allocated by torch during one step, from ``torch.profiler`` with
  ``profile_memory=True`` (sees kernel workspaces such as oneDNN's LSTM buffers that tensor counters miss);
- ``peak_rss_mb``: the process peak (VmHWM), ``base_rss_mb`` the resident size before the first step;
- ``step_s``: median wall time of the timed training steps (inference: of the whole prediction).

``alternate`` rows (lstm at 1/16 and at the smallest budget, unet at 1/4 of ``none``) time the unchanged model and
the plan step by step in turn in one process and report the median ``time_ratio``: on a shared machine the load
drifts between processes, which single-step times of separate processes cannot tell from the method.

Every worker flushes denormal floats to zero (``torch.set_flush_denormal(True)``, as hydroml's trainer does with
``train.flush_denormal``), checkpointed or not, so step-time ratios compare like with like.

Cases (issue 5): ``lstm`` (seq 365, hidden 256, batch 256: none / sqrt / plan at several budgets), ``unet``
(depth 4, 512 x 512, batch 8: ``none`` = the plain model with PyTorch's ordinary stored activations; ``sqrt`` =
plain stages under sqrt(n) segments; ``lean`` = the unet's lean stages (``lean=True``: norm + ReLU, pooling and
up-sampling recomputed in backward) without a schedule; ``plan`` = lean stages under hydroml's plan at several
budgets; ``plan_plain`` = plain stages under the plan (not run by default); reversible), ``tiled`` (unet inference on 8192 x 8192 x 12
read lazily from a NetCDF file, against untiled inference on grids that fit), ``catchment`` (catchment-sum
training on 1440 x 720: whole grid against two-pass tiled, gradients compared).

Usage::

    python benchmarks/bench_memory.py            # default shapes (under 10 minutes), rows streamed, then a table
    python benchmarks/bench_memory.py --json     # plus one JSON object per line, each printed as it is measured
    python benchmarks/bench_memory.py --full     # the issue-5 full shapes (about half an hour on 2 cores)
    python benchmarks/bench_memory.py --quick    # small sizes (a minute or two)
    python benchmarks/bench_memory.py --cases lstm unet
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _proc import status_mb  # benchmarks/ is on sys.path when a script runs

HERE = Path(__file__).resolve()

# --------------------------------------------------------------------------------------------------------------
# sizes

FULL = {
    "lstm": {"batch": 256, "seq": 365, "hidden": 256, "n_in": 25, "chunk": 5, "steps": 2},
    "unet": {"batch": 8, "size": 512, "channels": 12, "width": 16, "depth": 4, "steps": 1},
    "tiled": {"size": 8192, "channels": 12, "width": 8, "depth": 4, "tile": 1536, "fit_sizes": [2048, 4096]},
    # the water-cycle closure model's unet (hydroml.closure.train(architecture="unet"): base_width 8, depth 2,
    # norm "none"; 7 channels as in the zoo's closure.demo_evaporation: the product, 4 forcings, 2 static maps)
    # with its default 24 monthly windows per optimiser step, on the global 0.25-degree grid
    "catchment": {
        "h": 720,
        "w": 1440,
        "channels": 7,
        "width": 8,
        "depth": 2,
        "months": 24,
        "tile": 240,
        "batch_tile": 4,
        "catchments": 300,
    },
}
# the default run (issue 17: under 10 minutes on a loaded 2-core machine) keeps every shape that sets a ratio and
# shrinks only what the ratio does not depend on: the LSTM keeps seq 365 (the sqrt(n) segment count) and hidden 256
# (the GEMM shapes), halves the batch (every kept activation is batch x hidden: kept-bytes ratios do not move); the
# unet keeps depth, widths and channels at a quarter of the pixels and half the batch (every activation is
# batch x H x W x width: the 4x-at-budget ratio is pixel-count free); tiled inference keeps the 1536 tile (the tiled
# peak is one tile window plus its halo and the model, the output goes to a file: it does not grow with the grid)
# on a 4096^2 grid; the catchment case keeps the global 0.25-degree grid and its tile with 8 months per step
DEFAULT = {
    "lstm": {**FULL["lstm"], "batch": 128},
    "unet": {**FULL["unet"], "batch": 4, "size": 256},
    "tiled": {**FULL["tiled"], "size": 4096, "fit_sizes": [2048]},
    "catchment": {**FULL["catchment"], "months": 8},
}
QUICK = {
    "lstm": {"batch": 64, "seq": 120, "hidden": 128, "n_in": 25, "chunk": 4, "steps": 1},
    "unet": {"batch": 2, "size": 256, "channels": 12, "width": 8, "depth": 4, "steps": 1},
    "tiled": {"size": 2048, "channels": 12, "width": 8, "depth": 4, "tile": 512, "fit_sizes": [1024]},
    "catchment": {
        "h": 360,
        "w": 720,
        "channels": 7,
        "width": 8,
        "depth": 2,
        "months": 6,
        "tile": 120,
        "batch_tile": 2,
        "catchments": 100,
    },
}
SIZES = {"quick": QUICK, "default": DEFAULT, "full": FULL}


# --------------------------------------------------------------------------------------------------------------
# worker side


def _profiler_peak_mb(fn) -> float:
    """Peak of torch-allocated bytes (MiB) during ``fn()``, from torch.profiler's memory events."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # every op's *self* allocation balance (children excluded) and the unattributed "[memory]" events, in
    # chronological order: the running sum is the allocated bytes, per-op granularity
    events = [(e.time_range.start, e.self_cpu_memory_usage) for e in prof.events()]
    events.sort()
    cur = peak = 0
    for _, b in events:
        cur += b
        peak = max(peak, cur)
    del torch
    return peak / 2**20


def _median_time(fn, n: int) -> float:
    times = []
    for _ in range(max(1, n)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _lstm_worker(method: str, budget: int | None, sz: dict) -> dict:
    import torch
    from torch import nn

    from hydroml import memory

    torch.manual_seed(0)
    B, T, H, F = sz["batch"], sz["seq"], sz["hidden"], sz["n_in"]
    lstm = nn.LSTM(F, H, batch_first=True)
    head = nn.Linear(H, 1)
    params = list(lstm.parameters()) + list(head.parameters())
    x = torch.randn(B, T, F)
    y = torch.randn(B, T, 1)

    class Chunk(nn.Module):
        """(x, [h, c,] *ys) -> (x, h, c, *ys, head(lstm(x[t0:t1])))"""

        def __init__(self, t0: int, t1: int, first: bool):
            super().__init__()
            self.lstm, self.head, self.t0, self.t1, self.first = lstm, head, t0, t1, first

        def forward(self, s):
            if self.first:
                xx, *ys = s
                hc = None
            else:
                xx, h, c, *ys = s
                hc = (h, c)
            out, (h, c) = self.lstm(xx[:, self.t0 : self.t1], hc)
            return (xx, h, c, *ys, self.head(out))

    chunk = sz["chunk"]
    bounds = [(t, min(T, t + chunk)) for t in range(0, T, chunk)]
    stages = [Chunk(a, b, k == 0) for k, (a, b) in enumerate(bounds)]
    chain = memory.Chain(stages, (x,), lambda s: torch.cat(s[3:], dim=1), steps=[b - a for a, b in bounds])

    extra: dict = {}
    if method == "profile":
        return _write_costs(memory.profile(chain, None, step=False, warmup=True, repeat=1), "lstm")
    if method == "alternate":
        sched, _ = _schedule("lstm", "plan", budget)

        def lstm_step(planned: bool) -> None:
            for p in params:
                p.grad = None
            out = chain.output(memory.run_chain(stages, (x,), sched)) if planned else head(lstm(x)[0])
            (out - y).square().mean().backward()

        return _alternate(lambda: lstm_step(False), lambda: lstm_step(True), sched, rounds=max(5, ROUNDS))
    if method == "none":

        def forward():
            out, _ = lstm(x)
            return head(out)

    else:
        sched, extra = _schedule("lstm", method, budget)

        def forward():
            return chain.output(memory.run_chain(stages, (x,), sched))

    def step():
        for p in params:
            p.grad = None
        loss = (forward() - y).square().mean()
        loss.backward()

    return _train_measure(step, params, sz["steps"], extra)


_WORKDIR = Path(".")
ROUNDS = 3  # alternate rows: timed steps of each arm


def _write_costs(prof, case: str) -> dict:
    """Stage costs measured in their own process (profiling keeps every activation: it must not raise the
    process peak of the measured runs)."""
    (_WORKDIR / f"costs_{case}.json").write_text(json.dumps(prof.to_dict()))
    return {"stages": len(prof.stages), "persistent_bytes": prof.persistent_bytes}


def _read_costs(case: str):
    from hydroml.memory import Profile, StageCost

    d = json.loads((_WORKDIR / f"costs_{case}.json").read_text())
    return Profile(
        stages=[StageCost(**c) for c in d["stages"]],
        persistent_bytes=d["persistent_bytes"],
        nests=[tuple(n) for n in d.get("nests", [])],
        output_bytes=d.get("output_bytes", 0),
    )


def _schedule(case: str, method: str, budget: int | None):
    """The ``sqrt`` or ``plan`` schedule of a case from its measured costs (budget < 0: the smallest that fits),
    and the row's notes on it. ``case`` names the costs file (``unet_lean``: the unet's lean stages)."""
    from hydroml import memory

    prof = _read_costs(case)
    if method == "sqrt":
        sched = memory.sqrt_schedule(prof)
    else:
        sched = memory.plan(prof, memory.min_budget(prof) if budget is not None and budget < 0 else budget)
    return sched, {
        "predicted_peak_bytes": sched.predicted_peak_bytes,
        "recompute_ratio": round(sched.recompute_ratio, 3),
        "schedule": sched.describe()[:120],
    }


def _train_measure(step, params, steps: int, extra: dict) -> dict:
    from hydroml import memory

    base = status_mb("VmRSS")
    step()  # warm-up (oneDNN primitives, allocator)
    warm = status_mb("VmRSS")  # resident after one step: base + what the runtime keeps (allocator, kernels)
    with memory.SavedTensorCounter(exclude=params) as counter:
        t0 = time.perf_counter()
        step()
        first = time.perf_counter() - t0
    step_s = _median_time(step, steps - 1) if steps > 1 else first
    rss = status_mb("VmHWM")
    alloc = _profiler_peak_mb(step)
    return {
        "peak_saved_bytes": int(counter.peak_bytes),
        "peak_rss_mb": round(rss, 1),
        "base_rss_mb": round(base, 1),
        "warm_rss_mb": round(warm, 1),
        "peak_alloc_mb": round(alloc, 1),
        "step_s": round(step_s, 3),
        **extra,
    }


# unet methods: the model's lean stages (lean=True) or the plain ones, and the schedule on top; ``none`` is always
# the plain model with PyTorch's ordinary stored activations
_UNET_LEAN = {"lean": True, "plan": True, "profile_lean": True}
_UNET_SCHEDULE = {"sqrt": ("unet", "sqrt"), "plan_plain": ("unet", "plan"), "plan": ("unet_lean", "plan")}


def _unet_model(sz: dict, lean: bool = False, rev: bool = False):
    import torch

    from hydroml.models import create

    torch.manual_seed(0)  # the same weights for every method
    return create(
        "unet", in_channels=sz["channels"], base_width=sz["width"], depth=sz["depth"], reversible=rev,
        reversible_blocks=3, lean=lean,
    )  # fmt: skip


def _unet_worker(method: str, budget: int | None, sz: dict, arm: str = "plan") -> dict:
    import torch

    from hydroml import memory

    B, S, C = sz["batch"], sz["size"], sz["channels"]
    rev = method.startswith("reversible")
    model = _unet_model(sz, _UNET_LEAN.get(method, False), rev)
    if method == "reversible_stored":  # the same network, activations stored (ordinary autograd)
        for mod in model.modules():
            if hasattr(mod, "memory_saving"):
                mod.memory_saving = False
    torch.manual_seed(1)
    x = torch.randn(B, C, S, S)
    y = torch.randn(B, 1, S, S)
    extra: dict = {"lean": bool(getattr(model, "lean", False))}
    if method in ("profile", "profile_lean"):
        name = "unet_lean" if method == "profile_lean" else "unet"
        # two timed runs per stage, the faster kept (a shared machine's load spikes mislead the planner)
        return _write_costs(memory.profile(model, {"x": x}, step=False, warmup=True, repeat=2), name)
    if method == "alternate":  # step times of none and an arm alternated in one process (load drifts cancel)
        return _alternate_unet(model, x, y, budget, sz, arm)
    if method in _UNET_SCHEDULE:
        sched, notes = _schedule(*_UNET_SCHEDULE[method], budget)
        extra.update(notes)
        memory.apply(model, sched)
    params = list(model.parameters())

    def step():
        for p in params:
            p.grad = None
        loss = (model({"x": x})["y_hat"] - y).square().mean()
        loss.backward()

    return _train_measure(step, params, sz["steps"], extra)


def _alternate_unet(model, x, y, budget: int | None, sz: dict, arm: str) -> dict:
    """``none`` (the plain model) against ``arm`` (``plan``: lean stages + the plan at ``budget``; ``lean``: lean
    stages alone; ``plan_plain``: plain stages + the plan), alternated step by step in one process."""
    from hydroml import memory

    other = _unet_model(sz, _UNET_LEAN.get(arm, False))
    other.load_state_dict(model.state_dict())
    sched = None
    if arm in _UNET_SCHEDULE:
        sched, _ = _schedule(*_UNET_SCHEDULE[arm], budget)
        memory.apply(other, sched)

    def step(m) -> None:
        for p in m.parameters():
            p.grad = None
        (m({"x": x})["y_hat"] - y).square().mean().backward()

    res = _alternate(lambda: step(model), lambda: step(other), sched, rounds=ROUNDS)
    return {"arm": arm, **res}


def _alternate(step_none, step_plan, sched, rounds: int) -> dict:
    """Median step times of the unchanged model and of the plan, alternated step by step in one process (on
    a shared machine the load drifts between processes; alternating cancels most of it). Memory is not
    measured here (the two share one process)."""
    step_none(), step_plan()  # warm-up
    times: dict = {"none": [], "plan": []}
    for _ in range(rounds):
        for name, fn in (("none", step_none), ("plan", step_plan)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    none, planned = statistics.median(times["none"]), statistics.median(times["plan"])
    return {
        "peak_saved_bytes": None,
        "peak_rss_mb": None,
        "step_s": round(planned, 3),
        "none_step_s": round(none, 3),
        "time_ratio": round(planned / none, 3),
        "steps_none": [round(t, 2) for t in times["none"]],
        "steps_plan": [round(t, 2) for t in times["plan"]],
        "recompute_ratio": round(sched.recompute_ratio, 3) if sched is not None else 0.0,
    }


def _make_input(path: Path, size: int, channels: int) -> None:
    """A NetCDF file [channel, y, x] of smooth random fields, written in row blocks (never whole in memory)."""
    import netCDF4
    import numpy as np

    if path.exists():
        return
    tmp = path.with_suffix(".tmp.nc")
    rng = np.random.default_rng(0)
    with netCDF4.Dataset(tmp, "w") as ds:
        ds.createDimension("channel", channels)
        ds.createDimension("y", size)
        ds.createDimension("x", size)
        v = ds.createVariable("x_in", "f4", ("channel", "y", "x"), chunksizes=(1, 512, 512))
        block = 512
        for r in range(0, size, block):
            n = min(block, size - r)
            yy = np.arange(r, r + n)[:, None] / size
            xx = np.arange(size)[None, :] / size
            for c in range(channels):
                field = np.sin(6.28 * (c + 1) * xx) * np.cos(3.14 * (c + 2) * yy)
                v[c, r : r + n] = (field + 0.1 * rng.standard_normal((n, size))).astype(np.float32)
    os.replace(tmp, path)


def _tiled_worker(method: str, budget: int | None, sz: dict, size: int, workdir: Path) -> dict:
    import numpy as np
    import torch
    import xarray as xr

    from hydroml import memory
    from hydroml.models import create

    torch.manual_seed(0)
    C = sz["channels"]
    model = create("unet", in_channels=C, base_width=sz["width"], depth=sz["depth"]).eval()
    path = workdir / f"input_{size}.nc"
    base = status_mb("VmRSS")
    with xr.open_dataset(path) as ds:
        da = ds["x_in"]  # lazy, file-backed: tile windows are read on demand
        if method == "untiled":
            t0 = time.perf_counter()
            x = torch.from_numpy(np.asarray(da.values))[None]
            with torch.inference_mode():
                out = model({"x": x})["y_hat"][0].numpy()
            del x
            step_s = time.perf_counter() - t0
            np.save(workdir / f"untiled_{size}.npy", out[:, ::97, ::89])  # a sample for the comparison
            del out
        else:
            t0 = time.perf_counter()
            out = memory.tiled_predict(
                model, da, tile=sz["tile"], out=workdir / f"tiled_{size}.nc", progress=False
            )
            step_s = time.perf_counter() - t0
            np.save(workdir / f"tiled_{size}.npy", out[:, ::97, ::89].values)  # strided read, not the grid
            out.close()
    rf = model.receptive_field()
    return {
        "peak_saved_bytes": 0,
        "peak_rss_mb": round(status_mb("VmHWM"), 1),
        "base_rss_mb": round(base, 1),
        "step_s": round(step_s, 3),
        "grid": f"{size}x{size}x{C}",
        "mpix_per_s": round(size * size / step_s / 1e6, 3),
        "halo": rf.halo,
    }


def _catchment_month(sz: dict, month: int):
    """Input channels ``[C, H, W]`` of one month (float32, generated month by month: never two copies)."""
    import numpy as np

    rng = np.random.default_rng(1000 + month)
    return rng.standard_normal((sz["channels"], sz["h"], sz["w"]), dtype=np.float32)


def _catchment_problem(sz: dict):
    import numpy as np
    import scipy.sparse as sp

    H, W, K = sz["h"], sz["w"], sz["catchments"]
    rng = np.random.default_rng(0)
    # blocky catchments: K random rectangles' labels on a coarse grid, upsampled
    coarse = rng.integers(0, K, size=(H // 24 + 1, W // 24 + 1))
    labels = np.kron(coarse, np.ones((24, 24), int))[:H, :W]
    labels[: H // 6] = -1  # polar cells outside every catchment
    rows, cols = np.nonzero(labels >= 0)
    area = np.cos(np.deg2rad(90 - 180 * (rows + 0.5) / H))  # cell area ~ cos(latitude)
    w = sp.csr_matrix((area, (labels[rows, cols], rows * W + cols)), shape=(K, H * W))
    target = rng.normal(size=(sz["months"], 1, K)).astype(np.float32) * float(
        np.asarray(w.sum(axis=1)).mean()
    )
    return w, target


def _catchment_input(sz: dict):
    """All months ``[M, C, H, W]`` in memory (what whole-grid training needs)."""
    import numpy as np

    x = np.empty((sz["months"], sz["channels"], sz["h"], sz["w"]), dtype=np.float32)
    for m in range(sz["months"]):
        x[m] = _catchment_month(sz, m)
    return x


def _make_catchment_file(path: Path, sz: dict) -> None:
    """The same input as a NetCDF file ``[month, channel, y, x]``, written month by month."""
    import netCDF4

    if path.exists():
        return
    tmp = path.with_suffix(".tmp.nc")
    with netCDF4.Dataset(tmp, "w") as ds:
        for name, n in (("month", sz["months"]), ("channel", sz["channels"]), ("y", sz["h"]), ("x", sz["w"])):
            ds.createDimension(name, n)
        v = ds.createVariable("x_in", "f4", ("month", "channel", "y", "x"), chunksizes=(1, 1, 240, 240))
        for m in range(sz["months"]):
            v[m] = _catchment_month(sz, m)
    os.replace(tmp, path)


def _catchment_worker(method: str, budget: int | None, sz: dict, workdir: Path) -> dict:
    import numpy as np
    import torch

    from hydroml import memory
    from hydroml.models import create

    torch.manual_seed(0)
    w, target = _catchment_problem(sz)
    model = create("unet", in_channels=sz["channels"], base_width=sz["width"], depth=sz["depth"], norm="none")
    params = list(model.parameters())
    tgt = torch.from_numpy(target)
    scale = float(np.abs(target).mean())
    extra = {"grid": f"{sz['h']}x{sz['w']}", "months": sz["months"], "channels": sz["channels"]}

    def loss_fn(s):
        return ((s - tgt) / scale).square().mean()

    if method == "whole":
        wt = torch.sparse_csr_tensor(
            torch.from_numpy(w.indptr).long(), torch.from_numpy(w.indices).long(),
            torch.from_numpy(w.data).float(), size=w.shape,
        )  # fmt: skip
        xt = torch.from_numpy(_catchment_input(sz))
        B = xt.shape[0]

        def step():
            for p in params:
                p.grad = None
            y = model({"x": xt})["y_hat"]  # [M, 1, H, W]
            sums = (wt @ y.reshape(B, -1).T).T.reshape(B, 1, -1)  # as hydroml.closure's whole-grid step
            loss_fn(sums).backward()

    else:
        source = method.split("_", 1)[1] if "_" in method else "memory"
        if source == "file":  # read tile windows lazily from the NetCDF file: the grid is never in memory
            import xarray as xr

            ds = xr.open_dataset(workdir / "catchment_input.nc")
            x = ds["x_in"]
        else:
            x = _catchment_input(sz)
        extra.update(tile=sz["tile"], batch_tile=sz["batch_tile"], input=source)

        def step():
            for p in params:
                p.grad = None
            memory.catchment_backward(
                model, x, w, loss_fn, tile=sz["tile"], batch_tile=sz["batch_tile"], progress=False
            )

    res = _train_measure(step, params, 1, extra)
    grads = np.concatenate([p.grad.detach().numpy().ravel() for p in params])
    np.save(workdir / f"catchment_grads_{method}.npy", grads)
    return res


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    # denormal gradients slow LSTM backward up to 8x on some CPUs; hydroml's trainer flushes them
    # (train.flush_denormal), so every run here does too, checkpointed or not: step-time ratios stay fair
    flush = torch.set_flush_denormal(True)
    sz = SIZES[args.sizes][args.case]
    workdir = Path(args.workdir)
    global _WORKDIR
    _WORKDIR = workdir
    if args.case == "lstm":
        res = _lstm_worker(args.method, args.budget, sz)
    elif args.case == "unet":
        res = _unet_worker(args.method, args.budget, sz, args.arm)
    elif args.case == "tiled":
        res = _tiled_worker(args.method, args.budget, sz, args.size, workdir)
    else:
        res = _catchment_worker(args.method, args.budget, sz, workdir)
    res = {
        "case": args.case,
        "method": args.method,
        "budget_bytes": args.budget,
        **res,
        "flush_denormal": flush,
    }
    if res["budget_bytes"] is not None and res["budget_bytes"] < 0:
        res["budget_bytes"] = res.get("predicted_peak_bytes")
    print("RESULT " + json.dumps(res), flush=True)


# --------------------------------------------------------------------------------------------------------------
# driver side


def _run(
    case: str,
    method: str,
    sizes: str,
    workdir: Path,
    budget: int | None = None,
    size: int | None = None,
    arm: str | None = None,
    rounds: int | None = None,
):
    cmd = [
        sys.executable,
        str(HERE),
        "--worker",
        "--case",
        case,
        "--method",
        method,
        "--workdir",
        str(workdir),
    ]
    cmd += ["--sizes", sizes]
    if arm is not None:
        cmd += ["--arm", arm]
    if rounds is not None:
        cmd += ["--rounds", str(rounds)]
    if budget is not None:
        cmd += ["--budget", str(int(budget))]
    if size is not None:
        cmd += ["--size", str(size)]
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # no spinning threads on a shared, oversubscribed machine
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line[7:])
            res["wall_s"] = round(time.perf_counter() - t0, 1)
            return res
    sys.stderr.write(f"{case}/{method} failed:\n{proc.stderr[-3000:]}\n")
    return {"case": case, "method": method, "budget_bytes": budget, "error": proc.stderr.strip()[-300:]}


def _fmt_bytes(n) -> str:
    if n is None:
        return "-"
    return f"{n / 2**20:.1f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true", help="also print one JSON object per measurement")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--full", action="store_const", dest="sizes", const="full", help="the issue-5 full shapes")
    g.add_argument(
        "--quick", action="store_const", dest="sizes", const="quick", help="small sizes (smoke test)"
    )
    g.add_argument("--sizes", choices=sorted(SIZES), help=argparse.SUPPRESS)
    p.add_argument("--cases", nargs="+", default=["lstm", "unet", "tiled", "catchment"])
    p.add_argument("--workdir", default=None, help="where input files go (default: a temporary directory)")
    p.add_argument("--no-reversible", action="store_true", help="skip the unet's reversible rows")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--method", help=argparse.SUPPRESS)
    p.add_argument("--budget", type=int, help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--arm", default="plan", help=argparse.SUPPRESS)
    p.add_argument("--rounds", type=int, default=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.sizes = args.sizes or "default"
    global ROUNDS
    ROUNDS = max(1, args.rounds)
    if args.worker:
        worker(args)
        return 0
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_memory_")
        workdir = Path(tmp.name)
    else:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
    sizes = SIZES[args.sizes]
    results = []

    def add(
        res,
    ):  # each row goes to stdout (flushed) as soon as it is measured; the full table follows at the end
        results.append(res)
        print("| " + " | ".join(_row(res)) + " |", flush=True)
        if args.json:
            print(json.dumps(res), flush=True)

    t_start = time.perf_counter()
    if "lstm" in args.cases:
        _run("lstm", "profile", args.sizes, workdir)
        none = _run("lstm", "none", args.sizes, workdir)
        add(none)
        sq = _run("lstm", "sqrt", args.sizes, workdir)
        add(sq)
        base = none.get("peak_saved_bytes") or 1
        budgets = [sq.get("predicted_peak_bytes"), base // 16, -1]  # -1: the smallest budget that fits
        for b in budgets:
            if b:
                r = _run("lstm", "plan", args.sizes, workdir, budget=b)
                add(r)
                if b == base // 16 or b == -1:  # step-time ratio, none and plan alternated in one process
                    add(_run("lstm", "alternate", args.sizes, workdir, budget=b))
    if "unet" in args.cases:
        _run("unet", "profile", args.sizes, workdir)  # plain stages (sqrt)
        _run("unet", "profile_lean", args.sizes, workdir)  # lean stages (plan)
        none = _run("unet", "none", args.sizes, workdir)
        add(none)
        add(_run("unet", "sqrt", args.sizes, workdir))
        add(_run("unet", "lean", args.sizes, workdir))
        base = none.get("peak_saved_bytes") or 1
        for frac in (3, 4, 5):  # 1/4: the target (>= 4x less kept)
            add(_run("unet", "plan", args.sizes, workdir, budget=base // frac))
        add(_run("unet", "plan", args.sizes, workdir, budget=-1))  # -1: the smallest budget that fits
        # step-time ratios, none and the arm alternated in one process: lean alone, the plan at 1/4
        add(_run("unet", "alternate", args.sizes, workdir, arm="lean", rounds=5))
        add(_run("unet", "alternate", args.sizes, workdir, budget=base // 4, arm="plan", rounds=5))
        if not args.no_reversible:
            add(_run("unet", "reversible_stored", args.sizes, workdir))
            add(_run("unet", "reversible", args.sizes, workdir))
    if "tiled" in args.cases:
        sz = sizes["tiled"]
        for s in sorted({*sz["fit_sizes"], sz["size"]}):
            _make_input(workdir / f"input_{s}.nc", s, sz["channels"])
        for s in sz["fit_sizes"]:
            u = _run("tiled", "untiled", args.sizes, workdir, size=s)
            t = _run("tiled", "tiled", args.sizes, workdir, size=s)
            try:
                import numpy as np

                a, b = np.load(workdir / f"untiled_{s}.npy"), np.load(workdir / f"tiled_{s}.npy")
                t["max_abs_diff_vs_untiled"] = float(np.nanmax(np.abs(a - b)))
            except (OSError, ValueError):
                pass
            add(u)
            add(t)
        add(_run("tiled", "tiled", args.sizes, workdir, size=sz["size"]))
    if "catchment" in args.cases:
        _make_catchment_file(workdir / "catchment_input.nc", sizes["catchment"])
        w = _run("catchment", "whole", args.sizes, workdir)
        add(w)
        for method in ("tiled", "tiled_file"):
            t = _run("catchment", method, args.sizes, workdir)
            try:
                import numpy as np

                ga = np.load(workdir / "catchment_grads_whole.npy")
                gb = np.load(workdir / f"catchment_grads_{method}.npy")
                t["grad_max_rel_diff"] = float(np.abs(ga - gb).max() / max(np.abs(ga).max(), 1e-30))
            except (OSError, ValueError):
                pass
            t["method"] = "tiled"
            add(t)
    total = time.perf_counter() - t_start

    cols = COLS
    rows = [_row(r) for r in results]
    widths = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c) for i, c in enumerate(cols)]
    print("\n| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |")
    print(f"\ntotal benchmark time: {total:.0f} s ({args.sizes} sizes)", flush=True)
    if tmp is not None:
        tmp.cleanup()
    return 0


COLS = ["case", "method", "budget MiB", "kept MiB", "alloc MiB", "RSS MiB", "base RSS", "step s", "notes"]


def _row(r: dict) -> list[str]:
    notes = []
    for k in (
        "arm", "recompute_ratio", "time_ratio", "none_step_s", "grid", "months", "input", "tile", "batch_tile", "mpix_per_s",
        "max_abs_diff_vs_untiled", "grad_max_rel_diff",
    ):  # fmt: skip
        if k in r:
            notes.append(f"{k}={r[k]}")
    if "error" in r:
        notes.append("ERROR " + r["error"][-80:])
    return [
        r["case"], r["method"], _fmt_bytes(r.get("budget_bytes")), _fmt_bytes(r.get("peak_saved_bytes")),
        str(r.get("peak_alloc_mb") or "-"), str(r.get("peak_rss_mb") or "-"), str(r.get("base_rss_mb", "-")),
        str(r.get("step_s", "-")), " ".join(notes),
    ]  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
