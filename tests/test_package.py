"""The package itself: metadata, citation, command line, optional-dependency messages."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO


def test_citation_cff_is_valid():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    for key in ("message", "title", "authors", "version", "license"):
        assert cff.get(key), f"CITATION.cff lacks required key {key!r}"
    assert all("name" in a or "family-names" in a for a in cff["authors"])
    import hydroml

    assert str(cff["version"]) == hydroml.__version__


def test_cli_help_lists_subcommands():
    out = subprocess.run(
        [sys.executable, "-m", "hydroml", "--help"], capture_output=True, text=True, check=True
    )
    assert "usage: hydroml" in out.stdout
    assert "COMMAND" in out.stdout


def test_cli_unknown_command_exits_nonzero():
    out = subprocess.run([sys.executable, "-m", "hydroml", "no-such-command"], capture_output=True, text=True)
    assert out.returncode != 0
    assert "invalid choice" in out.stderr


def test_require_names_the_extra():
    from hydroml.exceptions import OptionalDependencyError, require

    with pytest.raises(OptionalDependencyError, match=r"hydroml\[maps\]"):
        require("surely_not_a_module_xyz", "maps")


def test_library_never_configures_root_logging():
    import logging

    import hydroml  # noqa: F401

    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("hydroml").handlers)
