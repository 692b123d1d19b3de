"""Notebooks 01-04: generated from scripts/make_notebooks.py, clean in git, runnable in order."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
ORDER = [
    "01_generate_and_explore.ipynb",
    "02_bronze.ipynb",
    "03_silver_gold.ipynb",
    "04_optimize_and_ml.ipynb",
]


def _make_notebooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_notebooks", REPO / "scripts" / "make_notebooks.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ORDER)
def test_committed_notebook_matches_its_generator(name: str) -> None:
    generated = _make_notebooks().build(name)
    committed = (NOTEBOOKS / name).read_text(encoding="utf-8")
    assert committed == generated, f"run `python scripts/make_notebooks.py` and commit {name}"


@pytest.mark.parametrize("name", ORDER)
def test_notebook_is_clean_and_portable(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    for cell in code:
        assert not re.search(r"^\s*[!%]\s*pip\b", cell.source, re.M), "no pip install in cells"
        assert not re.search(r"['\"](/|[A-Za-z]:\\)\w", cell.source), "no absolute paths"
    assert notebook.cells[0].cell_type == "markdown"  # each starts by saying what it shows


@pytest.mark.notebooks
@pytest.mark.slow
def test_notebooks_run_top_to_bottom_on_a_fresh_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    workspace = tmp_path / "ws"
    monkeypatch.setenv("MEDALLION_WORKSPACE", str(workspace))  # inherited by the kernels
    for name in ORDER:
        notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
        client = NotebookClient(
            notebook,
            timeout=600,
            kernel_name="python3",
            resources={"metadata": {"path": str(tmp_path)}},
        )
        try:
            client.execute()
        except CellExecutionError as exc:
            pytest.fail(f"{name} failed:\n{exc}")
    assert (workspace / "data" / "reports" / "report.html").is_file()
    assert not (tmp_path / "workspace").exists()  # the env var was honoured
