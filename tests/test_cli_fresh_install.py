"""The README quickstart, verbatim, with the **base** install in a fresh virtual environment.

No ``--system-site-packages`` and no extras: the venv starts empty, so a dependency that only an extra (or the
test machine) provides fails here, as it would for a new user. ``pip install torch==2.13.0`` resolves from the
local wheel cache/index that pip is configured with (as in CI), so the whole test takes about a minute.
The sources are copied (tracked and untracked, not ignored, files) so the editable install never touches the
working tree.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

README = (REPO / "README.md").read_text()
QUICKSTART = [code.strip() for lang, code in re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)][0]


def _copy_sources(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for rel in filter(None, files):
        src = REPO / os.fsdecode(rel)
        if not src.exists():  # deleted in the working tree but still in the index
            continue
        target = dest / os.fsdecode(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)  # symlinks (examples/) become the files they point to


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_readme_quickstart_runs_verbatim_with_the_base_install_in_a_fresh_venv(tmp_path):
    assert QUICKSTART == "pip install torch==2.13.0 && pip install -e . && hydroml demo", QUICKSTART
    src, venv = tmp_path / "hydroml", tmp_path / "venv"
    _copy_sources(src)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "HYDROML_"))}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        HYDROML_CACHE=str(tmp_path / "cache"),  # fresh: demo data generated, kernel compiled
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        MPLBACKEND="Agg",
    )
    res = subprocess.run(
        ["bash", "-c", QUICKSTART], cwd=src, env=env, capture_output=True, text=True, timeout=840
    )
    assert res.returncode == 0, f"stdout:\n{res.stdout[-3000:]}\nstderr:\n{res.stderr[-3000:]}"

    out = src / "hydroml_demo_output"  # the folder the README names
    for name in ("predictions.nc", "metrics.csv", "hydrograph.png"):
        assert (out / name).is_file(), name
        assert f"hydroml_demo_output/{name}" in res.stdout, f"the demo should say where {name} is"
    runs = list((out / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "model.safetensors").is_file()
    assert "nse_skill_climatology" in (out / "metrics.csv").read_text().splitlines()[0]

    demo_err = res.stderr[res.stderr.find("INFO hydroml") :]
    assert "Traceback" not in demo_err and "Warning" not in demo_err, demo_err[-3000:]
    assert "\r" not in demo_err and "\x1b[" not in demo_err, "progress-bar frames in a redirected stderr"
    assert "compiling the CPU LSTM kernel (once" in demo_err

    # the base install really is the base install, and the shipped example is found without a clone
    py = str(venv / "bin" / "python")
    probe = subprocess.run(
        [py, "-c", "import importlib.util as u; print([m for m in ('cartopy', 'pytest') if u.find_spec(m)])"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "[]", probe.stdout
    listed = subprocess.run(
        ["hydroml", "train", "--list-examples"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0 and "demo_lstm" in listed.stdout, listed.stderr
    assert Path(listed.stdout.split()[1]).is_file()
