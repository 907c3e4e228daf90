"""The README's code blocks run as written.

Every ```python block is executed, in order, in one namespace, from a scratch directory (so runs/ and outputs
land there). The quickstart ```bash block holds the two commands of a fresh machine: its second command is the
test command, which must be what CI runs (.ci/run); its first ends with ``hydroml demo``, which
tests/test_cli_demo.py runs end to end. Both are checked here against the files, so the README cannot drift.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO

README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)
PYTHON = [code for lang, code in BLOCKS if lang == "python"]


def test_readme_has_the_two_quickstart_commands_and_ci_runs_the_test_one():
    bash = [code.strip() for lang, code in BLOCKS if lang == "bash"]
    assert len(bash) >= 2
    setup_and_demo, setup_and_test = bash[0], bash[1]
    assert setup_and_demo.startswith("pip install torch==2.13.0") and setup_and_demo.endswith("hydroml demo")
    assert setup_and_test.startswith("pip install torch==2.13.0") and "pytest" in setup_and_test
    ci = (REPO / ".ci" / "run").read_text()
    ci_lines = [ln.strip() for ln in ci.splitlines() if "pytest" in ln and not ln.lstrip().startswith("#")]
    assert any(setup_and_test.replace("pip install", "pip install -q") == ln for ln in ci_lines), ci_lines


@pytest.mark.slow
def test_readme_python_blocks_run(tmp_path, monkeypatch, demo_cache, capsys):
    assert len(PYTHON) >= 3, "the README should show Python examples"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").symlink_to(REPO / "examples")
    namespace: dict = {"__name__": "__readme__"}
    for i, code in enumerate(PYTHON):
        try:
            exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as err:  # pragma: no cover - the message is the point
            pytest.fail(f"README python block {i + 1} failed: {type(err).__name__}: {err}\n{code}")
    out = capsys.readouterr().out
    assert "demo_01" in out  # the per-basin NSE table was printed
    assert (tmp_path / "runs").is_dir()
