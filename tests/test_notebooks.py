"""The example notebooks run from top to bottom (a failing cell fails this test) and are stored without outputs.

Each notebook is executed by nbclient in a fresh kernel, from the ``notebooks/`` folder (as Jupyter and nbmake
do), with the demo cache of the test session, ``HYDROML_DATA_ROOT`` at the shared real data, and run
directories in a temporary folder. ``pytest --nbmake notebooks/`` runs them the same way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO

NB_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))


def test_the_four_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == [
        "01_discharge_quickstart.ipynb",
        "02_gridded_evaporation.ipynb",
        "03_memory.ipynb",
        "04_real_basins.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_cells_are_valid_python(path):
    nb = nbformat.read(path, as_version=4)
    for k, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            src = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("%"))
            compile(src, f"{path.name} cell {k}", "exec")


def test_notebooks_match_their_generator():
    out = subprocess.run(
        [sys.executable, str(NB_DIR / "_build.py"), "--check"], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_default_data_root_of_04_is_the_shared_data_from_the_notebooks_folder():
    nb = nbformat.read(NB_DIR / "04_real_basins.ipynb", as_version=4)
    param = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert 'os.environ.get("HYDROML_DATA_ROOT", "../../shared/data")' in param.source
    assert (NB_DIR / "../../shared/data").resolve() == (REPO.parent / "shared" / "data").resolve()


@pytest.fixture(scope="module")
def notebook_env(shared_data, demo_cache, tmp_path_factory):
    """Environment the kernels inherit; restored afterwards."""
    env = {
        "HYDROML_DATA_ROOT": str(shared_data),
        "HYDROML_CACHE": str(demo_cache),
        "HYDROML_RUNS": str(tmp_path_factory.mktemp("notebook_runs")),
        "HYDROML_PROGRESS": "0",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, notebook_env):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NB_DIR)}}
    )
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError (with the cell and its traceback) when a cell fails
    seconds = time.perf_counter() - t0
    print(f"{path.name}: {seconds:.0f} s")
    images = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.get("output_type") in ("display_data", "execute_result") and "image/png" in o.get("data", {})
    ]
    assert images, f"{path.name} drew no figure"
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"
    ]
    assert not errors
