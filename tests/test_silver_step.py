"""The silver step on real lakes: seed data, late batches, corrections, gate, refresh, audit."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

from medallion_lakehouse.bronze.ingest import ingest
from medallion_lakehouse.cli.main import app
from medallion_lakehouse.config import load_settings
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.pipeline.context import StepContext, StepResult, new_run_id
from medallion_lakehouse.silver import step
from medallion_lakehouse.silver.audit import audit
from medallion_lakehouse.storage.delta import CommitInfo
from tests.conftest import seed_data_dir

SEED_DIR = seed_data_dir()
HEADER = [
    "sale_id",
    "sale_date",
    "store_id",
    "customer_id",
    "product",
    "quantity",
    "price",
    "total",
    "status",
]
LINEAGE = ("_batch_id", "_source_file", "_source_line", "_ingested_at")


@pytest.fixture
def lake(tmp_path: Path) -> Iterator[Lake]:
    (tmp_path / "data" / "landing").mkdir(parents=True)
    with Lake(load_settings(tmp_path)) as lk:
        yield lk


def land(lake: Lake, name: str, rows: list[dict[str, Any]] | Path) -> Path:
    """Put a CSV in the landing folder (rows as dicts with HEADER keys, or a file to copy)."""
    path = Path(lake.settings.landing_path) / name
    if isinstance(rows, Path):
        path.write_bytes(rows.read_bytes())
        return path
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HEADER)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in HEADER})
    return path


def sale(
    sale_id: str, sale_date: str = "2025-01-10", status: str = "Completed", **kw: Any
) -> dict[str, Any]:
    return {
        "sale_id": sale_id,
        "sale_date": sale_date,
        "store_id": "NW-7",
        "customer_id": "c-" + sale_id,
        "product": "Laptop",
        "quantity": "1",
        "price": "10.00",
        "total": "10.00",
        "status": status,
        **kw,
    }


def ingest_and_run(lake: Lake, *names: Path, **ctx: Any) -> StepResult:
    ingest(lake, run_id=new_run_id(), files=list(names))
    return step.run(lake, StepContext(run_id=new_run_id(), **ctx))


def silver_rows(lake: Lake) -> dict[str, dict[str, Any]]:
    return {r["sale_id"]: r for r in lake.read_arrow("silver/sales").to_pylist()}


def content(lake: Lake, drop: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
    """Silver as a sorted list of rows (optionally without some columns)."""
    rows = lake.read_arrow("silver/sales").to_pylist()
    return sorted(tuple((k, v) for k, v in r.items() if k not in drop) for r in rows)


def assert_audit_ok(lake: Lake) -> Any:
    report = audit(lake)
    assert report.violations == []
    return report


# -- seed data ------------------------------------------------------------------------------
@pytest.fixture
def seed_lake(lake: Lake) -> Lake:
    ingest_and_run(lake, land(lake, "a_raw_sales.csv", SEED_DIR / "raw_sales.csv"))
    return lake


def read_seed(name: str) -> list[dict[str, str]]:
    with (SEED_DIR / name).open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_seed_stores_prices_and_conservation(seed_lake: Lake) -> None:
    silver = seed_lake.read_arrow("silver/sales")
    stores = set(silver.column("store_id").to_pylist())
    # The figure: 180 canonical stores (the original notebook's cleaning left 279).
    assert len(stores) == 180
    assert all(re.fullmatch(r"NW-\d{3}", s) for s in stores)
    # The seed's README: 237 empty prices, each imputed as round(total / quantity, 2).
    imputed = silver.filter(silver.column("price_imputed")).to_pylist()
    assert len(imputed) == 237
    for row in imputed:
        expected = (row["total"] / row["quantity"]).quantize(Decimal("0.01"), ROUND_HALF_UP)
        assert row["unit_price"] == expected
    # 139 empty statuses become 'unknown'.
    assert pc.sum(pc.equal(silver.column("status"), "unknown")).as_py() == 139
    report = assert_audit_ok(seed_lake)
    assert report.current + report.superseded + report.quarantined == 5000
    assert report.bronze_rows == 5000
    assert report.silver_rows == report.current


def test_seed_late_batch_is_merged_and_marked(seed_lake: Lake) -> None:
    raw_newest = max(date.fromisoformat(r["sale_date"]) for r in read_seed("raw_sales.csv"))
    late = read_seed("late_sales.csv")
    expected_late = sum(date.fromisoformat(r["sale_date"]) < raw_newest for r in late)
    months = sorted({r["sale_date"][:7] for r in late})

    ingest(
        seed_lake,
        run_id="ingest",
        files=[land(seed_lake, "b_late.csv", SEED_DIR / "late_sales.csv")],
    )
    run_id = new_run_id()
    result = step.run(seed_lake, StepContext(run_id=run_id))
    assert result.metrics["affected_months"] == months  # only the late rows' months
    silver = seed_lake.read_arrow("silver/sales")
    assert silver.num_rows == 5500
    extra = silver.filter(pc.equal(silver.column("product"), "Extra Batch Product"))
    assert extra.num_rows == 500
    assert pc.sum(extra.column("is_late")).as_py() == expected_late
    assert pc.sum(silver.column("is_late")).as_py() == expected_late  # first batch: none late
    quality = {
        q["rule"]: q
        for q in seed_lake.read_arrow("_meta/quality").to_pylist()
        if q["run_id"] == run_id
    }
    assert (
        quality["product_in_catalogue"]["severity"],
        quality["product_in_catalogue"]["rows_failed"],
    ) == ("warn", 500)
    assert_audit_ok(seed_lake)


# -- corrections and duplicates -------------------------------------------------------------
def test_correction_replaces_old_version_also_across_months(lake: Lake) -> None:
    first = land(lake, "f1.csv", [sale("S1", status="Pending"), sale("S2"), sale("S3")])
    ingest_and_run(lake, first)
    second = land(
        lake,
        "f2.csv",
        [sale("S1", status="Completed"), sale("S2", sale_date="2025-03-05", status="Returned")],
    )
    result = ingest_and_run(lake, second)
    rows = silver_rows(lake)
    assert set(rows) == {"S1", "S2", "S3"}
    assert rows["S1"]["status"] == "completed"
    assert (rows["S2"]["sale_month"], rows["S2"]["status"]) == ("2025-03", "returned")
    # Both the old month and the new one were rebuilt, and the old version left January.
    assert result.metrics["affected_months"] == ["2025-01", "2025-03"]
    january = lake.read_arrow("silver/sales").filter(
        pc.equal(lake.read_arrow("silver/sales").column("sale_month"), "2025-01")
    )
    assert sorted(january.column("sale_id").to_pylist()) == ["S1", "S3"]
    report = assert_audit_ok(lake)
    assert (report.current, report.superseded) == (3, 2)


def test_same_file_later_line_wins(lake: Lake) -> None:
    ingest_and_run(
        lake, land(lake, "f.csv", [sale("S1", status="Pending"), sale("S1", status="Cancelled")])
    )
    assert silver_rows(lake)["S1"]["status"] == "cancelled"


@pytest.mark.slow
def test_exact_duplicates_collapse(lake: Lake) -> None:
    row = {k: v for k, v in sale("", status="Completed").items() if k != "sale_id"}
    ingest_and_run(lake, land(lake, "f1.csv", [row, row, {**row, "customer_id": "other"}]))
    ingest_and_run(lake, land(lake, "f2.csv", [row]))
    rows = silver_rows(lake)
    assert len(rows) == 2
    assert all(s.startswith("h-") for s in rows)
    report = assert_audit_ok(lake)
    assert (report.current, report.superseded) == (2, 2)


@pytest.mark.slow
def test_older_version_arriving_later_still_wins_by_arrival(lake: Lake) -> None:
    # "Latest" means latest to arrive, not latest sale_date: a re-sent sale moves back in time.
    ingest_and_run(lake, land(lake, "f1.csv", [sale("S1", sale_date="2025-05-01")]))
    ingest_and_run(lake, land(lake, "f2.csv", [sale("S1", sale_date="2025-04-01")]))
    row = silver_rows(lake)["S1"]
    assert (row["sale_month"], row["is_late"]) == ("2025-04", True)


# -- quarantine and the quality gate ----------------------------------------------------------
def test_quarantine_keeps_rows_as_received_with_rule(lake: Lake) -> None:
    good = [sale(f"S{i}") for i in range(9)]
    bad = sale("B1", store_id="NW-XX")
    result = ingest_and_run(lake, land(lake, "f.csv", [*good, bad]))
    assert (result.rows_in, result.rows_quarantined) == (10, 1)
    q = lake.read_arrow("silver/sales_quarantine").to_pylist()
    assert len(q) == 1
    assert (q[0]["store_id"], q[0]["rule"], q[0]["_source_line"]) == ("NW-XX", "store_id_valid", 10)
    assert q[0]["reason"]
    assert "B1" not in silver_rows(lake)
    assert assert_audit_ok(lake).quarantined == 1


def _held_lake(lake: Lake) -> tuple[str, str]:
    """A lake where f.csv (2 of 4 rows bad) was held by the gate; returns (batch id, run id)."""
    rows = [sale("S1"), sale("S2"), sale("B1", quantity="0"), sale("B2", quantity="zero")]
    ingest(lake, run_id=new_run_id(), files=[land(lake, "f.csv", rows)])
    run_id = new_run_id()
    result = step.run(lake, StepContext(run_id=run_id))
    assert result.metrics["exit_code"] == 3
    (batch,) = result.metrics["held_batches"]
    return batch, run_id


def test_quality_gate_holds_one_batch_and_later_batches_go_on(lake: Lake) -> None:
    batch, run_id = _held_lake(lake)
    held_rows = lake.read_arrow("_meta/held_batches").to_pylist()
    assert [(h["batch_id"], h["state"], h["rows"], h["rows_failed"]) for h in held_rows] == [
        (batch, "held", 4, 2)
    ]
    assert "quantity_positive_integer 2" in held_rows[0]["reason"]
    assert lake.version("silver/sales") is None  # nothing of the held batch was committed
    assert lake.read_arrow("silver/sales_quarantine").num_rows == 0
    assert lake.read_arrow("_meta/silver_batches").num_rows == 0
    quality = {
        q["rule"]: q for q in lake.read_arrow("_meta/quality").to_pylist() if q["run_id"] == run_id
    }
    assert quality["quarantine_share"]["rows_failed"] == 4
    assert quality["quantity_positive_integer"]["rows_failed"] == 2
    assert all(q["rows_checked"] == 4 for q in quality.values())

    # Before: the held batch stopped silver on every later run. Now a corrected file goes on.
    later = ingest_and_run(lake, land(lake, "g.csv", [sale("S3")]))
    assert later.metrics["held_batches"] == [batch]
    assert set(silver_rows(lake)) == {"S3"}
    report = assert_audit_ok(lake)
    assert (report.held_batches, report.pending_batches) == ([batch], [])
    assert lake.read_arrow("_meta/held_batches").num_rows == 1  # held once, not once per run

    # Every run checks a held batch again: a raised threshold lets it through.
    with Lake(load_settings(lake.settings.workspace, quarantine_fail_share=0.5)) as relaxed:
        result = step.run(relaxed, StepContext(run_id=new_run_id()))
        assert "held_batches" not in result.metrics
        assert result.rows_quarantined == 2
        assert set(silver_rows(relaxed)) == {"S1", "S2", "S3"}
        assert assert_audit_ok(relaxed).held_batches == []


def test_first_load_rebuilds_the_months_of_its_valid_rows_only(lake: Lake) -> None:
    # The months come from the batch statistics: a quarantined row's month and a held batch's
    # months are not written (nor logged in _meta/silver_changes).
    going = [
        sale("S1", sale_date="2025-01-10"),
        sale("S2", sale_date="2025-03-02"),
        sale("S3", sale_date="2025-03-20"),
        sale("B1", sale_date="2025-05-05", quantity="zero"),
    ]
    held_rows = [sale("H1", sale_date="2025-07-01", quantity="0"), sale("H2", quantity="x")]
    files = [land(lake, "a.csv", going), land(lake, "b.csv", held_rows)]
    ingest(lake, run_id=new_run_id(), files=files)
    with Lake(load_settings(lake.settings.workspace, quarantine_fail_share=0.5)) as lk:
        result = step.run(lk, StepContext(run_id=new_run_id()))
        assert len(result.metrics["held_batches"]) == 1
        assert result.metrics["affected_months"] == ["2025-01", "2025-03"]
        assert set(silver_rows(lk)) == {"S1", "S2", "S3"}
        changes = lk.read_arrow("_meta/silver_changes").to_pylist()
        assert sorted(c["sale_month"] for c in changes) == ["2025-01", "2025-03"]


@pytest.mark.parametrize(
    ("decision", "in_silver", "quarantined"),
    [
        (
            "--accept",
            {"S1", "S2"},
            {"B1": "quantity_positive_integer", "B2": "quantity_positive_integer"},
        ),
        ("--quarantine", set(), dict.fromkeys(["S1", "S2", "B1", "B2"], "held_batch_quarantined")),
        ("--drop", set(), {}),
    ],
)
def test_operator_decides_about_a_held_batch(
    lake: Lake, decision: str, in_silver: set[str], quarantined: dict[str, str]
) -> None:
    batch, _ = _held_lake(lake)
    ws = str(lake.settings.workspace)
    cli = CliRunner()
    listed = cli.invoke(app, ["held", "-w", ws, "--json"])
    assert [b["state"] for b in json.loads(listed.stdout)] == ["held"]
    decided = cli.invoke(
        app, ["held", "-w", ws, decision, batch, "--note", "checked with the shop"]
    )
    assert decided.exit_code == 0, decided.output
    again = cli.invoke(app, ["held", "-w", ws, "--drop", batch])
    assert again.exit_code == 2 and "final" in again.output

    result = step.run(lake, StepContext(run_id=new_run_id()))
    assert "held_batches" not in result.metrics
    assert set(silver_rows(lake)) == in_silver
    q = lake.read_arrow("silver/sales_quarantine").to_pylist()
    assert {r["sale_id"]: r["rule"] for r in q} == quarantined
    assert all(r["reason"] for r in q)
    report = assert_audit_ok(lake)
    assert report.dropped_batches == ([batch] if decision == "--drop" else [])
    assert report.pending_batches == report.held_batches == []
    states = [b["state"] for b in json.loads(cli.invoke(app, ["held", "-w", ws, "--json"]).stdout)]
    assert states == [
        {"--accept": "accepted", "--quarantine": "quarantined", "--drop": "dropped"}[decision]
    ]


# -- refresh, idempotence, ranges ----------------------------------------------------------------
@pytest.mark.slow
def test_rerun_is_a_no_op_and_full_refresh_gives_the_same_content(lake: Lake) -> None:
    f1 = land(
        lake,
        "f1.csv",
        [sale("S1", status="Pending"), sale("S2", sale_date="2025-02-01"), sale("B", store_id="")],
    )
    f2 = land(
        lake, "f2.csv", [sale("S1", sale_date="2025-03-01"), sale("S3", sale_date="2025-01-05")]
    )
    ingest(lake, run_id=new_run_id(), files=[f1])
    with Lake(load_settings(lake.settings.workspace, quarantine_fail_share=0.5)) as lk:
        step.run(lk, StepContext(run_id=new_run_id()))
        ingest(lk, run_id=new_run_id(), files=[f2])
        step.run(lk, StepContext(run_id=new_run_id()))
        incremental = content(lk)
        quarantine = lk.read_arrow("silver/sales_quarantine").num_rows
        version = lk.version("silver/sales")
        again = step.run(lk, StepContext(run_id=new_run_id()))
        assert again.status == "skipped"
        assert lk.version("silver/sales") == version
        full = step.run(lk, StepContext(run_id=new_run_id(), full_refresh=True))
        assert content(lk) == incremental  # is_late included: watermarks come from bronze order
        assert lk.read_arrow("silver/sales_quarantine").num_rows == quarantine
        assert set(full.metrics["affected_months"]) == {"2025-01", "2025-02", "2025-03"}
        step.run(lk, StepContext(run_id=new_run_id(), full_refresh=True))
        assert content(lk) == incremental
        assert lk.read_arrow("_meta/silver_batches").num_rows == 2
        assert_audit_ok(lk)


@pytest.mark.slow
def test_date_range_reprocesses_only_its_months(lake: Lake) -> None:
    f1 = land(
        lake,
        "f1.csv",
        [
            sale("S1", sale_date="2025-01-10"),
            sale("S2", sale_date="2025-02-10"),
            sale("S3", sale_date="2025-04-10"),
        ],
    )
    f2 = land(lake, "f2.csv", [sale("S2", sale_date="2025-03-10", status="Returned")])
    ingest_and_run(lake, f1)
    ingest_and_run(lake, f2)
    before = content(lake)
    result = step.run(
        lake,
        StepContext(run_id=new_run_id(), date_from=date(2025, 2, 15), date_to=date(2025, 2, 20)),
    )
    # February is in range; S2's older version lives there, its current one in March.
    assert result.metrics["affected_months"] == ["2025-02", "2025-03"]
    assert content(lake) == before
    changes = lake.read_arrow("_meta/silver_changes").to_pylist()
    assert {c["sale_month"] for c in changes if c["mode"] == "range"} == {"2025-02", "2025-03"}
    assert_audit_ok(lake)


# -- audit ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_audit_reports_pending_and_catches_violations(lake: Lake) -> None:
    ingest_and_run(lake, land(lake, "f1.csv", [sale("S1"), sale("S2"), sale("S3")]))
    ingest(lake, run_id=new_run_id(), files=[land(lake, "f2.csv", [sale("S4")])])
    report = assert_audit_ok(lake)
    assert (report.pending_rows, len(report.pending_batches), report.bronze_rows) == (1, 1, 3)

    lake.delete_where("silver/sales", "sale_id = 'S2'", commit=CommitInfo("t", "test"))
    report = audit(lake)
    assert len(report.violations) == 1
    assert "1 processed bronze record(s) are neither in silver" in report.violations[0]
    assert "_source_line=2" in report.violations[0]
    result = CliRunner().invoke(app, ["audit", "-w", str(lake.settings.workspace)])
    assert result.exit_code == 1
    assert "neither in silver" in result.output


@pytest.mark.slow
def test_audit_catches_a_record_in_two_places(lake: Lake) -> None:
    ingest_and_run(lake, land(lake, "f1.csv", [sale("S1"), sale("S2")]))
    silver = lake.read_arrow("silver/sales")
    q = silver.filter(pc.equal(silver.column("sale_id"), "S1")).to_pylist()[0]
    row = {c: None for c in lake.contract("silver/sales_quarantine").column_names}
    row.update(
        {k: q[k] for k in LINEAGE}, _source_file_sha256="x", rule="r", reason="why", run_id="t"
    )
    import pyarrow as pa

    lake.write_arrow(
        "silver/sales_quarantine",
        pa.Table.from_pylist([row], schema=lake.contract("silver/sales_quarantine").schema),
        commit=CommitInfo("t", "test"),
    )
    violations = audit(lake).violations
    assert any("more than one place" in v for v in violations)


def test_audit_counts_each_place_and_names_rows_silver_did_not_build(lake: Lake) -> None:
    import pyarrow as pa

    # One bad line in ten stays under the quality gate's share.
    fill = [sale(f"F{i}") for i in range(7)]
    f1 = land(
        lake, "f1.csv", [sale("S1", status="Pending"), sale("S2"), *fill, sale("B", store_id="")]
    )
    ingest_and_run(lake, f1)
    ingest_and_run(lake, land(lake, "f2.csv", [sale("S1"), sale("S3")]))
    report = assert_audit_ok(lake)
    # f1's S1 is superseded by f2's; B breaks store_id_valid; the other ten are current.
    counts = (report.bronze_rows, report.current, report.superseded, report.quarantined)
    assert counts == (12, 10, 1, 1)
    assert report.silver_rows == 10

    # S2's row rewritten under another sale_id: its record is placed nowhere, and the row
    # matches no record; a quarantine row without a bronze record and without a reason.
    silver = lake.read_arrow("silver/sales")
    s2 = silver.filter(pc.equal(silver.column("sale_id"), "S2")).to_pylist()[0]
    commit = CommitInfo("t", "test")
    lake.delete_where("silver/sales", "sale_id = 'S2'", commit=commit)
    forged = pa.Table.from_pylist([{**s2, "sale_id": "X2"}], schema=silver.schema)
    lake.write_arrow("silver/sales", forged, commit=commit)
    contract = lake.contract("silver/sales_quarantine")
    row = {c: None for c in contract.column_names}
    row.update(
        {k: s2[k] for k in LINEAGE},
        _source_line=99,
        _source_file_sha256="x",
        rule="r",
        reason=" ",
        run_id="t",
    )
    lake.write_arrow(
        "silver/sales_quarantine",
        pa.Table.from_pylist([row], schema=contract.schema),
        commit=commit,
    )
    report = audit(lake)
    assert (report.current, report.superseded, report.quarantined) == (9, 1, 1)
    assert len(report.violations) == 4, report.violations
    nowhere, orphan, unexplained, stray = report.violations
    assert nowhere.startswith("1 processed bronze record(s) are neither in silver")
    assert "_source_line=2, sale_id=S2, in_silver=0" in nowhere
    assert orphan.startswith("1 silver row(s) do not match a processed bronze record")
    assert "sale_id=X2" in orphan
    assert unexplained == "1 quarantine row(s) have no rule or no reason"
    assert stray == "1 quarantine row(s) do not come from a bronze record"


# -- CLI ---------------------------------------------------------------------------------------
def test_cli_silver_and_quality_json(lake: Lake) -> None:
    ws = str(lake.settings.workspace)
    land(lake, "f1.csv", [sale("S1"), sale("S2", product=" tablet ")])
    ingest(lake, run_id=new_run_id())
    runner = CliRunner()
    out = runner.invoke(app, ["silver", "-w", ws, "--json"])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.output)
    assert payload["rows_out"] == 2
    quality = runner.invoke(app, ["quality", "-w", ws, "--json"])
    assert quality.exit_code == 0, quality.output
    rules = {r["rule"]: r for r in json.loads(quality.output)}
    assert rules["product_in_catalogue"]["rows_failed"] == 0
    assert all(r["run_id"] == payload["run_id"] for r in rules.values())
    assert runner.invoke(app, ["audit", "-w", ws]).exit_code == 0


# -- crash safety --------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("point", ["silver.before_commit", "silver.before_ledger"])
def test_crash_then_rerun_completes_without_duplicates(lake: Lake, point: str) -> None:
    ingest(
        lake,
        run_id=new_run_id(),
        files=[land(lake, "f1.csv", [sale(f"S{i}") for i in range(8)] + [sale("B", quantity="0")])],
    )
    ws = str(lake.settings.workspace)
    env = {**os.environ, "MEDALLION_FAULT": point}
    crashed = subprocess.run(
        [sys.executable, "-m", "medallion_lakehouse", "silver", "-w", ws],
        env=env,
        capture_output=True,
    )
    assert crashed.returncode == -9
    result = step.run(lake, StepContext(run_id=new_run_id()))
    assert result.status == "ok"
    assert lake.read_arrow("silver/sales_quarantine").num_rows == 1
    assert len(silver_rows(lake)) == 8
    assert_audit_ok(lake)


@pytest.mark.slow
def test_generated_files_conserve_every_record(lake: Lake, tmp_path: Path) -> None:
    gen = pytest.importorskip("medallion_lakehouse.generate")
    rows, invalid, updates, duplicates = 20_000, 0.002, 0.03, 0.01
    options = gen.GenerateOptions(
        rows=rows,
        customers=500,
        seed=11,
        files=3,
        invalid_fraction=invalid,
        update_fraction=updates,
        duplicate_fraction=duplicates,
    )
    gen.generate(options, tmp_path / "gen")
    for f in sorted((tmp_path / "gen").glob("sales_*")):
        ingest_and_run(lake, land(lake, f.name, f))
    report = assert_audit_ok(lake)
    # The generator's own bookkeeping: `rows` distinct sales, of which a share is invalid; every
    # update and exact duplicate is one extra bronze record that silver must supersede.
    assert report.quarantined == round(rows * invalid)
    assert report.current == rows - round(rows * invalid)
    assert report.superseded == round(rows * updates) + round(rows * duplicates)


@pytest.mark.slow
def test_batch_of_new_sale_ids_is_appended_and_a_retry_after_a_crash_rebuilds(lake: Lake) -> None:
    ingest_and_run(lake, land(lake, "f1.csv", [sale("S1"), sale("S2", sale_date="2025-02-01")]))
    # New sale_ids only (one twice in the batch): appended, its months not rewritten.
    f2 = land(lake, "f2.csv", [sale("S3", status="Pending"), sale("S3"), sale("S4")])
    ingest(lake, run_id=new_run_id(), files=[f2])
    run_id = new_run_id()
    result = step.run(lake, StepContext(run_id=run_id))
    assert result.metrics["affected_months"] == ["2025-01"]
    assert lake.history("silver/sales")[0]["operationParameters"]["mode"] == "Append"
    # The rules (row and batch level) checked the batch's three rows; the contract's checks
    # read the two rows the append added, not the month (S1 is in it too).
    checked = {
        (
            q["rule"] in {r.rule.name for r in step.reference.for_lake(lake).resolved},
            q["rows_checked"],
        )
        for q in lake.read_arrow("_meta/quality").to_pylist()
        if q["run_id"] == run_id and q["table"] == "silver/sales"
    }
    assert checked == {(True, 3), (False, 2)}
    assert {k: r["status"] for k, r in silver_rows(lake).items()} == {
        "S1": "completed",
        "S2": "completed",
        "S3": "completed",
        "S4": "completed",
    }
    # A batch killed after its silver append, before its ledger row: the retry finds its
    # sale_ids stored and rebuilds the month (no duplicate), as a full refresh would.
    f3 = land(lake, "f3.csv", [sale("S5"), sale("S6", sale_date="2025-02-03")])
    ingest(lake, run_id=new_run_id(), files=[f3])
    ws = str(lake.settings.workspace)
    crashed = subprocess.run(
        [sys.executable, "-m", "medallion_lakehouse", "silver", "-w", ws],
        env={**os.environ, "MEDALLION_FAULT": "silver.before_ledger"},
        capture_output=True,
    )
    assert crashed.returncode == -9
    assert step.run(lake, StepContext(run_id=new_run_id())).status == "ok"
    assert lake.history("silver/sales")[0]["operationParameters"]["mode"] == "Overwrite"
    incremental = content(lake)
    assert len(incremental) == 6
    assert_audit_ok(lake)
    step.run(lake, StepContext(run_id=new_run_id(), full_refresh=True))
    assert content(lake) == incremental


def test_a_batch_with_two_lineages_stops_silver_before_its_join_repeats_rows() -> None:
    from datetime import UTC, datetime

    from medallion_lakehouse.engines.duckdb_engine import DuckDBEngine
    from medallion_lakehouse.errors import AuditError
    from medallion_lakehouse.silver.step import batch_codes

    when = datetime(2025, 1, 1, tzinfo=UTC)

    def bronze(files: list[str]) -> pa.Table:
        n = len(files)
        return pa.table(
            {
                "_batch_id": ["b1"] * n + ["b2"],
                "_batch_seq": [1] * n + [2],
                "_source_file": [*files, "other.csv"],
                "_ingested_at": [when] * (n + 1),
            }
        )

    with DuckDBEngine() as engine:
        codes = engine.to_arrow(batch_codes(engine, engine.from_arrow(bronze(["a.csv"] * 3))))
        assert sorted(codes.column("_batch_id").to_pylist()) == ["b1", "b2"]
        assert sorted(codes.column("_batch_code").to_pylist()) == [0, 1]
        with pytest.raises(AuditError, match="bronze batch b1 has rows with different lineage"):
            batch_codes(engine, engine.from_arrow(bronze(["a.csv", "renamed.csv"])))


def test_a_batch_above_the_cache_bound_parses_through_a_database_file_to_the_same_silver(
    seed_lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medallion_lakehouse.engines import duckdb_engine

    before = content(seed_lake)
    quarantined = seed_lake.read_arrow("silver/sales_quarantine").num_rows
    attached: list[int] = []
    attach = duckdb_engine.DuckDBEngine._attach_cache_file

    def spy(self: duckdb_engine.DuckDBEngine) -> None:
        attached.append(1)
        attach(self)

    monkeypatch.setattr(duckdb_engine, "CACHE_MEMORY_MAX_ROWS", 10)
    monkeypatch.setattr(duckdb_engine.DuckDBEngine, "_attach_cache_file", spy)
    step.run(seed_lake, StepContext(run_id=new_run_id(), full_refresh=True))
    assert attached  # the seed's 1,000+ rows went over the bound
    assert content(seed_lake) == before
    assert seed_lake.read_arrow("silver/sales_quarantine").num_rows == quarantined
    assert not list((seed_lake.settings.workspace / ".medallion" / "duckdb_cache").iterdir())
    assert_audit_ok(seed_lake)
