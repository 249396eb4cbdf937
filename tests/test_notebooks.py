"""The notebooks run top to bottom (at tiny settings) in a fresh kernel."""

import os
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

REPO = pathlib.Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["quickstart", "dnc_memory"])
def test_notebook_executes(name, tmp_path, monkeypatch):
  monkeypatch.setenv("DNCJAX_QUICKSTART_TINY", "1")
  monkeypatch.setenv("DNCJAX_NOTEBOOK_TINY", "1")
  monkeypatch.setenv("MPLBACKEND", "Agg")
  nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": str(tmp_path)}}).execute()
  errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.get("output_type") == "error"]
  assert not errors
  assert os.environ["DNCJAX_DATA_DIR"]
