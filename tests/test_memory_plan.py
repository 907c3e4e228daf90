"""The checkpointing planner: optimality against brute force, budgets, sqrt comparison, formats."""

from __future__ import annotations

import itertools

import pytest

from hydroml.exceptions import ConfigError
from hydroml.memory import Segment, StageCost, Store, evaluate, parse_bytes, plan, sqrt_schedule, store_all


def test_parse_bytes():
    assert parse_bytes("1.5GB") == 1_500_000_000
    assert parse_bytes("1.5 gb") == 1_500_000_000
    assert parse_bytes("512MiB") == 512 * 1024**2
    assert parse_bytes("2 GiB") == 2 * 1024**3
    assert parse_bytes("100") == 100
    assert parse_bytes(2e9) == 2_000_000_000
    assert parse_bytes("3k") == 3000
    for bad in ["1.5 GBs", "lots", "-1GB", "", True]:
        with pytest.raises(ConfigError):
            parse_bytes(bad)


def _chain(n, seed=0):
    import random

    rnd = random.Random(seed)
    return [
        StageCost(f"s{i}", saved_bytes=rnd.randint(2, 9) * 100, input_bytes=rnd.randint(1, 4) * 100,
                  forward_s=rnd.uniform(0.5, 2.0))
        for i in range(n)
    ]  # fmt: skip


def _all_schedules(i, j):
    """Every schedule of stages [i, j) (nested segments of any depth)."""
    if i == j:
        yield ()
        return
    for rest in _all_schedules(i + 1, j):
        yield (Store(i), *rest)
    for k in range(i + 1, j):
        for inner in _all_schedules(i, k):
            for rest in _all_schedules(k, j):
                yield (Segment(i, k, inner), *rest)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plan_is_optimal_against_brute_force(seed):
    costs = _chain(5, seed)
    schedules = list(_all_schedules(0, 5))
    evaluated = [(evaluate(s, costs), s) for s in schedules]
    peaks = sorted({p for (p, _), _ in evaluated})
    for budget in peaks[:: max(1, len(peaks) // 6)] + [peaks[-1]]:
        best = min(r for (p, r), _ in evaluated if p <= budget)
        # costs are multiples of 100 bytes: with budget/slots dividing 100 there is no rounding
        sched = plan(costs, budget, slots=budget // 25)
        assert sched.predicted_peak_bytes <= budget
        assert sched.recompute_s == pytest.approx(best, abs=1e-9)


def test_store_all_when_it_fits_and_error_below_minimum():
    costs = _chain(6)
    total = store_all(costs).predicted_peak_bytes
    sched = plan(costs, total)
    assert all(isinstance(it, Store) for it in sched.items) and sched.recompute_s == 0
    with pytest.raises(ConfigError, match="smallest that fits"):
        plan(costs, 300)


def test_nested_schedule_below_single_level_and_monotone_tradeoff():
    costs = [StageCost(f"t{i}", 1000, 100, 1.0) for i in range(40)]  # homogeneous (revolve's setting)
    single = min(sqrt_schedule(costs, k).predicted_peak_bytes for k in range(1, 41))
    sched = plan(costs, int(single * 0.8))
    assert sched.predicted_peak_bytes <= single * 0.8
    assert any(
        isinstance(it, Segment) and any(isinstance(i, Segment) for i in it.inner) for it in sched.items
    )
    prev = -1.0
    for frac in (1.0, 0.6, 0.4, 0.25, 0.15):
        s = plan(costs, int(store_all(costs).predicted_peak_bytes * frac))
        assert s.recompute_s >= prev - 1e-9
        prev = s.recompute_s


def test_less_recomputation_than_sqrt_at_equal_memory():
    for costs in (_chain(30, 3), [StageCost(f"t{i}", 1000, 100, 1.0) for i in range(73)]):
        sq = sqrt_schedule(costs)
        sched = plan(costs, sq.predicted_peak_bytes)
        assert sched.predicted_peak_bytes <= sq.predicted_peak_bytes
        assert sched.recompute_s < sq.recompute_s


def test_dict_costs_and_time_items():
    # the format of hydroml.models.lstm's stages(): state_bytes / activation_bytes per time step
    costs = [{"name": f"t{i}", "state_bytes": 10, "activation_bytes": 100} for i in range(12)]
    sched = plan(costs, 400)
    items = sched.to_time_items()

    def steps(it):
        if isinstance(it, dict):
            return it["store"]
        if isinstance(it, list):
            return sum(steps(i) for i in it)
        return it

    assert sum(steps(i) for i in items) == 12
    assert "predicted peak" in sched.summary()
    assert sched.to_dict()["predicted_peak_bytes"] == sched.predicted_peak_bytes
    with pytest.raises(ConfigError, match="saved_bytes"):
        plan([{"name": "x"}], 10)


def test_schedule_validation():
    from hydroml.memory.plan import Schedule

    costs = _chain(3)
    with pytest.raises(ConfigError):
        Schedule.from_items([Store(0), Store(2)], costs)
    ok = Schedule.from_items([Segment(0, 2, (Store(0), Store(1))), Store(2)], costs)
    assert ok.describe() == "C0-1 S2"
    assert list(itertools.chain(ok.items))


def test_long_chains_are_grouped_and_expanded():
    costs = [StageCost(f"t{i}", 700, 20, 1.0) for i in range(365)]  # one stage per day of a 365-day window
    sched = plan(costs, 20_000, max_stages=40)
    assert sched.n_stages == 365 and sched.predicted_peak_bytes <= 20_000
    assert 0 < sched.recompute_ratio < 2.5
