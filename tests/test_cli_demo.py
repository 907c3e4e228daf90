"""``hydroml demo`` end to end, reduced (1 epoch, seq_len 60, hidden 8); the default run is timed in BENCHMARKS.md."""

from __future__ import annotations

import pandas as pd
import xarray as xr

from hydroml.cli import main


def test_demo_writes_predictions_metrics_and_hydrograph(tmp_path, capsys, demo_cache):
    out = tmp_path / "demo"
    args = ["--epochs", "1", "--seq-len", "60", "--hidden", "8", "--threads", "1"]
    assert main(["demo", "--out", str(out), *args]) == 0
    printed = capsys.readouterr().out
    for name in ("predictions.nc", "metrics.csv", "hydrograph.png"):
        assert (out / name).is_file(), name
        assert str(out / name) in printed, f"the demo should say where {name} is"
    assert not list(out.glob(".*")), "temporary files left behind"

    with xr.open_dataset(out / "predictions.nc") as pred:
        assert pred["q_mm"].dims == ("basin", "time") and pred.sizes["basin"] == 5
        assert (
            str(pred.time.values[0])[:10] == "2012-01-01" and str(pred.time.values[-1])[:10] == "2015-12-31"
        )
        assert pred.attrs["Conventions"] == "CF-1.8" and pred["q_mm"].attrs["units"] == "mm/day"
        assert pred["q_mm"].notnull().all()

    table = pd.read_csv(out / "metrics.csv", index_col="basin")
    assert list(table.index) == ["demo_01", "demo_02", "demo_03", "demo_04", "demo_05", "median"]
    assert list(table.columns) == ["nse", "kge", "pbias", "rmse", "nse_climatology", "nse_skill_climatology"]
    assert table["nse"].notna().all()
    assert (out / "hydrograph.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = list((out / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "model.safetensors").is_file()

    # the run directory is self-describing: `hydroml forecast RUN_DIR --data CATALOG_NAME` needs nothing else
    pred_nc = tmp_path / "pred.nc"
    cmd = ["forecast", str(runs[0]), "--data", "demo:basins", "--start", "2015-01-01", "--end", "2015-12-31"]
    assert main([*cmd, "--out", str(pred_nc), "--mode", "stateful"]) == 0
    with xr.open_dataset(pred_nc) as pred:
        assert pred.sizes == {"basin": 5, "time": 365} and pred.attrs["model_id"] == runs[0].name
    assert main([*cmd, "--out", str(pred_nc), "--start", "1990-01-01"]) == 1
    assert "error:" in capsys.readouterr().err

    # `hydroml evaluate RUN_DIR` scores the run's test period with the demo's names and reference period
    assert main(["evaluate", str(runs[0]), "--no-figures", "-q"]) == 0
    capsys.readouterr()
    scored = pd.read_csv(runs[0] / "evaluation" / "metrics_q_mm.csv", index_col="basin")
    for col in ("nse", "nse_climatology", "nse_skill_climatology"):
        assert (scored[col] - table.loc[scored.index, col]).abs().max() < 1e-3, col


def test_demo_help_explains_itself(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = capsys.readouterr().out
    assert "--epochs" in text and "--out" in text and "demo" in text
