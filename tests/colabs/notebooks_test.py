"""Every colab notebook executes without error (with its small CPU settings)."""

import pathlib

import jupytext
import nbclient
import pytest

COLABS = pathlib.Path(__file__).resolve().parents[2] / "colabs"
NOTEBOOKS = sorted(COLABS.glob("[0-9][0-9]_*.ipynb"))


def test_notebooks_exist_and_are_paired():
  assert NOTEBOOKS, f"no notebooks in {COLABS}"
  for nb in NOTEBOOKS:
    md = nb.with_suffix(".md")
    assert md.exists(), f"{nb.name} has no paired {md.name} (jupytext)"
    cells_md = [c.source for c in jupytext.read(md).cells if c.cell_type == "code"]
    cells_nb = [c.source for c in jupytext.read(nb).cells if c.cell_type == "code"]
    assert cells_md == cells_nb, f"{nb.name} and {md.name} differ: run jupytext --sync"


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  nb = jupytext.read(path)
  client = nbclient.NotebookClient(
    nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
  )
  client.execute()  # raises CellExecutionError on the first failing cell
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
  assert any(o.get("output_type") == "display_data" for o in outputs), "no figure was shown"
