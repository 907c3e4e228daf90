"""benchmarks/skill.py: every scored row carries NSE, KGE and KGE's components, consistent with each other."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import xarray as xr

_SKILL = Path(__file__).resolve().parents[1] / "benchmarks" / "skill.py"


def _skill_module():
    spec = importlib.util.spec_from_file_location("hydroml_benchmark_skill", _SKILL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_scores_carry_kge_components():
    scores = _skill_module()._scores
    rng = np.random.default_rng(0)
    obs = xr.DataArray(rng.gamma(2.0, 1.0, (2, 400)), dims=("basin", "time"), coords={"basin": ["a", "b"]})
    sim = 0.8 * obs + 0.3 + 0.2 * rng.standard_normal(obs.shape)
    sim[0, :10] = np.nan  # missing pairs are left out
    sc = scores(obs, sim)
    assert list(sc.columns) == ["nse", "kge", "r", "alpha", "beta"]
    assert list(sc.index) == ["a", "b"]
    kge = 1 - np.sqrt((sc.r - 1) ** 2 + (sc.alpha - 1) ** 2 + (sc.beta - 1) ** 2)
    np.testing.assert_allclose(sc.kge, kge, rtol=1e-10)
    o, s = obs.values[1], sim.values[1]
    np.testing.assert_allclose(sc.loc["b", "alpha"], s.std() / o.std(), rtol=1e-10)
    np.testing.assert_allclose(sc.loc["b", "beta"], s.mean() / o.mean(), rtol=1e-10)
