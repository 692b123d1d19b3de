"""Bronze ingest: exact values, idempotence, malformed input, crash safety."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medallion_lakehouse.bronze.contract import SOURCE_COLUMNS
from medallion_lakehouse.bronze.ingest import ingest
from medallion_lakehouse.lake import Lake
from tests.conftest import land

ORIGINAL_COLUMNS = ["sale_date", "store_id", "customer_id", "product", "quantity", "price",
                    "total", "status"]  # fmt: skip


def bronze(lake: Lake) -> list[dict]:
    rows = lake.read_arrow("bronze/sales").to_pylist()
    return sorted(rows, key=lambda r: (r["_source_file"], r["_ingested_at"], r["_source_line"]))


def rejects(lake: Lake) -> list[dict]:
    return lake.read_arrow("bronze/sales_rejects").to_pylist()


def test_seed_file_lands_exactly_as_received(lake: Lake, workspace: Path, seed_dir: Path) -> None:
    land(workspace, seed_dir / "raw_sales.csv")
    result = ingest(lake, run_id="r1")
    assert (result.ingested, result.rows, result.rejects) == (1, 5000, 0)

    with (seed_dir / "raw_sales.csv").open(newline="", encoding="utf-8") as fh:
        expected = list(csv.DictReader(fh))
    rows = bronze(lake)
    assert len(rows) == 5000
    for line, (want, got) in enumerate(zip(expected, rows, strict=True), start=1):
        assert got["_source_line"] == line
        assert {c: got[c] for c in ORIGINAL_COLUMNS} == want
        assert got["sale_id"] is None  # absent column: null, not empty
    noisy = [r["total"] for r in rows if len(r["total"].split(".")[-1]) > 10]
    assert noisy, "float noise such as 321.45000000000005 must be preserved"
    assert sum(r["price"] == "" for r in rows) == 237
    assert sum(r["status"] == "" for r in rows) == 139
    lineage = {(r["_source_file"], r["_batch_id"], r["_source_file_sha256"]) for r in rows}
    assert len(lineage) == 1
    assert lake.history("bronze/sales")[0]["run_id"] == "r1"
    assert lake.history("bronze/sales")[0]["step"] == "bronze"


def test_reingest_is_a_noop_and_late_file_appends(
    lake: Lake, workspace: Path, seed_dir: Path
) -> None:
    land(workspace, seed_dir / "raw_sales.csv")
    ingest(lake, run_id="r1")
    version = lake.version("bronze/sales")

    again = ingest(lake, run_id="r2")
    assert (again.ingested, again.skipped, again.rows) == (0, 1, 0)
    # Untouched since it was ingested: recognised by path, size and mtime, not read again.
    assert (
        again.files[0].reason == "already ingested (same path, size and mtime; --verify re-hashes)"
    )
    assert lake.version("bronze/sales") == version

    land(workspace, seed_dir / "raw_sales.csv", rename="copy_of_raw.csv")  # same bytes
    land(workspace, seed_dir / "late_sales.csv")
    late = ingest(lake, run_id="r3")
    assert {f.source_file: f.status for f in late.files} == {
        "copy_of_raw.csv": "skipped",
        "late_sales.csv": "ingested",
        "raw_sales.csv": "skipped",
    }
    assert len(bronze(lake)) == 5500
    times = {r["_source_file"]: r["_ingested_at"] for r in bronze(lake)}
    assert times["late_sales.csv"] > times["raw_sales.csv"]


def test_changed_file_under_same_name_is_a_new_batch(lake: Lake, workspace: Path) -> None:
    path = workspace / "data" / "landing" / "day.csv"
    path.write_text("sale_id,quantity\nA,1\n")
    ingest(lake, run_id="r1")
    path.write_text("sale_id,quantity\nA,2\n")
    result = ingest(lake, run_id="r2")
    assert result.ingested == 1
    rows = bronze(lake)
    assert [r["quantity"] for r in rows] == ["1", "2"]
    assert len({r["_batch_id"] for r in rows}) == 2


# -- malformed input --------------------------------------------------------------------
HEADER = "sale_date,store_id,customer_id,product,quantity,price,total,status"
GOOD = "2025-01-02,NW-7,c1,Laptop,1,10.5,10.5,Completed"

MALFORMED: dict[str, tuple[bytes, int, int]] = {
    # name: (content, expected bronze rows, expected reject rows)
    "bom": (("\ufeff" + HEADER + "\n" + GOOD + "\n").encode(), 1, 0),
    "crlf": ((HEADER + "\r\n" + GOOD + "\r\n" + GOOD + "\r\n").encode(), 2, 0),
    "quoted_commas": (
        (HEADER + '\n2025-01-02,NW-7,c1,"Laptop, 15"" pro",1,10.5,10.5,Completed\n').encode(),
        1,
        0,
    ),
    "too_many_fields": ((HEADER + "\n" + GOOD + ",extra\n" + GOOD + "\n").encode(), 1, 1),
    "too_few_fields": ((HEADER + "\n2025-01-02,NW-7\n" + GOOD + "\n").encode(), 1, 1),
    "broken_quotes": (
        (HEADER + '\n2025-01-02,NW-7,"c1,Laptop,1,10.5,10.5,Completed\n' + GOOD + "\n").encode(),
        1,
        1,
    ),
    "invalid_utf8": (
        HEADER.encode()
        + b"\n2025-01-02,NW-7,c1,Lap\xfftop,1,10.5,10.5,Completed\n"
        + GOOD.encode()
        + b"\n",
        1,
        1,
    ),
    "blank_lines": ((HEADER + "\n" + GOOD + "\n\n" + GOOD + "\n").encode(), 2, 1),
    "no_trailing_newline": ((HEADER + "\n" + GOOD + "\n" + GOOD).encode(), 2, 0),
    "extra_column": ((HEADER + ",channel\n" + GOOD + ",web\n").encode(), 1, 0),
    "column_order": (
        b"status,total,price,quantity,product,customer_id,store_id,sale_date\n"
        b"Completed,10.5,10.5,1,Laptop,c1,NW-7,2025-01-02\n",
        1,
        0,
    ),
    "header_only": ((HEADER + "\n").encode(), 0, 0),
    "empty": (b"", 0, 0),
}


def _physical_data_lines(content: bytes) -> int:
    lines = content.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return max(len(lines) - 1, 0)


@pytest.mark.parametrize("name", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_file_never_crashes_and_every_line_is_accounted(
    lake: Lake, workspace: Path, name: str
) -> None:
    content, want_rows, want_rejects = MALFORMED[name]
    (workspace / "data" / "landing" / f"{name}.csv").write_bytes(content)
    result = ingest(lake, run_id="r1")
    assert result.files[0].status == "ingested", result.files[0].reason
    assert (result.rows, result.rejects) == (want_rows, want_rejects)
    assert len(bronze(lake)) + len(rejects(lake)) == _physical_data_lines(content)
    lines = sorted(
        [r["_source_line"] for r in bronze(lake)] + [r["_source_line"] for r in rejects(lake)]
    )
    assert lines == list(range(1, _physical_data_lines(content) + 1))
    marker = lake.read_arrow("_meta/ingested_files").to_pylist()
    assert [(m["rows"], m["rejects"]) for m in marker] == [(want_rows, want_rejects)]


def test_malformed_values_are_kept_exactly(lake: Lake, workspace: Path) -> None:
    for name in ("bom", "quoted_commas", "extra_column", "column_order", "crlf"):
        (workspace / "data" / "landing" / f"{name}.csv").write_bytes(MALFORMED[name][0])
    ingest(lake, run_id="r1")
    by_file = {}
    for row in bronze(lake):
        by_file.setdefault(row["_source_file"], row)
    expected = dict(zip(ORIGINAL_COLUMNS, GOOD.split(","), strict=True))
    for name in ("bom", "column_order", "crlf", "extra_column"):
        assert {c: by_file[f"{name}.csv"][c] for c in ORIGINAL_COLUMNS} == expected, name
    assert by_file["quoted_commas.csv"]["product"] == 'Laptop, 15" pro'
    assert json.loads(by_file["extra_column.csv"]["_rescued_data"]) == {"channel": "web"}
    assert by_file["bom.csv"]["_rescued_data"] is None


def test_reject_rows_carry_file_line_text_and_error(lake: Lake, workspace: Path) -> None:
    (workspace / "data" / "landing" / "bad.csv").write_bytes(MALFORMED["too_many_fields"][0])
    ingest(lake, run_id="r1")
    [reject] = rejects(lake)
    assert reject["_source_file"] == "bad.csv"
    assert reject["_source_line"] == 1
    assert reject["raw_line"] == GOOD + ",extra"
    assert reject["error"] == "expected 8 fields, found 9"


def test_unreadable_files_are_reported_and_the_rest_lands(
    lake: Lake, workspace: Path, seed_dir: Path
) -> None:
    landing = workspace / "data" / "landing"
    (landing / "a_binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10)
    (landing / "b_fake.parquet").write_bytes(b"not parquet at all")
    land(workspace, seed_dir / "late_sales.csv")
    vanished = landing / "c_vanished.csv"
    files = sorted(landing.iterdir()) + [vanished]
    result = ingest(lake, run_id="r1", files=files)
    status = {f.source_file: (f.status, f.reason) for f in result.files}
    assert status["a_binary.csv"][0] == "failed" and "binary" in status["a_binary.csv"][1]
    assert status["b_fake.parquet"][0] == "failed" and "Parquet" in status["b_fake.parquet"][1]
    assert status["c_vanished.csv"][0] == "failed" and "cannot read" in status["c_vanished.csv"][1]
    assert status["late_sales.csv"] == ("ingested", None)
    assert len(bronze(lake)) == 500
    # Failed files are not marked ingested, so a fixed file is picked up next time.
    assert {m["source_file"] for m in lake.read_arrow("_meta/ingested_files").to_pylist()} == {
        "late_sales.csv"
    }


def test_jsonl_and_parquet_keep_values_as_strings(lake: Lake, workspace: Path) -> None:
    landing = workspace / "data" / "landing"
    (landing / "a.jsonl").write_text(
        '{"sale_id": "S1", "quantity": 2, "total": 321.45000000000005, "promo": true}\n'
        "not json\n"
        '{"sale_id": "S2", "quantity": "x", "price": null}\n'
    )
    pq.write_table(
        pa.table({"sale_id": ["P1"], "quantity": pa.array([3], pa.int64()), "note": ["hi"]}),
        landing / "b.parquet",
    )
    result = ingest(lake, run_id="r1")
    assert [(f.rows, f.rejects) for f in result.files] == [(2, 1), (1, 0)]
    rows = {r["sale_id"]: r for r in bronze(lake)}
    assert rows["S1"]["quantity"] == "2"
    assert rows["S1"]["total"] == "321.45000000000005"
    assert json.loads(rows["S1"]["_rescued_data"]) == {"promo": "true"}
    assert rows["S2"]["quantity"] == "x" and rows["S2"]["price"] is None
    assert rows["P1"]["quantity"] == "3"
    assert json.loads(rows["P1"]["_rescued_data"]) == {"note": "hi"}
    assert rejects(lake)[0]["_source_line"] == 2


# -- crash safety -------------------------------------------------------------------------
def _ingest_subprocess(workspace: Path, fault: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDALLION_")}
    if fault:
        env["MEDALLION_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "medallion_lakehouse", "ingest", "--workspace", str(workspace)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["bronze.before_commit", "bronze.before_marker"])
def test_crash_mid_ingest_leaves_previous_version_and_next_run_completes(
    lake: Lake, workspace: Path, seed_dir: Path, fault: str
) -> None:
    land(workspace, seed_dir / "raw_sales.csv")
    assert _ingest_subprocess(workspace, None).returncode == 0
    before = lake.version("bronze/sales")
    land(workspace, seed_dir / "late_sales.csv")

    crashed = _ingest_subprocess(workspace, fault)
    assert crashed.returncode == -9, crashed.stderr
    if fault == "bronze.before_commit":
        assert lake.version("bronze/sales") == before  # data files written, never committed
    assert len(bronze(lake)) in (5000, 5500)  # readable at a committed version

    done = _ingest_subprocess(workspace, None)
    assert done.returncode == 0, done.stderr
    rows = bronze(lake)
    assert len(rows) == 5500
    assert len({(r["_source_file"], r["_source_line"]) for r in rows}) == 5500
    assert len(lake.read_arrow("_meta/ingested_files")) == 2


def test_cli_ingest_json_and_exit_codes(cli, workspace: Path, seed_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from medallion_lakehouse.cli.main import app

    land(workspace, seed_dir / "late_sales.csv")
    out = cli.invoke(app, ["ingest", "--workspace", str(workspace), "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert (summary["ingested"], summary["rows"]) == (1, 500)

    (workspace / "data" / "landing" / "z.csv").write_bytes(b"\x00\x01binary")
    out = cli.invoke(app, ["ingest", "--workspace", str(workspace)])
    assert out.exit_code == 1
    assert "binary" in out.output


def test_source_columns_contract_matches_design() -> None:
    assert ("sale_id", *ORIGINAL_COLUMNS) == SOURCE_COLUMNS
