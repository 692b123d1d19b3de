"""Silver gives the same content on DuckDB and on Spark (same bronze, same Ibis expressions)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from medallion_lakehouse.bronze.ingest import ingest
from medallion_lakehouse.config import load_settings
from medallion_lakehouse.engines import Engine, create_engine
from medallion_lakehouse.engines.duckdb_engine import DuckDBEngine
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.pipeline.context import StepContext, new_run_id
from medallion_lakehouse.silver import standardise as std
from medallion_lakehouse.silver import step
from medallion_lakehouse.silver.audit import audit
from medallion_lakehouse.silver.contract import SILVER_QUARANTINE, SILVER_SALES
from tests.conftest import seed_data_dir

pytestmark = [
    pytest.mark.spark,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("java") is None and not os.environ.get("JAVA_HOME"), reason="no Java"
    ),
]

SEED_DIR = seed_data_dir()
SPARK_CONF = {"spark.sql.shuffle.partitions": "4"}


@pytest.fixture(scope="session")
def spark_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One Spark engine (one JVM) for the whole test process."""
    settings = load_settings(
        tmp_path_factory.mktemp("spark"),
        engine="spark",
        spark_master="local[2]",
        spark_conf=SPARK_CONF,
    )
    engine = create_engine(settings)
    yield engine
    engine.close()


def tricky_values() -> pa.Table:
    stores = [
        "NW-7",
        "NW-07",
        "NW007",
        "007-NW",
        "7",
        "nw 007",
        "NW-XX",
        "NW-0",
        "1200-NW",
        "",
        None,
    ]
    dates = [
        "2025-01-15",
        "15/01/2025",
        "01/15/2025",
        "2025/01/15",
        "15-01-2025",
        "Jan 15 2025",
        "15 Jan 2025",
        "2025-02-30",
        "31/02/2025",
        "05/06/2025",
        None,
    ]
    qty = ["1", "3", " 2 ", "2.0", "0", "two", "-1", "", None, "1e3", "+4"]
    amounts = [
        "1190.42",
        "575.75",
        "3306.3999999999996",
        "321.45000000000005",
        "",
        None,
        "abc",
        "100.005",
        "99999999999",
        "100.01",
        "0.10",
    ]
    statuses = [
        "Completed",
        " pending",
        "CANCELED",
        "",
        None,
        "x",
        "Returned",
        "complete",
        "a",
        "b",
        "c",
    ]
    return pa.table(
        {
            "i": pa.array(range(11), pa.int64()),
            "store": pa.array(stores, pa.string()),
            "date": pa.array(dates, pa.string()),
            "qty": pa.array(qty, pa.string()),
            "amount": pa.array(amounts, pa.string()),
            "status": pa.array(statuses, pa.string()),
        }
    )


def standardised(engine: Engine) -> list[dict[str, Any]]:
    t = engine.from_arrow(tricky_values())
    total = std.amount(t.amount, std.TOTAL_TYPE)
    units = std.quantity(t.qty)
    expr = t.select(
        "i",
        store_id=std.store_id(t.store),
        sale_date=std.sale_date(t.date),
        quantity=units,
        price=std.amount(t.amount, std.PRICE_TYPE),
        total=total,
        imputed=std.imputed_price(total, units),
        line=std.line_total(std.amount(t.amount, std.PRICE_TYPE), units),
        status=std.status(t.status),
        product=std.product(t.status),
        hash=std.content_hash(t.store, t.date, units, total),
    ).order_by("i")
    return engine.to_arrow(expr).to_pylist()


def test_standardisation_is_identical_on_both_engines(spark_engine: Engine) -> None:
    with DuckDBEngine() as duck:
        assert standardised(spark_engine) == standardised(duck)


def canonical(lake: Lake, name: str, schema: pa.Schema, key: list[str]) -> pa.Table:
    return (
        lake.read_arrow(name)
        .select(schema.names)
        .cast(schema)
        .sort_by([(k, "ascending") for k in key])
    )


def assert_same_silver(duck_ws: Path, spark_ws: Path) -> None:
    with Lake(load_settings(duck_ws)) as a, Lake(load_settings(spark_ws)) as b:
        for contract, key in (
            (SILVER_SALES, ["sale_id"]),
            (SILVER_QUARANTINE, ["_batch_id", "_source_line"]),
        ):
            schema = contract.schema
            if contract is SILVER_QUARANTINE:
                schema = pa.schema([f for f in schema if f.name != "run_id"])
            left, right = (
                canonical(a, contract.name, schema, key),
                canonical(b, contract.name, schema, key),
            )
            assert left.num_rows == right.num_rows
            assert left.equals(right), f"{contract.name} differs between DuckDB and Spark"
        assert audit(b).violations == []


def parity_by_batches(tmp_path: Path, files: list[Path], spark_engine: Engine) -> None:
    """Ingest file by file and run silver after each on both engines, then compare silver.

    Bronze is engine-independent (Arrow on the driver), so it is ingested once with DuckDB and
    its tables copied to the Spark workspace: both sides see the same batches and lineage, and
    each side's silver runs incrementally on its own previous output.
    """
    duck_ws, spark_ws = tmp_path / "duck", tmp_path / "spark"
    for ws in (duck_ws, spark_ws):
        (ws / "data" / "landing").mkdir(parents=True)
    with Lake(load_settings(duck_ws)) as duck:
        for f in files:
            ingest(duck, run_id=new_run_id(), files=[f])
            for table in ("bronze", "_meta/ingested_files"):
                target = spark_ws / "data" / "lake" / table
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(duck_ws / "data" / "lake" / table, target)
            step.run(duck, StepContext(run_id=new_run_id()))
            with Lake(load_settings(spark_ws, engine="spark"), engine=spark_engine) as spark:
                assert step.run(spark, StepContext(run_id=new_run_id())).status == "ok"
    assert_same_silver(duck_ws, spark_ws)


def test_seed_silver_is_identical_on_both_engines(tmp_path: Path, spark_engine: Engine) -> None:
    parity_by_batches(
        tmp_path, [SEED_DIR / "raw_sales.csv", SEED_DIR / "late_sales.csv"], spark_engine
    )
    with Lake(load_settings(tmp_path / "spark")) as lake:
        assert lake.read_arrow(SILVER_SALES.name).num_rows == 5500


def test_generated_100k_is_identical_on_both_engines(tmp_path: Path, spark_engine: Engine) -> None:
    gen = pytest.importorskip("medallion_lakehouse.generate")
    landing = tmp_path / "gen"
    options = gen.GenerateOptions(
        rows=100_000,
        customers=2_000,
        seed=7,
        files=3,
        late_fraction=0.02,
        update_fraction=0.03,
        duplicate_fraction=0.01,
    )
    gen.generate(options, landing)
    files = sorted(p for p in landing.iterdir() if p.name.startswith("sales_"))
    parity_by_batches(tmp_path, files, spark_engine)
