"""The whole pipeline on an object store, on each engine: moto's S3 server on loopback, an
`s3://` lake for DuckDB (delta-rs) and the same lake as `s3a://` for Spark (Delta Spark over
hadoop-aws). Both give the same tables, and the one-writer lease holds while Spark writes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medallion_lakehouse.config import load_settings
from medallion_lakehouse.engines.duckdb_engine import DuckDBEngine
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.pipeline.lock import read_holder
from medallion_lakehouse.storage.delta import open_table
from tests.conftest import MotoS3, seed_data_dir
from tests.test_lock_object_store import _env, make_workspace
from tests.test_parity import COMPARED, canonical

pytest.importorskip("pyspark")

pytestmark = [
    pytest.mark.s3,
    pytest.mark.spark,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("java") is None and not os.environ.get("JAVA_HOME"), reason="no Java"
    ),
]

RUN = [sys.executable, "-m", "medallion_lakehouse", "run", "--steps", "bronze,silver,gold"]
SPARK = ["--engine", "spark", "--spark-master", "local[2]"]
SPARK_CONF = ["--spark-conf", "spark.sql.shuffle.partitions=4"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("MEDALLION_", "AWS_")) and key != "MEDALLION_SEED_DATA":
            monkeypatch.delenv(key)


def _workspace(root: Path, moto_s3: MotoS3, lake: str) -> Path:
    ws = make_workspace(root, lake, moto_s3.storage_options, lock_lease_seconds=5)
    for name in ("raw_sales.csv", "late_sales.csv"):
        shutil.copyfile(seed_data_dir() / name, ws / "data" / "landing" / name)
    return ws


def _run(ws: Path, *args: str, timeout: float = 600) -> dict[str, object]:
    proc = subprocess.run(
        [*RUN, "--json", "-w", str(ws), *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report: dict[str, object] = json.loads(proc.stdout)
    return report


def test_both_engines_run_the_pipeline_on_s3_with_equal_results(
    tmp_path: Path, moto_s3: MotoS3, s3_lake: str
) -> None:
    on_duckdb = _workspace(tmp_path / "duckdb", moto_s3, f"{s3_lake}/duckdb")
    on_spark = _workspace(tmp_path / "spark", moto_s3, f"{s3_lake}/spark")
    reports = {"duckdb": _run(on_duckdb), "spark": _run(on_spark, *SPARK, *SPARK_CONF)}
    for name, report in reports.items():
        steps = report["steps"]
        assert isinstance(steps, list)
        assert [s["status"] for s in steps] == ["ok", "ok", "ok"], (name, report)
        assert steps[0]["rows_out"] == 5_500, name

    tables = {}
    for name, ws in (("duckdb", on_duckdb), ("spark", on_spark)):
        settings = load_settings(ws)
        assert settings.lake_path.startswith("s3://")
        engine = DuckDBEngine(settings.storage_options)
        try:
            with Lake(settings, engine=engine) as lake:
                tables[name] = {t: canonical(lake, engine, t) for t in COMPARED}
                assert read_holder(settings) is None  # the lease was released
        finally:
            engine.close()
    for table in COMPARED:
        assert tables["spark"][table].num_rows > 0 or table == "silver/sales_quarantine"
        assert tables["spark"][table].equals(tables["duckdb"][table]), table

    # The Spark lake's silver was committed by Delta Spark through s3a:// (gold's small results
    # come to the driver as Arrow, which delta-rs commits).
    settings = load_settings(on_spark)
    for table in ("silver/sales",):
        delta_table = open_table(
            settings.table_uri(table), storage_options=settings.storage_options
        )
        assert delta_table is not None
        engines = {str(c.get("engineInfo", "")) for c in delta_table.history()}
        assert any(e.startswith("Apache-Spark") for e in engines), (table, engines)


def test_the_lease_holds_while_spark_writes_to_s3(
    tmp_path: Path, moto_s3: MotoS3, s3_lake: str
) -> None:
    """A Spark run holds the lake's lease on the store: a second workspace is refused (75)."""
    ws_spark = _workspace(tmp_path / "spark", moto_s3, s3_lake)
    ws_other = make_workspace(tmp_path / "other", s3_lake, moto_s3.storage_options)
    proc = subprocess.Popen(
        [*RUN, "--json", "-w", str(ws_spark), *SPARK, *SPARK_CONF],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        deadline = time.monotonic() + 120
        while read_holder(load_settings(ws_spark)) is None:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the Spark run never took the lease"
            time.sleep(0.2)
        second = subprocess.run(
            [*RUN, "-w", str(ws_other)], capture_output=True, text=True, env=_env(), timeout=120
        )
        assert second.returncode == 75, second.stderr[-3000:]
        assert "locked by" in second.stderr
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-4000:]
    report = json.loads(out)
    assert [s["status"] for s in report["steps"]] == ["ok", "ok", "ok"], report
    assert read_holder(load_settings(ws_spark)) is None
