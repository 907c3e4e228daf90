"""A roofline for the LSTM training step: the machine's fp32 limits and how close each implementation gets.

Measured in one process, 1 and 2 threads (``--threads``):

``peak``
    The core's fp32 FMA rate: a register-only loop of independent FMA chains (``benchmarks/_fma_probe.cpp``,
    compiled on first use), for each vector ISA the CPU has (``avx512``: 16 lanes, ``avx2``: 8 lanes). With
    ``t`` threads, ``t`` copies run at once.
``gemm``
    ``torch.matmul`` (ATen's BLAS: MKL in the PyPI wheel) at the LSTM step's three shapes and at 2048^3.
``bandwidth``
    Memory bandwidth: ``torch.Tensor.copy_`` of a 1 GiB float32 array (bytes read + written per second).
``lstm_step``
    One training step (forward + backward, loss on the last step) of the discharge LSTM (batch 256, 365 steps,
    5 dynamic + 20 static inputs, hidden 128; median of ``--rounds`` after a warm-up): hydroml's fused kernel on
    each of its GEMM paths (``fused:avx512``, ``fused:avx2``, ``fused:blas``), ``nn.LSTM`` (oneDNN, hydroml's
    ``kernel="native"``) and neuralhydrology 1.13's ``CudaLSTM`` (``nn.LSTM`` on dynamic + static inputs).

FLOPs of one step are counted analytically (2 per multiply-add) for hydroml's formulation, which every
implementation computes (neuralhydrology's concatenated statics make its input product ``(F + S) / F`` larger; it
is not credited with that extra work)::

    forward   2 B T 4H (F + H)    [x_t | h_{t-1}] W^T
    backward  2 B T 4H (F + H)    dW += dg^T [x_t | h_{t-1}]
              2 B T 4H H          dh = dg W_hh
              2 B T 4H F          dx = dg W_ih

The element-wise gate work (about 40 flops per hidden unit and step, on 4 activations) is not counted. The roof
is the FMA peak of the widest ISA hydroml's kernel is built for (compute-bound: the step's operands stay in L2;
by default every ISA of the CPU, AVX2 alone under ``HYDROML_LSTM_MARCH=x86-64-v3``); ``of_peak`` is the
achieved FLOP rate over that roof, ``of_matmul`` over ``torch.matmul``'s best rate at the step's shapes.

    python benchmarks/bench_roofline.py [--threads 1 2] [--json]

An AVX2-only CPU, emulated on an AVX-512 one (hydroml's kernel built for x86-64-v3, ATen's kernels and oneDNN,
hence ``nn.LSTM`` and neuralhydrology, capped at AVX2; MKL takes its AVX2 code on AMD CPUs anyway)::

    HYDROML_LSTM_MARCH=x86-64-v3 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 \
        python benchmarks/bench_roofline.py --json

With ``--json`` one object per line: ``what`` (peak, gemm, bandwidth, lstm_step), ``impl``, ``threads``,
``gflops`` (or ``gbps``), ``seconds``, ``of_peak``, ``of_matmul``, ``cpu``, ``isa``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._machine import cpu_isa, cpu_model  # noqa: E402

B, T, H, F, S = 256, 365, 128, 5, 20


def step_flops(b: int = B, t: int = T, h: int = H, f: int = F) -> float:
    """FLOPs of one LSTM training step (the four products above)."""
    return 2.0 * b * t * 4 * h * ((f + h) + (f + h) + h + f)


def _probe():
    from torch.utils.cpp_extension import load

    build = Path(torch.utils.cpp_extension._get_build_directory("hydroml_fma_probe", False))
    return load(
        name="hydroml_fma_probe",
        sources=[str(Path(__file__).with_name("_fma_probe.cpp"))],
        extra_cflags=["-O2", "-march=native"],
        build_directory=str(build),
        verbose=False,
    )


def peak_rows(threads: int, cpu: str, isa: str) -> list[dict]:
    probe = _probe()
    rows = []
    for name in ("avx512", "avx2"):
        if name == "avx512" and "avx512f" not in isa:
            continue
        iters = 20_000_000 if name == "avx512" else 40_000_000
        probe.peak(name, iters // 10, threads)  # warm-up (clock ramp)
        best = min(probe.peak(name, iters, threads) for _ in range(3))
        lanes = 16 if name == "avx512" else 8
        flops = 2.0 * lanes * probe.chains() * iters * threads
        rows.append(_row("peak", name, threads, cpu, isa, gflops=flops / best / 1e9, seconds=best))
    return rows


def _time(fn, rounds: int) -> float:
    fn()
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def gemm_rows(threads: int, cpu: str, isa: str) -> list[dict]:
    shapes = {
        "lstm gates [256,133]x[133,512]": (B, F + H, 4 * H),
        "lstm dh [256,512]x[512,128]": (B, 4 * H, H),
        "lstm dW [512,256]x[256,133]": (4 * H, B, F + H),
        "large 2048^3": (2048, 2048, 2048),
    }
    rows = []
    for name, (m, k, n) in shapes.items():
        a, b_, c = torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)
        reps = max(3, int(3e9 / (2 * m * k * n)))

        def run(a=a, b_=b_, c=c, reps=reps):
            for _ in range(reps):
                torch.matmul(a, b_, out=c)

        s = _time(run, 3) / reps
        rows.append(
            _row("gemm", f"torch.matmul {name}", threads, cpu, isa, gflops=2 * m * k * n / s / 1e9, seconds=s)
        )
    return rows


def bandwidth_row(threads: int, cpu: str, isa: str) -> dict:
    src = torch.ones(1 << 28)  # 1 GiB
    dst = torch.empty_like(src)
    s = _time(lambda: dst.copy_(src), 3)
    return _row("bandwidth", "copy 1 GiB", threads, cpu, isa, gbps=2 * src.numel() * 4 / s / 1e9, seconds=s)


def _nh_model():
    from neuralhydrology.modelzoo.cudalstm import CudaLSTM
    from neuralhydrology.utils.config import Config

    dyn, st = [f"d{i}" for i in range(F)], [f"s{i}" for i in range(S)]
    cfg = Config(
        {
            "model": "cudalstm",
            "head": "regression",
            "output_activation": "linear",
            "hidden_size": H,
            "initial_forget_bias": 3,
            "output_dropout": 0.0,
            "dynamic_inputs": dyn,
            "static_attributes": st,
            "target_variables": ["q"],
            "predict_last_n": 1,
            "seq_length": T,
        }
    )
    return CudaLSTM(cfg), dyn


def lstm_rows(threads: int, cpu: str, isa: str, rounds: int, peer: bool) -> list[dict]:
    from hydroml.models import _fused_lstm, create

    torch.manual_seed(0)
    x = torch.randn(B, T, F)
    xs = torch.randn(B, S)
    y = torch.randn(B, 1, 1)
    batch = {"x_dynamic": x, "x_static": xs}
    arms = {}
    fused = create("lstm", n_dynamic=F, n_static=S, hidden_size=H, kernel="fused")
    native = create("lstm", n_dynamic=F, n_static=S, hidden_size=H, kernel="native")
    native.load_state_dict(fused.state_dict())
    best = _fused_lstm.set_isa("auto")
    paths = [
        p
        for p in ("avx512", "avx2", "blas")
        if {"avx512": 2, "avx2": 1, "blas": 0}[p] <= {"avx512": 2, "avx2": 1, "blas": 0}[best]
    ]
    for p in paths:
        arms[f"hydroml fused:{p}"] = (fused, batch, p)
    arms["nn.LSTM (oneDNN)"] = (native, batch, None)
    if peer:
        nh, dyn = _nh_model()
        nh_batch = {"x_d": {d: x[:, :, i : i + 1] for i, d in enumerate(dyn)}, "x_s": xs}
        arms["neuralhydrology CudaLSTM"] = (nh, nh_batch, None)

    def step(model, b, path):
        if path is not None:
            _fused_lstm.set_isa(path)
        model.zero_grad()
        ((model(b)["y_hat"][:, -1:] - y) ** 2).mean().backward()

    times: dict[str, list[float]] = {k: [] for k in arms}
    for arm in arms.values():
        step(*arm)  # warm-up (and the kernel's build on first use)
    for _ in range(rounds):  # arms alternated: the same machine state for each
        for k, arm in arms.items():
            t0 = time.perf_counter()
            step(*arm)
            times[k].append(time.perf_counter() - t0)
    _fused_lstm.set_isa("auto")
    fl = step_flops()
    return [
        _row(
            "lstm_step",
            k,
            threads,
            cpu,
            isa,
            gflops=fl / statistics.median(v) / 1e9,
            seconds=statistics.median(v),
        )
        for k, v in times.items()
    ]


def _row(what: str, impl: str, threads: int, cpu: str, isa: str, **vals) -> dict:
    return {
        "what": what,
        "impl": impl,
        "threads": threads,
        **{k: round(v, 4) for k, v in vals.items()},
        "cpu": cpu,
        "isa": isa,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--skip-peer", action="store_true", help="without neuralhydrology")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_flush_denormal(True)
    cpu, isa = cpu_model(), cpu_isa()
    from hydroml.models import _fused_lstm

    # The roof: the FMA peak of the widest ISA hydroml's kernel was built for (all of the CPU's by default;
    # AVX2 under HYDROML_LSTM_MARCH=x86-64-v3, which emulates an AVX2-only CPU).
    roof_isa = _fused_lstm.set_isa("auto") if _fused_lstm.available() else "avx512"
    print(f"CPU: {cpu}; ISA: {isa}; torch {torch.__version__}", flush=True)
    print(
        f"LSTM step: batch {B}, {T} steps, {F} dynamic + {S} static inputs, hidden {H}: {step_flops() / 1e9:.1f} GFLOP"
    )
    print(
        f"{'what':<10} {'impl':<44} {'thr':>3} {'GFLOP/s':>9} {'GB/s':>7} {'s':>9} {'of peak':>8} {'of matmul':>9}"
    )
    for threads in args.threads:
        torch.set_num_threads(threads)
        rows = (
            peak_rows(threads, cpu, isa) + gemm_rows(threads, cpu, isa) + [bandwidth_row(threads, cpu, isa)]
        )
        peaks = {r["impl"]: r["gflops"] for r in rows if r["what"] == "peak"}
        roof = peaks.get(roof_isa, max(peaks.values()))
        matmul = max(r["gflops"] for r in rows if r["what"] == "gemm" and "lstm" in r["impl"])
        rows += lstm_rows(threads, cpu, isa, args.rounds, not args.skip_peer)
        for r in rows:
            if "gflops" in r:
                r["of_peak"] = round(r["gflops"] / roof, 3)
                r["of_matmul"] = round(r["gflops"] / matmul, 3)
            if args.json:
                print(json.dumps(r), flush=True)
            print(
                f"{r['what']:<10} {r['impl']:<44} {threads:>3} {r.get('gflops', float('nan')):>9.1f} "
                f"{r.get('gbps', float('nan')):>7.1f} {r['seconds']:>9.4f} {r.get('of_peak', float('nan')):>8.2f} "
                f"{r.get('of_matmul', float('nan')):>9.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
