"""One lake, two Delta implementations: tables the DuckDB engine commits with delta-rs are read and
continued by the Spark engine (Delta Spark), and the reverse, `_meta` tables included.

A lake whose first batch ran on one engine and whose second batch ran on the other must hold
the same data as a lake that ran both batches on DuckDB; `history` (on either engine) shows the
run and step of every commit, and time travel reads a version the other implementation wrote.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from medallion_lakehouse.bronze.ingest import ingest
from medallion_lakehouse.config import load_settings
from medallion_lakehouse.contracts import all_contracts
from medallion_lakehouse.engines.base import Engine
from medallion_lakehouse.engines.duckdb_engine import DuckDBEngine
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.pipeline.context import StepContext
from medallion_lakehouse.storage.delta import open_table
from tests.test_parity import COMPARED, canonical

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


@pytest.fixture(scope="module")
def spark() -> Iterator[se.SparkEngine]:
    # Same master and conf as tests/test_spark_engine.py, so the session is shared.
    engine = se.SparkEngine(master="local[2]", conf={"spark.sql.shuffle.partitions": "4"})
    yield engine
    engine.close()


def run_batch(engine: Engine, workspace: Path, files: list[Path], run_id: str) -> None:
    landing = workspace / "data" / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copyfile(f, landing / f.name)
    with Lake(load_settings(workspace, engine=engine.name), engine=engine) as lake:
        ctx = StepContext(run_id=run_id)
        ingest(lake, run_id=run_id)
        results = [silver_step.run(lake, ctx), gold_step.run(lake, ctx)]
        assert [r.status for r in results] == ["ok", "ok"], results


def writer(commit: dict[str, object]) -> str:
    """Which Delta implementation made a commit (from its commitInfo)."""
    if str(commit.get("engineInfo", "")).startswith("Apache-Spark"):
        return "delta-spark"
    if str(commit.get("clientVersion", "")).startswith("delta-rs"):
        return "delta-rs"
    return "unknown"


@pytest.mark.parametrize(
    "order", [("duckdb", "spark"), ("spark", "duckdb")], ids=lambda o: "-then-".join(o)
)
def test_a_lake_continued_by_the_other_engine_matches_one_engine(
    spark: se.SparkEngine, tmp_path: Path, seed_dir: Path, order: tuple[str, str]
) -> None:
    first_files, second_files = [seed_dir / "raw_sales.csv"], [seed_dir / "late_sales.csv"]
    duck = DuckDBEngine()
    try:
        reference = tmp_path / "reference"
        run_batch(duck, reference, first_files, "ref-0")
        run_batch(duck, reference, second_files, "ref-1")
        with Lake(load_settings(reference), engine=duck) as lake:
            expected = {name: canonical(lake, duck, name) for name in COMPARED}
    finally:
        duck.close()

    mixed = tmp_path / "mixed"
    engines: dict[str, Engine] = {"spark": spark}
    first = engines.get(order[0]) or DuckDBEngine()
    run_batch(first, mixed, first_files, "mixed-0")
    if first is not spark:
        first.close()
        first = DuckDBEngine()
    settings = load_settings(mixed)
    after_first = {
        name: open_table(settings.table_uri(name)).version()  # type: ignore[union-attr]
        for name in ("silver/sales", "_meta/quality", "_meta/ingested_files")
    }
    with Lake(settings, engine=first) as lake:
        first_silver = canonical(lake, first, "silver/sales")
    if first is not spark:
        first.close()
    second = engines.get(order[1]) or DuckDBEngine()
    run_batch(second, mixed, second_files, "mixed-1")
    if second is not spark:
        second.close()

    duck = DuckDBEngine()
    try:
        for engine in (duck, spark):
            with Lake(load_settings(mixed, engine=engine.name), engine=engine) as lake:
                # The data is the data of one engine's two runs.
                for name in COMPARED:
                    assert canonical(lake, engine, name).equals(expected[name]), (engine.name, name)
                # Time travel to the version the other implementation wrote.
                old = lake.read("silver/sales", version=after_first["silver/sales"])
                table = engine.to_arrow(old)
                keep = first_silver.schema.names
                arrays = [table.column(n).cast(first_silver.schema.field(n).type) for n in keep]
                back = pa.Table.from_arrays(arrays, schema=first_silver.schema)
                assert back.sort_by([(n, "ascending") for n in keep]).equals(first_silver)
                # Every table, _meta included, reads on this engine with commits of both runs.
                for contract in all_contracts():
                    if not lake.exists(contract.name):
                        continue
                    rows = lake.engine.count(lake.read(contract.name))
                    assert rows == lake.read_arrow(contract.name).num_rows, contract.name
                for name, version in after_first.items():
                    commits = lake.history(name)
                    runs = {c.get("run_id") for c in commits}
                    assert {"mixed-0", "mixed-1"} <= runs, (engine.name, name, commits)
                    assert all(c.get("step") for c in commits), (engine.name, name)
                    assert commits[0]["version"] > version
                    assert lake.engine.count(lake.read(name, version=version)) >= 0
    finally:
        duck.close()

    # Both implementations really wrote to the same tables, with one protocol both accept.
    # Arrow from the driver (bronze, _meta rows) is committed by delta-rs on both engines, so
    # only tables Spark computes carry both writers.
    for name in after_first:
        table = open_table(settings.table_uri(name))
        assert table is not None
        writers = {writer(c) for c in table.history()}
        assert writers <= {"delta-rs", "delta-spark"}, (name, writers)
        if name == "silver/sales":
            assert writers == {"delta-rs", "delta-spark"}, (name, writers)
        protocol = table.protocol()
        assert (protocol.min_reader_version, protocol.min_writer_version) == (1, 2), name
