"""`medallion run`: the real pipeline on the seed data, idempotent reruns, failures, _meta/runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medallion_lakehouse.cli.main import app
from medallion_lakehouse.config import Settings
from medallion_lakehouse.errors import QualityGateError
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.pipeline.context import StepContext, StepResult
from medallion_lakehouse.pipeline.runner import run_pipeline
from medallion_lakehouse.pipeline.steps import REGISTRY, parse_steps
from tests.conftest import land
from tests.test_gold import assert_matches_reference, reference_silver

DATA_TABLES = (
    "bronze/sales",
    "bronze/sales_rejects",
    "silver/sales",
    "silver/sales_quarantine",
    "gold/daily_sales",
    "gold/product_store_daily",
)
CORE = "bronze,silver,gold"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("MEDALLION_") and key != "MEDALLION_SEED_DATA":
            monkeypatch.delenv(key)


def medallion(workspace: Path, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = CliRunner().invoke(app, ["run", "-w", str(workspace), "--json", *args])
    report = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    return result.exit_code, report


def versions(lake: Lake) -> dict[str, int | None]:
    return {t: lake.version(t) for t in DATA_TABLES}


@pytest.mark.slow
def test_seed_raw_then_late_equals_reference_and_reruns_change_nothing(
    workspace: Path, settings: Settings, seed_dir: Path
) -> None:
    raw, late = seed_dir / "raw_sales.csv", seed_dir / "late_sales.csv"
    land(workspace, raw)
    code, report = medallion(workspace, "--steps", CORE)
    assert code == 0, report
    assert [s["status"] for s in report["steps"]] == ["ok", "ok", "ok"]
    with Lake(settings) as lake:
        assert_matches_reference(lake, reference_silver([raw]))

    land(workspace, late)
    code, report = medallion(workspace, "--steps", CORE)
    assert code == 0, report
    gold = report["steps"][2]
    assert gold["metrics"]["rebuilt_months"]["gold/daily_sales"] == ["2025-11", "2025-12"]
    with Lake(settings) as lake:
        assert_matches_reference(lake, reference_silver([raw, late]))
        before = versions(lake)
        content = {t: lake.read_arrow(t).num_rows for t in DATA_TABLES}

    # No new files: no data table gets a new version.
    code, report = medallion(workspace, "--steps", CORE)
    assert code == 0
    assert all(not s["tables"] for s in report["steps"]), report["steps"]
    with Lake(settings) as lake:
        assert versions(lake) == before
        runs = lake.read_arrow("_meta/runs").to_pylist()
    assert len(runs) == 9  # three runs x three steps
    assert len({r["run_id"] for r in runs}) == 3
    assert report["run_id"] in {r["run_id"] for r in runs}
    assert all(r["status"] in ("ok", "skipped") and r["engine"] == "duckdb" for r in runs)

    # Full refresh rebuilds everything and gives the same content; a backfill range too.
    code, report = medallion(workspace, "--steps", "silver,gold", "--full-refresh")
    assert code == 0, report
    code, report = medallion(
        workspace, "--steps", "gold", "--from", "2025-03-10", "--to", "2025-04-02"
    )
    assert code == 0, report
    assert report["steps"][0]["metrics"]["rebuilt_months"]["gold/daily_sales"] == [
        "2025-03",
        "2025-04",
    ]
    with Lake(settings) as lake:
        assert_matches_reference(lake, reference_silver([raw, late]))
        assert {t: lake.read_arrow(t).num_rows for t in DATA_TABLES} == content


def _ok(name: str) -> object:
    def step(lake: Lake, ctx: StepContext) -> StepResult:
        return StepResult(step=name, rows_in=1, rows_out=1)

    return step


def test_failure_stops_the_run_names_the_step_and_records_it(settings: Settings) -> None:
    def broken(lake: Lake, ctx: StepContext) -> StepResult:
        raise QualityGateError("too many rows quarantined")

    registry = {**REGISTRY, "bronze": _ok("bronze"), "silver": broken, "gold": _ok("gold")}
    report = run_pipeline(settings, steps=["bronze", "silver", "gold"], registry=registry)  # type: ignore[dict-item]
    assert (report.exit_code, report.failed_step) == (3, "silver")
    assert [s.status for s in report.steps] == ["ok", "failed", "skipped"]
    assert report.steps[2].message == "not run: step silver failed"
    with Lake(settings) as lake:
        rows = {r["step"]: r for r in lake.read_arrow("_meta/runs").to_pylist()}
    assert rows["silver"]["status"] == "failed"
    assert rows["silver"]["message"] == "too many rows quarantined"
    assert rows["bronze"]["rows_out"] == 1


def test_unexpected_exception_is_a_failed_step_exit_1(settings: Settings) -> None:
    def bug(lake: Lake, ctx: StepContext) -> StepResult:
        raise ValueError("boom")

    report = run_pipeline(settings, steps=["gold"], registry={"gold": bug})
    assert (report.exit_code, report.failed_step, report.error) == (1, "gold", "ValueError: boom")


def test_unreadable_file_continues_but_exits_1(workspace: Path, seed_dir: Path) -> None:
    land(workspace, seed_dir / "raw_sales.csv")
    (workspace / "data" / "landing" / "broken.csv").write_bytes(b"\x00\x01binary")
    code, report = medallion(workspace, "--steps", "bronze")
    assert code == 1
    bronze = report["steps"][0]
    assert bronze["status"] == "ok"
    assert bronze["rows_out"] == 5000
    assert "broken.csv" in bronze["message"]


def test_cli_failure_message_names_step(workspace: Path) -> None:
    result = CliRunner().invoke(app, ["run", "-w", str(workspace), "--steps", "nope"])
    assert result.exit_code == 2
    assert "Unknown step(s) nope" in result.output


def test_missing_optional_step_is_skipped(settings: Settings) -> None:
    from medallion_lakehouse.pipeline.steps import lazy_step

    report = run_pipeline(
        settings, steps=["ml"], registry={"ml": lazy_step("ml", "medallion_lakehouse.nope.step")}
    )
    assert report.exit_code == 0
    assert report.steps[0].status == "skipped"
    assert "not installed" in (report.steps[0].message or "")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, ["bronze", "silver", "gold", "ml", "report"]),
        ("gold,bronze", ["bronze", "gold"]),
        (" Silver , gold ", ["silver", "gold"]),
    ],
    ids=["default-all", "pipeline-order", "spaces-and-case"],
)
def test_parse_steps(spec: str | None, expected: list[str]) -> None:
    assert parse_steps(spec) == expected


def test_summary_table_human_output(workspace: Path, seed_dir: Path) -> None:
    land(workspace, seed_dir / "raw_sales.csv")
    result = CliRunner().invoke(app, ["run", "-w", str(workspace), "--steps", "bronze"])
    assert result.exit_code == 0, result.output
    assert "bronze/sales v0" in result.output
    assert "5,000" in result.output
