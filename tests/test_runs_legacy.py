"""Run directories written with the earlier normalisation JSON layout still load.

``tests/data/normalisation_v0.json`` is three variables of a ``normalisation.json`` that ``hydroml train`` wrote
on 2026-11-30 before the datasets' :class:`~hydroml.datasets.Normaliser` replaced the interim one (the
``{"kind": "mean_std"}`` layout, version 0).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from hydroml.datasets import Normaliser
from hydroml.datasets.normalise import FORMAT_VERSION
from hydroml.exceptions import ConfigError
from hydroml.training import load_run, train
from tests.test_training import TINY

V0 = Path(__file__).parent / "data" / "normalisation_v0.json"


def test_reads_the_version_0_layout():
    norm = Normaliser.from_json(V0)
    raw = json.loads(V0.read_text())
    assert list(norm.stats) == ["pr", "aridity", "q_mm"]
    for name, st in raw["variables"].items():
        assert norm.stats[name] == {
            "mean": st["mean"],
            "std": st["std"],
            "log": False,
            "eps": 1.0,
            "count": 0,
        }
    x = np.array([0.0, 3.656313808144338, 12.5])
    np.testing.assert_allclose(norm.transform("pr", x), (x - 3.656313808144338) / 8.881601889113009)
    # written back in the current layout, with its version
    out = norm.to_dict()
    assert out["format"] == "hydroml.normaliser" and out["version"] == FORMAT_VERSION == 1
    assert Normaliser.from_dict(out) == norm


def test_version_0_log_transform_is_log1p(tmp_path):
    """The interim layout's log transform was log1p(max(x, 0)): read as log(x + 1), the same for x >= 0."""
    p = tmp_path / "normalisation.json"
    stats = {"q_mm": {"mean": 0.8, "std": 0.5}, "pr": {"mean": 3.0, "std": 8.0}}
    p.write_text(json.dumps({"kind": "mean_std", "variables": stats, "log_transform": ["q_mm"]}))
    norm = Normaliser.from_json(p)
    assert norm.stats["q_mm"]["log"] and norm.stats["q_mm"]["eps"] == 1.0 and not norm.stats["pr"]["log"]
    q = np.array([0.0, 0.3, 2.0, 40.0])
    np.testing.assert_allclose(norm.transform("q_mm", q), (np.log1p(q) - 0.8) / 0.5, rtol=1e-12)
    np.testing.assert_allclose(norm.inverse("q_mm", norm.transform("q_mm", q)), q, atol=1e-12)


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ({"variables": {}}, r"expected 'format' == 'hydroml.normaliser'.*found keys \['variables'\]"),
        ({"kind": "min_max", "variables": {}}, r"found keys \['kind', 'variables'\] with kind 'min_max'"),
        (
            {"format": "hydroml.normaliser", "version": 2, "variables": {}},
            r"layout version 2: this hydroml reads versions 0 to 1",
        ),
        (
            {"kind": "mean_std", "variables": {"pr": {"mean": 1.0}}, "log_transform": []},
            r"variables.pr: expected keys \['mean', 'std'\].*found \['mean'\]",
        ),
        (
            {"kind": "mean_std", "variables": {"pr": {"mean": 1.0, "std": 1.0}}, "log_transform": ["q"]},
            r"log_transform names \['q'\] that have no statistics",
        ),
    ],
)
def test_unreadable_layouts_name_the_file_expected_and_found(tmp_path, obj, match):
    p = tmp_path / "normalisation.json"
    p.write_text(json.dumps(obj))
    with pytest.raises(ConfigError, match=match) as err:
        Normaliser.from_json(p)
    assert str(err.value).startswith(f"{p}: ")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"normalisation.json: normalisation statistics not found"):
        Normaliser.from_json(tmp_path / "normalisation.json")


def test_load_run_of_a_run_directory_with_the_version_0_layout(demo_cache, tmp_path):
    """A run directory whose normalisation.json is in the earlier layout loads, with the same statistics as the
    same run in the current layout (the log offset of the old layout is 1, as the current default)."""
    cfg = copy.deepcopy(TINY)
    cfg["train"]["epochs"] = 1
    cfg["data"]["validation_period"] = None
    run = train(cfg, runs_dir=tmp_path / "runs")
    old = tmp_path / "old_run"
    shutil.copytree(run, old)
    current = json.loads((run / "normalisation.json").read_text())["variables"]
    assert all(math.isclose(st["eps"], 1.0) for st in current.values())
    (old / "normalisation.json").write_text(
        json.dumps(
            {
                "kind": "mean_std",
                "variables": {k: {"mean": st["mean"], "std": st["std"]} for k, st in current.items()},
                "log_transform": [k for k, st in current.items() if st["log"]],
            }
        )
    )
    model_a, cfg_a, norm_a = load_run(run)
    model_b, cfg_b, norm_b = load_run(old)
    assert cfg_a == cfg_b
    for name, st in norm_a.stats.items():
        assert {k: norm_b.stats[name][k] for k in ("mean", "std", "log", "eps")} == {
            k: st[k] for k in ("mean", "std", "log", "eps")
        }
