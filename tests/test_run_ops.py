"""`medallion optimize` (compact + vacuum, dry run by default) and `medallion demo`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from medallion_lakehouse.cli.main import app
from medallion_lakehouse.config import Settings
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.storage.delta import CommitInfo, open_table
from tests.test_lock import _holder

QUALITY = "_meta/quality"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("MEDALLION_") and key != "MEDALLION_SEED_DATA":
            monkeypatch.delenv(key)


def _many_small_appends(lake: Lake, n: int) -> list[dict]:  # type: ignore[type-arg]
    schema = lake.contract(QUALITY).schema
    rows = []
    for i in range(n):
        row = dict(run_id=f"r{i}", table="t", rule="x", severity="warn", rows_checked=i,
                   rows_failed=0, checked_at=None, description="d", threshold=None)  # fmt: skip
        rows.append(row)
        lake.write_arrow(
            QUALITY, pa.Table.from_pylist([row], schema=schema), commit=CommitInfo(f"r{i}", "t")
        )
    return rows


def _files(settings: Settings, name: str) -> int:
    table = open_table(settings.table_uri(name))
    assert table is not None
    return len(table.file_uris())


def optimize(workspace: Path, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = CliRunner().invoke(app, ["optimize", "-w", str(workspace), "--json", *args])
    return result.exit_code, json.loads(result.stdout) if result.exit_code == 0 else {}


def test_dry_run_changes_nothing(settings: Settings, lake: Lake) -> None:
    _many_small_appends(lake, 4)
    version = lake.version(QUALITY)
    code, out = optimize(settings.workspace, "--table", QUALITY)
    assert code == 0
    assert out["applied"] is False
    assert out["tables"][0]["files"] == out["tables"][0]["small_files"] == 4
    assert lake.version(QUALITY) == version
    assert _files(settings, QUALITY) == 4


def test_apply_compacts_and_vacuums_keeping_content(settings: Settings, lake: Lake) -> None:
    rows = _many_small_appends(lake, 5)
    code, out = optimize(
        settings.workspace, "--table", QUALITY, "--apply", "--retention-hours", "0", "--force"
    )
    assert code == 0, out
    (row,) = out["tables"]
    assert row["compacted"] == {"files_removed": 5, "files_added": 1}
    assert row["vacuum_files"] == 5
    assert _files(settings, QUALITY) == 1
    parquet = list(Path(settings.table_uri(QUALITY)).rglob("*.parquet"))
    assert len(parquet) == 1  # the five small files are gone from disk too
    got = sorted(lake.read_arrow(QUALITY).to_pylist(), key=lambda r: r["rows_checked"])
    assert got == rows
    assert lake.history(QUALITY)[-1]["operation"] != "OPTIMIZE"  # oldest commit is a write


def test_apply_takes_the_lock_dry_run_does_not(settings: Settings, lake: Lake) -> None:
    _many_small_appends(lake, 2)
    holder = _holder(settings.workspace, 60)
    try:
        assert optimize(settings.workspace, "--apply", "--table", QUALITY)[0] == 75
        assert optimize(settings.workspace, "--table", QUALITY)[0] == 0
    finally:
        holder.kill()
        holder.wait()
    assert _files(settings, QUALITY) == 2


def test_unknown_table(settings: Settings) -> None:
    result = CliRunner().invoke(app, ["optimize", "-w", str(settings.workspace), "-t", "nope/x"])
    assert result.exit_code == 2
    assert "Unknown table" in result.output


@pytest.mark.slow
def test_demo_generates_runs_and_points_to_the_report(workspace: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "-w", str(workspace), "--rows", "20000"])
    assert result.exit_code == 0, result.output
    assert "generated 20,000 sales" in result.output
    assert "report:" in result.output
    with Lake(Settings(workspace=workspace)) as lake:
        assert lake.read_arrow("gold/daily_sales").num_rows > 300  # a year of days
        steps = {r["step"]: r["status"] for r in lake.read_arrow("_meta/runs").to_pylist()}
    assert set(steps) == {"bronze", "silver", "gold", "ml", "report"}
    assert "failed" not in steps.values()
