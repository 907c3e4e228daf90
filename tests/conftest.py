"""Shared test fixtures.

Tests that read the real data sets in ``../shared/data`` use the ``shared_data`` fixture: it **fails** (never
skips) when the folder is missing, so CI cannot go green without them. ``HYDROML_SHARED_DATA`` overrides the path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HYDROML_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()

os.environ.setdefault("HYDROML_PROGRESS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real data sets; fails the test when it is missing."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.fail(f"real test data not found at {SHARED_DATA} (set HYDROML_SHARED_DATA)", pytrace=False)
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory) -> Path:
    """A cache directory for the generated demo data, shared by the whole test session."""
    path = Path(os.environ.get("HYDROML_CACHE", tmp_path_factory.mktemp("hydroml_cache")))
    os.environ["HYDROML_CACHE"] = str(path)
    return path


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for the module: the test machine is shared, and for small models one thread is faster
    than two contended ones."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
