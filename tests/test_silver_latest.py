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


@pytest.mark.spark
@pytest.mark.slow
@needs_java
def test_latest_agrees_on_spark() -> None:
    from medallion_lakehouse.engines import spark_engine as se

    engine = se.SparkEngine(master="local[2]", conf={"spark.sql.shuffle.partitions": "4"})
    try:
        rows = versions(seed=11)
        assert winners(engine, rows, True) == expected(rows)
    finally:
        engine.close()
