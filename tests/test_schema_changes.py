"""Issue 19: a batch whose columns differ from its source's previous batch is a schema-change
event in `_meta/schema_changes`, shown by `medallion status` and the report.

The comparison is pure (`compare`, `detect`); the rest runs the real ingest on real Delta
tables, on both engines (Spark cases are `slow`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake
from typer.testing import CliRunner

from medallion_lakehouse.bronze.ingest import ingest
from medallion_lakehouse.bronze.schema_changes import LedgerFile, compare, detect, source_of
from medallion_lakehouse.cli.main import app
from medallion_lakehouse.config import load_settings
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.meta import INGESTED_FILES, SCHEMA_CHANGES
from tests.test_rules_config import ENGINES, _clean_env, spark_engine  # noqa: F401

HEADER = "sale_date,store_id,customer_id,product,quantity,price,total,status"
ROW = "2025-03-01,NW-1,C1,Laptop,1,900.00,900.00,completed"
ALIASES = {"quantity": ["qty"], "sale_date": ["date", "order_date"]}


# -- the comparison -------------------------------------------------------------------------------
def test_a_removed_column_with_an_added_alias_of_it_is_a_rename() -> None:
    before = HEADER.split(",")
    after = [c if c != "quantity" else "Qty" for c in before] + ["channel"]
    assert compare(before, after, ALIASES) == (("channel",), (), (("quantity", "Qty", "quantity"),))
    # Without the alias the same headers are one column removed and two added.
    assert compare(before, after, {}) == (("Qty", "channel"), ("quantity",), ())


def test_two_aliases_of_one_column_are_a_rename_too() -> None:
    before = ["date", "quantity"]
    assert compare(before, ["order_date", "quantity"], ALIASES) == (
        (),
        (),
        (("date", "order_date", "sale_date"),),
    )


def test_case_spaces_order_and_repeats_are_no_change() -> None:
    before = HEADER.split(",")
    after = [f" {c.upper()} " for c in reversed(before)] + ["STATUS"]
    assert compare(before, after, ALIASES) == ((), (), ())


def test_detect_compares_each_batch_with_its_own_folder_in_batch_order() -> None:
    files = [
        LedgerFile("pos/3.csv", "b3", 3, ("a", "c")),
        LedgerFile("web/2.csv", "b2", 2, ("x",)),  # another source: never compared with pos
        LedgerFile("pos/1.csv", "b1", 1, ("a", "b")),
        LedgerFile("pos/4.csv", "b4", 4, None),  # unknown columns: skipped, not "all removed"
        LedgerFile("pos/5.csv", "b5", 5, ("a", "c")),
        LedgerFile("top.csv", "b6", 6, ("a",)),
    ]
    found = detect(files, {})
    assert [(c.batch_id, c.previous_batch_id, c.added, c.removed) for c in found] == [
        ("b3", "b1", ("c",), ("b",))
    ]
    assert source_of("top.csv") == "." and source_of("pos/deep/x.csv") == "pos/deep"


# -- on a real lake -------------------------------------------------------------------------------
def _workspace(ws: Path, toml: str = "") -> Path:
    (ws / "data" / "landing" / "pos").mkdir(parents=True)
    (ws / "medallion.toml").write_text(toml)
    return ws


def _land(ws: Path, name: str, header: str) -> None:
    # The file's name in its row: files with equal bytes would be one file (the same sha256).
    (ws / "data" / "landing" / name).write_text(f"{header}\n{ROW.replace('C1', name)}\n")


def _ingest(ws: Path, engine: Any) -> list[str]:
    with Lake(load_settings(ws, engine=engine.name if engine else None), engine=engine) as lake:
        return ingest(lake, run_id=f"t-{len(list(ws.rglob('*.csv')))}").schema_changes


def _recorded(ws: Path) -> list[dict[str, Any]]:
    table = DeltaTable(str(ws / "data" / "lake" / "_meta" / "schema_changes"))
    return sorted(table.to_pyarrow_table().to_pylist(), key=lambda r: r["seq"])


@pytest.mark.parametrize("engine_name", ENGINES)
def test_a_renamed_and_an_added_column_are_recorded_once(
    tmp_path: Path, engine_name: str, request: pytest.FixtureRequest
) -> None:
    engine = request.getfixturevalue("spark_engine") if engine_name == "spark" else None
    ws = _workspace(tmp_path / "ws", '[columns]\nquantity = ["qty"]\n')
    _land(ws, "pos/1.csv", HEADER)
    assert _ingest(ws, engine) == []  # the first batch of a source is its baseline
    _land(ws, "pos/2.csv", HEADER.replace("quantity", "qty") + ",channel")
    _land(ws, "other.csv", "sale_date,product")  # a source of its own: no event
    said = _ingest(ws, engine)
    assert said == ["pos/2.csv: renamed quantity -> qty; added channel (against pos/1.csv)"]
    [event] = _recorded(ws)
    assert (event["source"], event["source_file"], event["previous_file"]) == (
        "pos",
        "pos/2.csv",
        "pos/1.csv",
    )
    assert json.loads(event["added"]) == ["channel"] and json.loads(event["removed"]) == []
    assert json.loads(event["renamed"]) == [{"from": "quantity", "to": "qty", "column": "quantity"}]
    assert _ingest(ws, engine) == [] and len(_recorded(ws)) == 1  # a rerun adds nothing


def test_a_lost_table_is_rebuilt_from_the_ledger(tmp_path: Path) -> None:
    ws = _workspace(tmp_path / "ws")
    _land(ws, "pos/1.csv", HEADER)
    _land(ws, "pos/2.csv", HEADER.replace(",status", ""))
    assert len(_ingest(ws, None)) == 1
    shutil.rmtree(ws / "data" / "lake" / "_meta" / "schema_changes")
    assert _ingest(ws, None) == ["pos/2.csv: removed status (against pos/1.csv)"]
    assert len(_recorded(ws)) == 1


def test_jsonl_and_parquet_record_their_columns(tmp_path: Path) -> None:
    ws = _workspace(tmp_path / "ws")
    landing = ws / "data" / "landing"
    (landing / "pos" / "1.jsonl").write_text(
        '{"sale_date": "2025-03-01", "product": "Laptop"}\n{"product": "Laptop", "qty": "2"}\n'
    )
    pq.write_table(
        pa.table({"Sale_Date": ["2025-03-02"], "product": ["Laptop"]}), landing / "2.parquet"
    )
    _ingest(ws, None)
    ledger = DeltaTable(str(ws / "data" / "lake" / "_meta" / "ingested_files")).to_pyarrow_table()
    columns = {r["source_file"]: json.loads(r["columns"]) for r in ledger.to_pylist()}
    assert columns == {
        "pos/1.jsonl": ["sale_date", "product", "qty"],
        "2.parquet": ["Sale_Date", "product"],
    }


def test_a_ledger_from_before_the_columns_column_gains_it(tmp_path: Path) -> None:
    """An older lake's ledger has no `columns`: its files are no baseline, new files are."""
    ws = _workspace(tmp_path / "ws")
    _land(ws, "pos/1.csv", HEADER)
    _ingest(ws, None)
    uri = str(ws / "data" / "lake" / "_meta" / "ingested_files")
    old = DeltaTable(uri).to_pyarrow_table().drop_columns(["columns"])
    write_deltalake(uri, old, mode="overwrite", schema_mode="overwrite")
    assert "columns" not in pa.schema(DeltaTable(uri).schema().to_arrow()).names
    _land(ws, "pos/2.csv", HEADER + ",channel")
    _land(ws, "pos/3.csv", HEADER)
    assert _ingest(ws, None) == ["pos/3.csv: removed channel (against pos/2.csv)"]
    names = pa.schema(DeltaTable(uri).schema().to_arrow()).names
    assert names == INGESTED_FILES.column_names


def test_status_and_report_show_the_change(tmp_path: Path) -> None:
    ws = _workspace(tmp_path / "ws")
    _land(ws, "pos/1.csv", HEADER)
    _land(ws, "pos/2.csv", HEADER.replace("customer_id", "<b>customer</b>"))
    runner = CliRunner()
    assert runner.invoke(app, ["run", "-w", str(ws), "--steps", "bronze"]).exit_code == 0
    status = json.loads(runner.invoke(app, ["status", "-w", str(ws), "--json"]).stdout)
    [change] = status["schema_changes"]
    assert change["added"] == ["<b>customer</b>"] and change["removed"] == ["customer_id"]
    text = runner.invoke(app, ["status", "-w", str(ws)]).stdout
    assert "schema change pos/2.csv: added <b>customer</b>; removed customer_id" in text
    result = runner.invoke(app, ["report", "-w", str(ws)])
    assert result.exit_code == 0, result.stdout
    html = (ws / "data" / "reports" / "report.html").read_text()
    section = html[html.index('id="section-schema"') :]
    section = section[: section.index("</section>")]
    assert "added &lt;b&gt;customer&lt;/b&gt;; removed customer_id" in section  # escaped
    assert "<b>customer</b>" not in section
    assert any(t["name"] == SCHEMA_CHANGES.name and t["rows"] == 1 for t in status["tables"])
