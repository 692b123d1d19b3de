"""docs/contracts.md and docs/cli.md are generated from the code: they must match it exactly."""

from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def _gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", REPO / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _gen_docs()


@pytest.mark.parametrize("page", sorted(GEN.PAGES), ids=str)
def test_generated_page_is_up_to_date(page: str) -> None:
    committed = (REPO / "docs" / page).read_text(encoding="utf-8")
    generated = GEN.PAGES[page]()
    if committed != generated:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(keepends=True),
                generated.splitlines(keepends=True),
                f"docs/{page} (committed)",
                f"docs/{page} (from the code)",
                n=1,
            )
        )
        pytest.fail(
            f"docs/{page} is out of date: run `python scripts/gen_docs.py` and commit it.\n"
            + diff[:4000]
        )


def test_contracts_page_lists_every_registered_table_and_column() -> None:
    from medallion_lakehouse.contracts import all_contracts

    text = GEN.contracts_markdown()
    for contract in all_contracts():
        assert f"### `{contract.name}`" in text
        for column in contract.columns:
            assert f"| `{column.name}` |" in text, (contract.name, column.name)


def test_cli_page_lists_every_command_and_option() -> None:
    import typer

    from medallion_lakehouse.cli.main import app

    text = GEN.cli_markdown()
    root = typer.main.get_command(app)
    for name, command in root.commands.items():
        assert f"\n## medallion {name}\n" in text
        for param in command.params:
            if param.param_type_name == "option":
                assert f"`{param.opts[0]}`" in text, (name, param.opts)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a | b", "a \\| b"),
        ("line one\n  line two", "line one line two"),
        ("<reports>/x", "&lt;reports&gt;/x"),
    ],
    ids=["pipe", "newline", "angle-brackets"],
)
def test_table_cells_are_escaped(raw: str, expected: str) -> None:
    assert GEN._cell(raw) == expected


def test_check_mode_fails_on_a_stale_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(GEN, "DOCS", tmp_path)
    assert GEN.main([]) == 0  # writes fresh pages into tmp_path
    assert GEN.main(["--check"]) == 0
    (tmp_path / "cli.md").write_text("stale\n", encoding="utf-8")
    assert GEN.main(["--check"]) == 1
