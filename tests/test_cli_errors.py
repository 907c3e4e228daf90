"""Every user error of the command line is one line and an exit code (2: usage, 1: reported), never a traceback.

Each case is a real mistake (a wrong date, a device that is not there, an unknown basin, a missing file, a
config that is not YAML...) driven through :func:`hydroml.cli.main` in-process, with the words the message must
contain: the option or file, and what was wrong. Two cases also run as a real process.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hydroml.cli import main
from hydroml.examples import example_path

ZOO = "lstm.demo_discharge"


@pytest.fixture(scope="module")
def files(tmp_path_factory, demo_cache):
    import hydroml.zoo as zoo
    from hydroml.forecast import forecast, write_forecast

    tmp = tmp_path_factory.mktemp("cli_errors")
    pred = forecast(zoo.load(ZOO), "demo:basins", "2014-01-01", "2014-03-31", mode="stateful")
    write_forecast(pred, tmp / "pred.nc")
    (tmp / "list.yaml").write_text("- just\n- a list\n")
    example = example_path("demo_lstm").read_text()
    (tmp / "typo.yaml").write_text(example + "\nepocs: 3\n")
    (tmp / "ok.yaml").write_text(example)
    (tmp / "notyaml.nc").write_text("this is not NetCDF\n")
    return tmp


F = ["forecast", ZOO, "--data", "demo:basins", "--out", "{tmp}/out.nc"]
E = ["evaluate", "{tmp}/pred.nc", "--obs", "demo:basins", "--out", "{tmp}/ev"]

CASES = [
    # (argv, exit code, words the one line must contain)
    (["bogus"], 2, ["invalid choice", "bogus"]),
    (["forecast"], 2, ["required", "--data", "--out"]),
    ([*F, "--start", "2014-13-01"], 1, ["--start", "2014-13-01", "expected a date"]),
    ([*F, "--end", "2014-02-30"], 1, ["--end", "2014-02-30"]),
    ([*F, "--device", "cuda"], 1, ["--device", "cuda", "no CUDA GPU"]),
    ([*F, "--device", "gpu0"], 1, ["--device", "gpu0", "expected a torch device"]),
    ([*F, "--basins", "demo_99"], 1, ["demo_99", "not in the forecast data", "demo_01"]),
    ([*F, "--batch-size", "0"], 1, ["--batch-size", "positive", "0"]),
    ([*F, "--chunk-size", "-5"], 1, ["--chunk-size", "-5"]),
    ([*F, "--batch-size", "many"], 2, ["--batch-size", "invalid int", "many"]),
    ([*F, "--mode", "fast"], 2, ["--mode", "invalid choice", "fast"]),
    ([*F, "--start", "1990-01-01"], 1, ["needs 179 time steps", "the data start on 2000-01-01"]),
    ([*F, "--start", "2015-01-01", "--end", "2014-01-01"], 1, ["before start"]),
    (["forecast", ZOO, "--data", "demo:basins", "--out", "{tmp}/out.txt"], 1, ["--out", ".nc", "out.txt"]),
    (["forecast", ZOO, "--data", "nothere", "--out", "{tmp}/o.nc"], 1, ["--data", "nothere", "catalog"]),
    (["forecast", ZOO, "--data", "demo:nope", "--out", "{tmp}/o.nc"], 1, ["demo", "nope", "basins, grid"]),
    (["forecast", "nope.nothing", "--data", "demo", "--out", "{tmp}/o.nc"], 1, ["nope.nothing"]),
    (["evaluate"], 2, ["required", "PRED.nc"]),
    (["evaluate", "{tmp}/missing.nc", "--out", "{tmp}/ev"], 1, ["PRED.nc", "missing.nc"]),
    (["evaluate", "{tmp}/notyaml.nc", "--out", "{tmp}/ev"], 1, ["PRED.nc", "cannot read", "notyaml.nc"]),
    (["evaluate", "{tmp}/pred.nc", "--obs", "nothere:x", "--out", "{tmp}/ev"], 1, ["--obs", "nothere:x"]),
    (["evaluate", "{tmp}/pred.nc", "--obs", "demo:basins"], 1, ["--out", "required"]),
    ([*E, "--pair", "q_mm"], 1, ["--pair", "OBS_VAR:SIM_VAR", "q_mm"]),
    ([*E, "--pair", "q_obs:q_mm"], 1, ["q_obs", "not found"]),
    ([*E, "--period", "2014-99-01", "2014-12-31"], 1, ["--period", "2014-99-01"]),
    ([*E, "--ref-period", "2001-01-01"], 2, ["--ref-period", "expected 2 arguments"]),
    ([*E, "--min-pairs", "0"], 1, ["--min-pairs", "0"]),
    ([*E, "--reference", "median"], 2, ["--reference", "invalid choice", "median"]),
    ([*E, "--metrics", "nash"], 1, ["unknown metric", "nash"]),
    (["train"], 1, ["CONFIG", "--example"]),
    (["train", "{tmp}/nothere.yaml"], 1, ["CONFIG", "nothere.yaml"]),
    (["train", "--example", "nope"], 1, ["nope", "demo_lstm"]),
    (["train", "{tmp}/typo.yaml", "--example", "demo_lstm"], 1, ["either CONFIG or --example"]),
    (["train", "{tmp}/typo.yaml", "--runs-dir", "{tmp}/runs"], 1, ["epocs"]),
    (["train", "--resume", "{tmp}/no_run"], 1, ["--resume", "no_run", "config.yaml"]),
    (["memory"], 2, ["usage", "memory plan CONFIG"]),
    (["memory", "plan", "{tmp}/missing.yaml"], 1, ["missing.yaml", "not found"]),
    (["memory", "plan", "{tmp}/list.yaml"], 1, ["list.yaml", "mapping", "list"]),
    (["memory", "plan", "{tmp}/ok.yaml", "--budget", "5XB"], 1, ["--budget", "5XB"]),
    (["memory", "plan", "{tmp}/typo.yaml", "--budget", "5MB"], 1, ["typo.yaml", "epocs", "valid keys"]),
    (["zoo"], 2, ["required", "ACTION"]),
    (["zoo", "show", "nope.nothing"], 1, ["nope.nothing"]),
    (["catalog", "show", "nope"], 1, ["nope", "demo"]),
    (["demo", "--epochs", "two"], 2, ["--epochs", "invalid int", "two"]),
    (["diagnose", "{tmp}/no_run"], 1, ["no_run", "not a hydroml run directory"]),
    (["export", "{tmp}/no_run", "--format", "tflite"], 2, ["--format", "invalid choice", "tflite"]),
]


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse usage errors exit through SystemExit
        return int(exc.code)


@pytest.mark.parametrize(("argv", "code", "words"), CASES, ids=[" ".join(c[0][:3]) for c in CASES])
def test_bad_invocation_is_one_line_and_an_exit_code(argv, code, words, files, capsys):
    argv = [a.format(tmp=files) for a in argv]
    assert _run([*argv, "-q"] if argv and argv[0] not in ("bogus",) else argv) == code
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_there_are_more_than_thirty_cases():
    assert len(CASES) >= 30


def test_verbosity_options_work_after_the_subcommand(capsys, files):
    assert main(["zoo", "list", "-q"]) == 0
    assert main(["zoo", "-v", "list"]) == 0
    assert main(["-q", "zoo", "list"]) == 0
    assert "NAME" in capsys.readouterr().out
    out = str(files / "v.nc")
    assert main(["forecast", ZOO, "--data", "demo:basins", "--out", out, "--start", "2014-12-01", "-v"]) == 0
    assert "INFO hydroml" in capsys.readouterr().err
    assert main(["forecast", ZOO, "--data", "demo:basins", "--out", out, "--start", "2014-12-01", "-q"]) == 0
    assert "INFO" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["forecast", ZOO, "--data", "demo", "--out", "o.nc", "--start", "2014-13-01"], 1),
        (["zoo", "nope"], 2),
    ],
)
def test_a_real_process_prints_one_line(argv, code, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HYDROML_PROGRESS"}
    res = subprocess.run(
        [sys.executable, "-m", "hydroml", *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == code
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr, res.stderr


def test_written_files_get_the_umask_mode(tmp_path):
    from hydroml._io import write_text_atomic

    old = os.umask(0o027)
    try:
        path = write_text_atomic(tmp_path / "shared.csv", "a,b\n")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640  # 0o666 less the umask, not mkstemp's 0o600


def test_progress_bars_are_off_off_a_terminal_and_honour_tqdm_disable(monkeypatch):
    import io

    from hydroml._progress import progress_enabled, tqdm

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("HYDROML_PROGRESS", raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not progress_enabled()  # redirected stderr: no bars
    assert progress_enabled(True)  # an explicit request still shows one
    monkeypatch.setattr(sys, "stderr", Tty())
    assert progress_enabled()
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert not progress_enabled() and tqdm(range(3)).disable
    monkeypatch.delenv("TQDM_DISABLE")
    monkeypatch.setenv("HYDROML_PROGRESS", "0")
    assert not progress_enabled()
    monkeypatch.setenv("HYDROML_PROGRESS", "1")
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_enabled()  # forced on for a log file


def test_forecast_picks_the_product_from_the_zoo_card(files, capsys):
    out = files / "et.nc"
    argv = ["forecast", "unet.demo_evaporation", "--data", "demo", "--out", str(out), "--start", "2014-01-01"]
    assert main([*argv, "-v"]) == 0
    assert "using product 'monthly'" in capsys.readouterr().err
    import xarray as xr

    with xr.open_dataset(out) as ds:
        assert ds["evspsbl"].dims == ("time", "lat", "lon") and ds.attrs["input_data"] == "demo:monthly"
