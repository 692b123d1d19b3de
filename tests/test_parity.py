"""Engine parity: the same landing files through bronze -> silver -> gold on DuckDB and on Spark
must give the same tables (DESIGN.md section 2: transformations written once, two engines).

Ingestion times differ between the two runs, so `_batch_id` and `_ingested_at` (which embed
them) are left out of the comparison; everything else must match exactly.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from medallion_lakehouse.bronze.ingest import ingest
from medallion_lakehouse.config import load_settings
from medallion_lakehouse.contracts import get_contract
from medallion_lakehouse.engines.base import Engine
from medallion_lakehouse.engines.duckdb_engine import DuckDBEngine
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.pipeline.context import StepContext

pytest.importorskip("pyspark")
from medallion_lakehouse.engines import spark_engine as se

silver_step = pytest.importorskip("medallion_lakehouse.silver.step")
gold_step = pytest.importorskip("medallion_lakehouse.gold.step")

pytestmark = [
    pytest.mark.spark,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("java") is None and not os.environ.get("JAVA_HOME"), reason="no Java"
    ),
]

VOLATILE = {"_batch_id", "_ingested_at"}  # embed the wall-clock time of ingestion
COMPARED = (
    "silver/sales",
    "silver/sales_quarantine",
    "gold/daily_sales",
    "gold/product_store_daily",
)


@pytest.fixture(scope="module")
def spark() -> Iterator[se.SparkEngine]:
    # Same master and conf as tests/test_spark_engine.py, so the session is shared.
    engine = se.SparkEngine(master="local[2]", conf={"spark.sql.shuffle.partitions": "4"})
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """200k sales with every defect the generator knows, in two files (a second, later batch)."""
    from medallion_lakehouse.generate import GenerateOptions, generate

    out = tmp_path_factory.mktemp("generated")
    options = GenerateOptions(
        rows=200_000, files=2, seed=11, start=date(2025, 1, 1), end=date(2025, 12, 31)
    )
    generate(options, out)
    return sorted(p for p in out.iterdir() if not p.name.startswith(("_", ".")))


def run_pipeline(engine: Engine, workspace: Path, batches: list[list[Path]]) -> dict[str, object]:
    """Land each batch of files in turn and run bronze, silver and gold after each."""
    landing = workspace / "data" / "landing"
    landing.mkdir(parents=True)
    settings = load_settings(workspace, engine=engine.name)
    out: dict[str, object] = {}
    with Lake(settings, engine=engine) as lake:
        for i, files in enumerate(batches):
            for f in files:
                shutil.copyfile(f, landing / f.name)
            ctx = StepContext(run_id=f"parity-{i}")
            out[f"bronze_rows_{i}"] = ingest(lake, run_id=ctx.run_id).rows
            silver = silver_step.run(lake, ctx)
            gold = gold_step.run(lake, ctx)
            assert (silver.status, gold.status) == ("ok", "ok"), (silver, gold)
            out[f"silver_out_{i}"] = (silver.rows_out, silver.rows_quarantined)
        for name in COMPARED:
            out[name] = canonical(lake, engine, name)
    return out


def canonical(lake: Lake, engine: Engine, name: str) -> pa.Table:
    """The table in contract types without the volatile columns, sorted by every column."""
    schema = get_contract(name).schema
    keep = [f for f in schema if f.name not in VOLATILE]
    table = engine.to_arrow(lake.read(name))
    arrays = [table.column(f.name).cast(f.type) for f in keep]
    result = pa.Table.from_arrays(arrays, schema=pa.schema(keep))
    return result.sort_by([(f.name, "ascending") for f in keep])


def assert_same(duckdb: dict[str, object], spark: dict[str, object]) -> None:
    assert duckdb.keys() == spark.keys()
    for key in duckdb:
        left, right = duckdb[key], spark[key]
        if isinstance(left, pa.Table):
            assert isinstance(right, pa.Table)
            assert left.num_rows == right.num_rows, key
            assert left.equals(right), f"{key} differs between engines"
        else:
            assert left == right, key


def test_seed_data_gives_the_same_tables_on_both_engines(
    spark: se.SparkEngine, tmp_path: Path, seed_dir: Path
) -> None:
    batches = [[seed_dir / "raw_sales.csv"], [seed_dir / "late_sales.csv"]]
    duck = DuckDBEngine()
    try:
        on_duckdb = run_pipeline(duck, tmp_path / "duckdb", batches)
    finally:
        duck.close()
    on_spark = run_pipeline(spark, tmp_path / "spark", batches)
    assert (on_duckdb["bronze_rows_0"], on_duckdb["bronze_rows_1"]) == (5_000, 500)
    assert_same(on_duckdb, on_spark)


def test_generated_200k_rows_give_the_same_tables_on_both_engines(
    spark: se.SparkEngine, tmp_path: Path, generated: list[Path]
) -> None:
    batches = [[f] for f in generated]
    duck = DuckDBEngine()
    try:
        on_duckdb = run_pipeline(duck, tmp_path / "duckdb", batches)
    finally:
        duck.close()
    on_spark = run_pipeline(spark, tmp_path / "spark", batches)
    quarantined = sum(
        q for k, (_, q) in ((k, v) for k, v in on_duckdb.items() if k.startswith("silver_out"))
    )
    assert quarantined > 0  # the generator injects invalid rows: the comparison covers them
    assert_same(on_duckdb, on_spark)
