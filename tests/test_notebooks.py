"""The tutorial notebooks execute cleanly (so they cannot rot), show their figures as
images, print no warnings, and are stored without outputs.

Issue 14: ``labcim.plots`` figures showed as the text ``<Figure size ...>`` and every
notebook printed ``TqdmWarning: IProgress not found``.  The notebooks run in a plain
kernel (ipywidgets hidden, as on a fresh install with only labcim) and with the widget
backend (ipympl) when it is installed.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))

PLOT_CALL = "plots."

RUN_ALL_TWICE = {"04_campaign.ipynb": 2}
"""Notebooks executed a second time in the folder of their first run, as a reader runs
them again: the campaign notebook's second campaign is one of its own (with a fixed id,
it met the first's finished runs and its cell failed).  The others append runs to their
sessions' files and look them up by uid (run twice by hand)."""


def _plots(cell) -> bool:
    """A cell that ends with a ``labcim.plots`` figure: it must show an image."""
    lines = cell.source.strip().splitlines()
    return bool(lines) and lines[-1].startswith(PLOT_CALL)


def _plain_kernel_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a kernel in which ``import ipywidgets`` fails."""
    hidden = tmp_path / "hide-ipywidgets"
    hidden.mkdir()
    (hidden / "ipywidgets.py").write_text("raise ImportError('ipywidgets is not installed')\n")
    path = os.pathsep.join(filter(None, [str(hidden), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def _execute(nb, tmp_path: Path, env: dict[str, str] | None = None) -> None:
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute(**({"env": env} if env else {}))  # raises CellExecutionError on failure


def _check_outputs(nb) -> int:
    """Assert no cell printed a warning or to stderr; return the cells showing a PNG."""
    images = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.outputs:
            text = output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
            assert output.get("name") != "stderr", f"stderr in {cell.source!r}: {text}"
            assert "Warning" not in text, f"warning in {cell.source!r}: {text}"
        png = any("image/png" in o.get("data", {}) for o in cell.outputs)
        if _plots(cell):
            assert png, f"no image from {cell.source!r}: {cell.outputs}"
        images += png
    return images


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes_in_a_plain_kernel_with_images_and_no_warnings(path, tmp_path):
    env = _plain_kernel_env(tmp_path)
    for _ in range(RUN_ALL_TWICE.get(path.name, 1)):  # the second time in the first's folder
        nb = nbformat.read(path, as_version=4)
        _execute(nb, tmp_path, env)
    images = _check_outputs(nb)
    assert images == sum(_plots(c) for c in nb.cells) >= 1
    assert any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("ipympl") is None, reason="needs ipympl (the widget backend)"
)
def test_figures_show_with_the_widget_backend_and_the_notebook_progress_bar(tmp_path):
    path = next(p for p in NOTEBOOKS if p.name.startswith("01"))
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell("%matplotlib widget"))
    # The progress bars on: with ipywidgets they are tqdm's notebook widgets.
    for cell in nb.cells:
        cell.source = cell.source.replace("progress=False", "progress=True")
    _execute(nb, tmp_path)
    assert _check_outputs(nb) >= 2
    widgets = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert widgets, "tqdm's notebook bar (an ipywidgets view) was not shown"
