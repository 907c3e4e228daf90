"""hydroml.zoo: every shipped model reloads, carries a complete card, and reproduces its recorded test score."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import hydroml.zoo as zoo
from hydroml.cli import main
from hydroml.exceptions import ConfigError
from hydroml.zoo.registry import WEIGHTS_DIR

EXPECTED = ["ealstm.demo_discharge", "lstm.demo_discharge", "unet.demo_evaporation"]


def test_list_names_the_shipped_models():
    assert set(EXPECTED) <= set(zoo.list())  # other modules ship models too (closure, cnn_lstm...)
    assert zoo.list() == sorted(zoo.list())
    assert zoo.list("lstm.*") == ["lstm.demo_discharge"]


@pytest.mark.parametrize("name", EXPECTED)
def test_card_is_complete_and_weights_are_small(name):
    card = zoo.get_card(name)
    assert card.name == name and card.architecture == name.split(".")[0]
    assert card.inputs and all(card.inputs.values()), "inputs need units"
    assert card.targets and all(card.targets.values())
    assert set(card.inputs) | set(card.static_inputs) | set(card.targets) <= set(
        card.normalisation["variables"]
    )
    assert (
        card.training_data
        and card.licence
        and card.trained_by.startswith("OMP_NUM_THREADS=1 python scripts/")
    )
    assert len(card.train_period) == len(card.test_period) == 2
    # a zoo model should beat the mean flow; ealstm.demo_discharge is undertrained (2 epochs) and says so
    assert card.test_scores["nse_median"] > 0 and (
        "Undertrained" in card.description or card.test_scores["nse_median"] > 0.5
    )
    path = WEIGHTS_DIR / f"{name}.safetensors"
    assert path.stat().st_size < 1_000_000
    assert hashlib.sha256(path.read_bytes()).hexdigest() == card.weights_sha256
    assert card.config_hash.startswith("sha256:")
    # the JSON round trip is strict: unknown keys are errors that list the valid ones
    raw = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
    with pytest.raises(ConfigError, match="unknown key.*valid keys"):
        zoo.ModelCard.from_dict({**raw, "colour": "blue"})


@pytest.mark.parametrize("name", EXPECTED)
def test_reload_reproduces_recorded_test_scores(name, demo_cache):
    model = zoo.load(name)
    assert not model.training
    card = model.card
    scores = zoo.reproduce_scores(model)
    for key in ("nse_median", "kge_median"):
        assert scores[key] == pytest.approx(card.test_scores[key], abs=1e-4), key
    if "nse" in card.test_scores:  # basin models: per basin
        for basin, value in card.test_scores["nse"].items():
            assert scores["nse"][basin] == pytest.approx(value, abs=1e-4), basin


def test_unknown_name_lists_available():
    with pytest.raises(
        ConfigError, match=r"no pretrained model 'lstm.no_such_tag'.*available: .*lstm.demo_discharge"
    ):
        zoo.load("lstm.no_such_tag")


def test_cli_zoo_list_show_and_forecast(tmp_path, capsys, demo_cache):
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in EXPECTED) and out.splitlines()[0].split()[:2] == ["NAME", "TARGET"]
    assert main(["zoo", "show", "lstm.demo_discharge"]) == 0
    out = capsys.readouterr().out
    assert "inputs" in out and "pr [mm/day]" in out and "licence" in out
    assert main(["zoo", "show", "nope.nothing"]) == 1
    assert "no pretrained model 'nope.nothing'" in capsys.readouterr().err

    # forecast from a zoo name with a file of inputs only (no discharge in it)
    from hydroml.data.demo import load_demo

    ds = load_demo("basins")
    card = zoo.get_card("lstm.demo_discharge")
    inputs = ds[list(card.inputs) + list(card.static_inputs)].sel(time=slice("2013-01-01", "2014-12-31"))
    src = tmp_path / "forcing.nc"
    inputs.to_netcdf(src)
    out_nc = tmp_path / "pred.nc"
    rc = main(
        [
            "forecast",
            "lstm.demo_discharge",
            "--data",
            str(src),
            "--start",
            "2014-01-01",
            "--end",
            "2014-12-31",
            "--out",
            str(out_nc),
            "--mode",
            "stateful",
        ]
    )
    assert rc == 0 and out_nc.is_file()
    import xarray as xr

    with xr.open_dataset(out_nc) as pred:
        assert pred.attrs["model_id"] == "lstm.demo_discharge" and pred.attrs["forecast_mode"] == "stateful"
        assert pred.attrs["config_hash"] == card.config_hash
        assert pred["q_mm"].sizes == {"basin": 5, "time": 365} and np.isfinite(pred["q_mm"]).all()
