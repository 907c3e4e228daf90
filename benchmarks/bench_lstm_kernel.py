"""The fused CPU LSTM kernel against ``nn.LSTM`` (oneDNN): one forward + backward, and kept activations.

One process, both arms alternated ``--rounds`` times (median reported), the discharge models' training shape by
default: batch 256, 365 steps, 5 dynamic + 20 static inputs, hidden 128, loss on the last step. Kept activations
are counted with ``hydroml.memory.profile`` (saved tensors, deduplicated by storage) and reported per sequence,
step and hidden unit.

    OMP_NUM_THREADS=1 python benchmarks/bench_lstm_kernel.py [--json]

With ``--json``: one object per line with ``impl`` (``fused`` or ``native``), ``threads``, ``step_s`` (median
forward + backward seconds), ``steps_s`` (all rounds) and ``saved_floats_per_step`` (per B*H).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hydroml.memory import profile  # noqa: E402
from hydroml.models import create  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--seq-len", type=int, default=365)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    B, T, H = args.batch, args.seq_len, args.hidden
    batch = {"x_dynamic": torch.randn(B, T, 5), "x_static": torch.randn(B, 20)}
    y = torch.randn(B, 1, 1)
    models = {
        k: create("lstm", n_dynamic=5, n_static=20, hidden_size=H, kernel=k) for k in ("fused", "native")
    }
    models["native"].load_state_dict(models["fused"].state_dict())

    def step(m) -> float:
        m.zero_grad()
        t = time.perf_counter()
        ((m(batch)["y_hat"][:, -1:] - y) ** 2).mean().backward()
        return time.perf_counter() - t

    times: dict[str, list[float]] = {k: [] for k in models}
    for m in models.values():
        step(m)  # warm-up (and the kernel's build on first use)
    for _ in range(args.rounds):
        for k, m in models.items():
            times[k].append(step(m))
    rows = []
    for k, m in models.items():
        small = {"x_dynamic": batch["x_dynamic"][:32, :100], "x_static": batch["x_static"][:32]}
        prof = profile(m, small, chunk=100, step=False)
        rows.append(
            {
                "impl": k,
                "threads": torch.get_num_threads(),
                "step_s": round(statistics.median(times[k]), 4),
                "steps_s": [round(t, 4) for t in times[k]],
                "saved_floats_per_step": round(prof.total_saved_bytes / (100 * 32 * H * 4), 2),
                "batch": B,
                "seq_len": T,
                "hidden": H,
            }
        )
    if args.json:
        for r in rows:
            print(json.dumps(r))
    print(f"batch {B}, seq_len {T}, hidden {H}, {torch.get_num_threads()} thread(s), median of {args.rounds}")
    print(f"{'impl':<8} {'fwd+bwd s':>10} {'kept floats/(B*H*step)':>24}")
    for r in rows:
        print(f"{r['impl']:<8} {r['step_s']:>10.3f} {r['saved_floats_per_step']:>24.2f}")
    print(
        f"fused vs native: {rows[1]['step_s'] / rows[0]['step_s']:.2f}x faster, "
        f"{rows[1]['saved_floats_per_step'] / rows[0]['saved_floats_per_step']:.2f}x less kept"
    )


if __name__ == "__main__":
    main()
