"""The Spark engine against a real standalone cluster: executors in their own JVMs.

`scripts/spark_cluster.sh` starts a master and one worker on loopback; the driver (this process)
and the executor share the local filesystem, as a cluster shares an object store.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from medallion_lakehouse.bronze.contract import BRONZE_SALES
from medallion_lakehouse.bronze.ingest import ingest
from medallion_lakehouse.config import Settings
from medallion_lakehouse.engines.duckdb_engine import DuckDBEngine
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.storage.delta import CommitInfo, WriteSpec, history

pytest.importorskip("pyspark")
from medallion_lakehouse.engines import spark_engine as se
from medallion_lakehouse.engines.spark_session import jars_dir

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.spark,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("java") is None and not os.environ.get("JAVA_HOME"), reason="no Java"
    ),
]

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "spark_cluster.sh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A master + one worker (1 core, 1 GiB) on free loopback ports; yields the master URL."""
    port = free_port()
    env = {
        **os.environ,
        "SPARK_CLUSTER_DIR": str(tmp_path_factory.mktemp("spark-cluster")),
        "SPARK_MASTER_PORT": str(port),
        "SPARK_MASTER_WEBUI_PORT": str(free_port()),
        "SPARK_WORKER_WEBUI_PORT": str(free_port()),
        "PYTHON": sys.executable,  # the worker's executors run this process's Python
        "SPARK_CLUSTER_WAIT": "180",
    }

    def script(action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SCRIPT), action], env=env, capture_output=True, text=True, timeout=300
        )

    started = script("start")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        status = script("status")
        assert "alive workers: 1" in status.stdout, status.stdout
        yield f"spark://127.0.0.1:{port}"
    finally:
        se.stop_spark()  # the driver first, so the worker is not left with a dead application
        stopped = script("stop")
        assert stopped.returncode == 0, stopped.stderr
        assert script("status").returncode == 3  # both daemons are gone


@pytest.fixture(scope="module")
def engine(cluster: str) -> Iterator[se.SparkEngine]:
    spark = se.SparkEngine(
        master=cluster,
        conf={"spark.executor.memory": "512m", "spark.cores.max": "1", "spark.driver.memory": "1g"},
    )
    yield spark
    spark.close()


def test_executors_run_in_their_own_jvm_with_our_python(engine: se.SparkEngine) -> None:
    context = engine.session.sparkContext
    assert context.master.startswith("spark://127.0.0.1:")
    # A job needs an executor, so once it ran the executor has registered (asynchronously).
    pythons = context.parallelize(range(4), 2).map(lambda _: sys.executable).distinct().collect()
    assert pythons == [sys.executable]
    # getExecutorMemoryStatus lists the driver plus each executor's block manager.
    assert context._jsc.sc().getExecutorMemoryStatus().size() >= 2


def test_bronze_write_read_round_trip_on_the_cluster(
    engine: se.SparkEngine, settings: Settings, workspace: Path, seed_dir: Path
) -> None:
    shutil.copyfile(seed_dir / "raw_sales.csv", workspace / "data" / "landing" / "raw_sales.csv")
    spark_settings = settings.model_copy(update={"engine": "spark", "spark_master": engine.master})
    with Lake(spark_settings, engine=engine) as lake:
        assert ingest(lake, run_id="r1").rows == 5_000
        bronze = lake.read(BRONZE_SALES.name)
        assert engine.count(bronze) == 5_000
        # Bronze came from the driver as Arrow and was committed by delta-rs, with the run's
        # metadata where Delta Spark's history shows it.
        commits = lake.history(BRONZE_SALES.name)
        assert commits[0]["run_id"] == "r1" and commits[0].get("step"), commits[0]
        # A computed table, written by the executor, committed by Delta Spark.
        derived = bronze.select(
            "_batch_id",
            "_source_line",
            "store_id",
            store_len=bronze.store_id.length().cast("int64"),
        )
        schema = pa.schema(
            [
                ("_batch_id", pa.string()),
                ("_source_line", pa.int64()),
                ("store_id", pa.string()),
                ("store_len", pa.int64()),
            ]
        )
        uri = str(workspace / "derived")
        result = engine.write_delta(
            derived,
            uri,
            WriteSpec(
                schema=schema, commit=CommitInfo("r1", "cluster-test"), partition_by=["store_len"]
            ),
        )
        assert result.rows == 5_000
        on_spark = engine.to_arrow(engine.read_delta(uri, schema=schema))

    duck = DuckDBEngine()
    try:
        raw = duck.read_delta(
            spark_settings.table_uri(BRONZE_SALES.name), schema=BRONZE_SALES.schema
        )
        expected = duck.to_arrow(
            raw.select(
                "_batch_id",
                "_source_line",
                "store_id",
                store_len=raw.store_id.length().cast("int64"),
            )
        )
        on_duckdb = duck.to_arrow(duck.read_delta(uri, schema=schema))
    finally:
        duck.close()

    def canon(t: pa.Table) -> pa.Table:
        t = pa.Table.from_arrays([t.column(f.name).cast(f.type) for f in schema], schema=schema)
        return t.sort_by([("_batch_id", "ascending"), ("_source_line", "ascending")])

    assert canon(on_spark).equals(canon(expected))
    assert canon(on_duckdb).equals(canon(expected))
    assert history(uri)[0]["step"] == "cluster-test"
    assert history(uri)[0]["engineInfo"].startswith("Apache-Spark")
    # The jars came from build/spark-jars as local: URIs (no 0.5 GB copy to each executor).
    if jars_dir() is not None:
        assert engine.session.conf.get("spark.jars", "").startswith("local:")
