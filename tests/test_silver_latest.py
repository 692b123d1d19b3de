"""`transform.latest`: one row per sale_id, the newest version, on both engines.

Sales with one version and sales with several, across batches, lines and priorities, checked
against the newest version computed here in Python, on DuckDB and on Spark.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from medallion_lakehouse.engines.base import Engine
from medallion_lakehouse.engines.duckdb_engine import DuckDBEngine
from medallion_lakehouse.silver import transform
from medallion_lakehouse.silver.contract import SILVER_SALES
from tests.test_spark_engine import needs_java

WHEN = datetime(2025, 1, 1, tzinfo=UTC)


def versions(seed: int = 3) -> list[dict[str, Any]]:
    """300 sales: most with one version, some with up to four across batches, lines and
    priorities (a stored row, priority 0, beside the fresh copy of the same line, priority 1)."""
    rng = random.Random(seed)
    rows = []
    for i in range(300):
        count = 1 if i % 3 else rng.randint(2, 4)
        picks = rng.sample(
            [(s, line, p) for s in (1, 2, 3) for line in (5, 9) for p in (0, 1)], count
        )
        for seq, line, priority in picks:
            rows.append(
                {
                    "sale_id": f"S-{i}",
                    "sale_date": date(2025, 1, 1 + i % 28),
                    "sale_month": "2025-01",
                    "store_id": "NW-001",
                    "customer_id": "C-1",
                    "product": "Laptop",
                    "quantity": 1,
                    "unit_price": Decimal("1.00"),
                    "total": Decimal("1.00"),
                    "status": f"v{seq}.{line}.{priority}",  # names the version
                    "is_late": False,
                    "price_imputed": False,
                    "total_recomputed": False,
                    "_batch_id": f"b{seq}",
                    "_batch_seq": seq,
                    "_source_file": f"f{seq}.csv",
                    "_source_line": line,
                    "_ingested_at": WHEN.replace(hour=seq),
                    transform.PRIORITY: priority,
                }
            )
    return rows


def expected(rows: list[dict[str, Any]]) -> dict[str, str]:
    best: dict[str, tuple[tuple[int, int, int], str]] = {}
    for r in rows:
        key = (r["_batch_seq"], r["_source_line"], r[transform.PRIORITY])
        if r["sale_id"] not in best or key > best[r["sale_id"]][0]:
            best[r["sale_id"]] = (key, r["status"])
    return {sale: status for sale, (_, status) in best.items()}


def table_of(rows: list[dict[str, Any]]) -> pa.Table:
    schema = SILVER_SALES.schema.append(pa.field(transform.PRIORITY, pa.int8()))
    return pa.Table.from_pylist(rows, schema=schema)


def winners(engine: Engine, rows: list[dict[str, Any]], sequenced: bool) -> dict[str, str]:
    got = engine.to_arrow(
        transform.latest(engine.from_arrow(table_of(rows)), transform.version_order(sequenced))
    )
    assert got.schema.names == SILVER_SALES.column_names
    ids = got.column("sale_id").to_pylist()
    assert len(ids) == len(set(ids)), "one row per sale_id"
    return dict(zip(ids, got.column("status").to_pylist(), strict=True))


@pytest.fixture
def duck() -> Iterator[DuckDBEngine]:
    engine = DuckDBEngine()
    yield engine
    engine.close()


@pytest.mark.parametrize("sequenced", [True, False])
def test_latest_keeps_the_newest_version_of_each_sale(duck: DuckDBEngine, sequenced: bool) -> None:
    rows = versions()
    assert len(rows) > 300 and len({r["sale_id"] for r in rows}) == 300
    assert winners(duck, rows, sequenced) == expected(rows)


def test_latest_with_no_repeated_id_returns_every_row(duck: DuckDBEngine) -> None:
    rows = [r for r in versions() if r["sale_id"] in {f"S-{i}" for i in range(1, 300, 3)}]
    rows = list({r["sale_id"]: r for r in rows}.values())
    assert winners(duck, rows, True) == {r["sale_id"]: r["status"] for r in rows}


@pytest.fixture
def spark() -> Iterator[Engine]:
    from medallion_lakehouse.engines import spark_engine as se

    engine = se.SparkEngine(master="local[2]", conf={"spark.sql.shuffle.partitions": "4"})
    yield engine
    engine.close()


@pytest.mark.spark
@pytest.mark.slow
@needs_java
def test_latest_agrees_on_spark(spark: Engine) -> None:
    rows = versions(seed=11)
    assert winners(spark, rows, True) == expected(rows)


# -- the first load's path: the replaced rows picked from narrow columns ---------------------
def lineage(seqs: list[int | None]) -> pa.Table:
    """One bronze lineage row per batch, in the order given (not the batch order)."""
    return pa.table(
        {
            "_batch_id": [f"b{i}" for i in range(len(seqs))],
            "_batch_seq": pa.array(seqs, pa.int64()),
            "_source_file": [f"f{i}.csv" for i in range(len(seqs))],
            "_ingested_at": [WHEN.replace(hour=len(seqs) - i) for i in range(len(seqs))],
        }
    )


def test_batch_codes_follow_the_lake_batch_order(duck: DuckDBEngine) -> None:
    # Sequence first (older lakes' batches without one first), then time, then id.
    table = lineage([3, None, 1, 2, None])
    got = duck.to_arrow(transform.batch_lineage(duck.from_arrow(table))).to_pylist()
    by_code = [r["_batch_id"] for r in sorted(got, key=lambda r: r[transform.BATCH_CODE])]
    # b1 and b4 have no sequence; b4 was ingested earlier (hour 1 against hour 4).
    assert by_code == ["b4", "b1", "b2", "b3", "b0"]


def narrowed_rows(seed: int) -> tuple[pa.Table, pa.Table, dict[str, tuple[int, int]]]:
    """Narrow rows of five sequenced batches (listed out of order), some sale keys repeated
    within and across batches, some rows broken (a drop rule); and per key the (seq, line) of
    its newest valid version."""
    rng = random.Random(seed)
    seqs = [4, 2, 5, 1, 3]
    rows: list[dict[str, Any]] = []
    for i in range(400):
        key = f"h-{i}"
        for _ in range(1 if i % 4 else rng.randint(2, 5)):
            batch = rng.randrange(len(seqs))
            line = rng.randint(1, 50)
            broken = rng.random() < 0.15
            rows.append(
                {
                    "p_sale_key": key,
                    "_batch_id": f"b{batch}",
                    "_source_line": line,
                    "_drop_rule": "quantity_positive" if broken else None,
                }
            )
    # One line is one row: drop repeats of (batch, line).
    unique = list({(r["_batch_id"], r["_source_line"]): r for r in rows}.values())
    newest: dict[str, tuple[int, int]] = {}
    for r in unique:
        version = (seqs[int(r["_batch_id"][1:])], r["_source_line"])
        if r["_drop_rule"] is None and version > newest.get(r["p_sale_key"], (0, 0)):
            newest[r["p_sale_key"]] = version
    return pa.Table.from_pylist(unique), lineage(seqs), newest


def latest_of_narrowed(engine: Engine, seed: int) -> None:
    rows, batches_table, newest = narrowed_rows(seed)
    batches = transform.batch_lineage(engine.from_arrow(batches_table))
    narrowed = engine.from_arrow(rows).inner_join(
        batches.select("_batch_id", transform.BATCH_CODE), "_batch_id"
    )
    narrowed = narrowed.select("p_sale_key", transform.BATCH_CODE, "_source_line", "_drop_rule")
    kept = transform.without(narrowed, transform.superseded(narrowed))
    widened = kept.inner_join(batches, transform.BATCH_CODE)
    got = engine.to_arrow(widened.select("p_sale_key", "_batch_seq", "_source_line", "_drop_rule"))
    valid = [r for r in got.to_pylist() if r["_drop_rule"] is None]
    assert sorted(r["p_sale_key"] for r in valid) == sorted(newest), "one valid row per key"
    assert {r["p_sale_key"]: (r["_batch_seq"], r["_source_line"]) for r in valid} == newest
    # A broken row neither replaces a valid one nor is dropped (the quarantine takes it).
    broken = rows.filter(pc.is_valid(rows.column("_drop_rule"))).num_rows
    assert broken > 0 and got.num_rows - len(valid) == broken


def test_superseded_rows_leave_the_newest_valid_version(duck: DuckDBEngine) -> None:
    latest_of_narrowed(duck, seed=5)


@pytest.mark.spark
@pytest.mark.slow
@needs_java
def test_superseded_agrees_on_spark(spark: Engine) -> None:
    latest_of_narrowed(spark, seed=13)
