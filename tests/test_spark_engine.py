"""The Spark engine: Delta round trips with every other reader, commits, errors, bronze on Spark.

Spark reads and commits through Delta Spark (delta-spark), so the oracle for every Spark write is
the rest of the ecosystem: DuckDB, delta-rs itself and Polars must read exactly what was written,
and the Delta log must hold the adds and removes in one commit with our metadata.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from medallion_lakehouse.bronze.contract import BRONZE_SALES
from medallion_lakehouse.bronze.ingest import ingest
from medallion_lakehouse.config import Settings
from medallion_lakehouse.engines.duckdb_engine import DuckDBEngine
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.storage.delta import (
    CommitInfo,
    WriteSpec,
    history,
    table_version,
    write_arrow,
)

pyspark = pytest.importorskip("pyspark")
from medallion_lakehouse.engines import spark_engine as se  # noqa: E402
from medallion_lakehouse.engines import spark_session as ss  # noqa: E402

needs_java = pytest.mark.skipif(
    shutil.which("java") is None and not os.environ.get("JAVA_HOME"), reason="no Java"
)


def spark_test(fn: Any) -> Any:
    """Marks for a test that starts the JVM: spark + slow, skipped without Java."""
    return pytest.mark.spark(pytest.mark.slow(needs_java(fn)))


TS = pa.timestamp("us", tz="UTC")
# Every column type the contracts use, plus the partition column as a string.
SCHEMA = pa.schema(
    [
        ("sale_id", pa.string()),
        ("quantity", pa.int64()),
        ("small", pa.int32()),
        ("unit_price", pa.decimal128(10, 2)),
        ("total", pa.decimal128(12, 2)),
        ("score", pa.float64()),
        ("sale_date", pa.date32()),
        ("is_late", pa.bool_()),
        ("_ingested_at", TS),
        ("sale_month", pa.string()),
    ]
)


def sample(
    n: int = 60, months: tuple[str, ...] = ("2025-01", "2025-02", "2025-03"), tag: str = ""
) -> pa.Table:
    """Rows with edge values in every column: nulls, unicode, negatives, extremes, micros."""
    rows: list[dict[str, Any]] = []
    for i in range(n):
        rows.append(
            {
                "sale_id": [f"S-{i:04d}", "", "ünïcødé ✓", "comma,quote\"'"][i % 4]
                + ("" if i % 4 else str(i)),
                "quantity": None if i % 7 == 0 else [1, -5, 2**62, 0][i % 4] + i,
                "small": None if i % 5 == 0 else -(2**31) + i,
                "unit_price": None if i % 6 == 0 else Decimal("99999999.99") - Decimal(i),
                "total": Decimal(f"-{i}.05"),
                "score": None if i % 9 == 0 else i / 7,
                "sale_date": date(1969, 12, 31) if i == 3 else date(2025, 1 + i % 12, 1 + i % 28),
                "is_late": None if i % 8 == 0 else bool(i % 2),
                "_ingested_at": datetime(2025, 3, 1, 12, 0, i % 60, 123456 + i, tzinfo=UTC),
                "sale_month": months[i % len(months)],
            }
        )
    # sale_id must be unique for the sorted comparisons below.
    for i, row in enumerate(rows):
        row["sale_id"] = f"{tag}{row['sale_id']}#{i}"
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def canon(table: pa.Table, schema: pa.Schema = SCHEMA) -> pa.Table:
    """Contract column order and types (readers differ in string/tz flavours), sorted by key."""
    table = table.select(schema.names)
    columns = [table.column(f.name).cast(f.type) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema).sort_by("sale_id")


def commit(step: str = "test") -> CommitInfo:
    return CommitInfo(run_id=f"run-{step}", step=step)


def log_actions(uri: str, version: int) -> dict[str, list[dict[str, Any]]]:
    """The add/remove actions of one commit, straight from the Delta log."""
    out: dict[str, list[dict[str, Any]]] = {"add": [], "remove": [], "commitInfo": []}
    log = Path(uri) / "_delta_log" / f"{version:020d}.json"
    for line in log.read_text().splitlines():
        action = json.loads(line)
        for kind in out:
            if kind in action:
                out[kind].append(action[kind])
    return out


@pytest.fixture(scope="module")
def spark() -> Iterator[se.SparkEngine]:
    """A local[2] engine; its SparkSession is cached per process by `get_spark`, so the
    session is shared by every module asking for the same master and conf (test_parity.py)."""
    engine = se.SparkEngine(master="local[2]", conf={"spark.sql.shuffle.partitions": "4"})
    yield engine
    engine.close()


@pytest.fixture
def duck() -> Iterator[DuckDBEngine]:
    engine = DuckDBEngine()
    yield engine
    engine.close()


def spark_write(
    spark: se.SparkEngine, data: pa.Table, uri: str, **kwargs: Any
) -> Any:  # WriteResult
    kwargs.setdefault("partition_by", ["sale_month"])
    kwargs.setdefault("commit", commit())
    return spark.write_delta(spark.from_arrow(data), uri, WriteSpec(schema=data.schema, **kwargs))


# -- pure helpers (no JVM) ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("master", "endpoints"),
    [
        ("local[*]", []),
        ("local[2]", []),
        ("yarn", []),
        ("spark://127.0.0.1:7077", [("127.0.0.1", 7077)]),
        ("spark://a.example:7078,b.example:7079", [("a.example", 7078), ("b.example", 7079)]),
        ("spark://host", [("host", 7077)]),
    ],
    ids=["local-star", "local-2", "yarn", "one", "ha-pair", "default-port"],
)
def test_master_endpoints(master: str, endpoints: list[tuple[str, int]]) -> None:
    assert ss.master_endpoints(master) == endpoints


def test_jar_versions_match_the_pom_pyspark_and_delta_spark() -> None:
    """jvm/pom.xml, the session's Maven coordinates, the delta-spark package and the Hadoop that
    pyspark bundles name the same releases."""
    import re
    from importlib.metadata import version

    pom = (Path(__file__).resolve().parents[1] / "jvm" / "pom.xml").read_text()
    assert re.search(r"<delta.version>([^<]+)<", pom)[1] == ss.DELTA_VERSION  # type: ignore[index]
    assert re.search(r"<hadoop.version>([^<]+)<", pom)[1] == ss.HADOOP_VERSION  # type: ignore[index]
    assert version("delta-spark") == ss.DELTA_VERSION
    # Delta 4.0.x is built for Spark 4.0.x.
    assert version("pyspark").split(".")[:2] == ss.DELTA_VERSION.split(".")[:2]
    bundled = Path(pyspark.__file__).parent / "jars"
    assert (bundled / f"hadoop-client-api-{ss.HADOOP_VERSION}.jar").is_file()


def test_jars_come_from_the_folder_or_from_maven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / f"delta-spark_2.13-{ss.DELTA_VERSION}.jar").write_bytes(b"")
    (tmp_path / "hadoop-aws.jar").write_bytes(b"")
    monkeypatch.setenv(ss.JARS_ENV, str(tmp_path))
    local = ss.jar_conf("local[2]")
    assert local["spark.jars"].split(",") == [
        f"local:{tmp_path / f'delta-spark_2.13-{ss.DELTA_VERSION}.jar'}",
        f"local:{tmp_path / 'hadoop-aws.jar'}",
    ]
    # A cluster elsewhere cannot see this machine's folder: Spark resolves the packages.
    remote = ss.jar_conf("spark://10.1.2.3:7077")
    assert remote == {"spark.jars.packages": ",".join(ss.PACKAGES)}
    monkeypatch.setenv(ss.JARS_ENV, str(tmp_path / "missing"))
    with pytest.raises(Exception, match="make spark-jars"):
        ss.jar_conf("local[2]")


def test_s3_storage_options_become_s3a_settings() -> None:
    conf = ss.s3a_conf(
        {
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
            "AWS_ACCESS_KEY_ID": "key",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "AWS_REGION": "eu-west-1",
            "AWS_ALLOW_HTTP": "true",
        }
    )
    assert conf == {
        "spark.hadoop.fs.s3a.access.key": "key",
        "spark.hadoop.fs.s3a.secret.key": "secret",
        "spark.hadoop.fs.s3a.endpoint.region": "eu-west-1",
        "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:9000",
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.aws.credentials.provider": (
            "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
        ),
    }
    assert ss.s3a_conf({}) == {}
    assert se.spark_path("s3://bucket/lake/t") == "s3a://bucket/lake/t"


def test_huge_generated_methods_are_jit_compiled_unless_overridden() -> None:
    # Without the flag, silver's wide generated methods stay in HotSpot's interpreter.
    conf = ss.session_conf("local[2]")
    assert conf["spark.driver.extraJavaOptions"] == "-XX:-DontCompileHugeMethods"
    assert conf["spark.executor.extraJavaOptions"] == "-XX:-DontCompileHugeMethods"
    mine = ss.session_conf("local[2]", {"spark.driver.extraJavaOptions": "-Xss4m"})
    assert mine["spark.driver.extraJavaOptions"] == "-Xss4m"


# -- clear errors (subprocesses: the shared session must not be touched) ---------------------
PROBE = """
import sys
from medallion_lakehouse.errors import MedallionError
from medallion_lakehouse.engines.spark_engine import SparkEngine
try:
    SparkEngine(master=sys.argv[1])
except MedallionError as exc:
    print(type(exc).__name__, exc.exit_code, str(exc))
    raise SystemExit(0)
print("started")
"""


def run_probe(master: str, env: dict[str, str], timeout: float = 60) -> tuple[str, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, master],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip(), time.monotonic() - started


def base_env(**changes: str | None) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@pytest.mark.spark
@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"JAVA_HOME": None, "PATH": "/nonexistent"}, "needs Java 17 or 21"),
        ({"JAVA_HOME": "/nonexistent/jdk", "PATH": "/nonexistent"}, "JAVA_HOME is"),
    ],
    ids=["no-java-on-path", "bad-java-home"],
)
def test_missing_java_is_a_clear_error(changes: dict[str, str | None], expected: str) -> None:
    out, _ = run_probe("local[1]", base_env(**changes))
    assert out.startswith("EngineUnavailableError 2 "), out
    assert expected in out


@pytest.mark.spark
def test_unreachable_master_fails_fast() -> None:
    with socket.socket() as sock:  # a port that nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out, seconds = run_probe(f"spark://127.0.0.1:{port}", base_env())
    assert out.startswith("EngineUnavailableError 2 "), out
    assert f"127.0.0.1:{port}" in out and "spark_cluster.sh start" in out
    assert seconds < 30  # no JVM was started, no minutes of retries


@pytest.mark.spark
def test_missing_pyspark_names_the_extra() -> None:
    code = "import sys; sys.modules['pyspark'] = None\n" + PROBE
    proc = subprocess.run(
        [sys.executable, "-c", code, "local[1]"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.stdout.startswith("MissingDependencyError 2 "), proc.stdout + proc.stderr
    assert "pip install 'medallion-lakehouse[spark]'" in proc.stdout


# -- round trips ----------------------------------------------------------------------------
def read_everywhere(uri: str, spark: se.SparkEngine, duck: DuckDBEngine) -> dict[str, pa.Table]:
    import polars as pl

    return {
        "spark": canon(spark.to_arrow(spark.read_delta(uri, schema=SCHEMA))),
        "duckdb": canon(duck.to_arrow(duck.read_delta(uri, schema=SCHEMA))),
        "delta-rs": canon(pa.table(DeltaTable(uri).to_pyarrow_table())),
        "polars": canon(pl.read_delta(uri).to_arrow()),
    }


@pytest.mark.parametrize("partition_by", [["sale_month"], []], ids=["partitioned", "flat"])
@spark_test
def test_spark_write_reads_identically_everywhere(
    spark: se.SparkEngine, duck: DuckDBEngine, tmp_path: Path, partition_by: list[str]
) -> None:
    uri = str(tmp_path / "t")
    data = sample()
    result = spark_write(spark, data, uri, partition_by=partition_by)
    assert (result.version, result.rows) == (0, data.num_rows)
    for reader, table in read_everywhere(uri, spark, duck).items():
        assert table.equals(canon(data)), reader
    assert DeltaTable(uri).metadata().partition_columns == partition_by


@spark_test
def test_duckdb_write_reads_identically_on_spark(
    spark: se.SparkEngine, duck: DuckDBEngine, tmp_path: Path
) -> None:
    uri = str(tmp_path / "t")
    data = sample()
    duck.write_delta(
        duck.from_arrow(data),
        uri,
        WriteSpec(schema=SCHEMA, commit=commit(), partition_by=["sale_month"]),
    )
    back = spark.read_delta(uri, schema=SCHEMA)
    # Spark's typed view of the table: the contract's types, not types guessed from folders.
    assert back.schema().to_pyarrow().field("sale_month").type == pa.string()
    assert canon(spark.to_arrow(back)).equals(canon(data))


@pytest.mark.parametrize(
    "value",
    ["007", "2025-01-15", "a b:c", "50%=half", "x/y", "ünï", None],
    ids=["leading-zeros", "date-like", "space-colon", "percent-equals", "slash", "unicode", "null"],
)
@spark_test
def test_partition_values_survive_both_ways(
    spark: se.SparkEngine, duck: DuckDBEngine, tmp_path: Path, value: str | None
) -> None:
    data = sample(6, months=(value,))  # type: ignore[arg-type]
    by_spark, by_duck = str(tmp_path / "spark"), str(tmp_path / "duck")
    spark_write(spark, data, by_spark)
    duck.write_delta(
        duck.from_arrow(data),
        by_duck,
        WriteSpec(schema=SCHEMA, commit=commit(), partition_by=["sale_month"]),
    )
    partitions = {a["partitionValues"]["sale_month"] for a in log_actions(by_spark, 0)["add"]}
    assert partitions == {value}
    assert canon(pa.table(DeltaTable(by_spark).to_pyarrow_table())).equals(canon(data))
    assert canon(spark.to_arrow(spark.read_delta(by_duck, schema=SCHEMA))).equals(canon(data))


@spark_test
def test_stats_agree_with_delta_rs(spark: se.SparkEngine, tmp_path: Path) -> None:
    """Delta Spark's file statistics must say what delta-rs says about the same rows."""
    data = sample(50)
    ours, theirs = str(tmp_path / "ours"), str(tmp_path / "theirs")
    spark_write(spark, data, ours, partition_by=[])
    write_arrow(theirs, data, WriteSpec(schema=SCHEMA, commit=commit()))

    def summary(uri: str) -> dict[str, Any]:
        adds = [json.loads(a["stats"]) for a in log_actions(uri, 0)["add"]]
        out: dict[str, Any] = {"rows": sum(s["numRecords"] for s in adds)}
        for name in ("sale_id", "quantity", "small", "unit_price", "sale_date", "_ingested_at"):
            out[name] = (
                min(s["minValues"][name] for s in adds),
                max(s["maxValues"][name] for s in adds),
                sum(s["nullCount"][name] for s in adds),
            )
        return out

    assert summary(ours) == summary(theirs)
    # Stats drive file skipping in delta-rs: a predicate delete must still hit every row.
    deleted = DeltaTable(ours).delete("quantity >= 10", commit_properties=None)
    expected = pc.sum(pc.greater_equal(data.column("quantity"), 10)).as_py()
    assert deleted["num_deleted_rows"] == expected


# -- commits --------------------------------------------------------------------------------
@spark_test
def test_partition_replacement_adds_and_removes_in_one_commit(
    spark: se.SparkEngine, duck: DuckDBEngine, tmp_path: Path
) -> None:
    uri = str(tmp_path / "t")
    first = sample(60)
    spark_write(spark, first, uri, commit=CommitInfo("run-1", "silver"))
    old = {a["path"]: a["partitionValues"]["sale_month"] for a in log_actions(uri, 0)["add"]}

    fresh = sample(10, months=("2025-01",), tag="new-")
    result = spark_write(
        spark,
        fresh,
        uri,
        commit=CommitInfo("run-2", "silver", {"months": "2"}),
        replace={"sale_month": ["2025-01", "2025-02"]},
    )
    assert (result.version, result.rows) == (1, 10)
    actions = log_actions(uri, 1)
    removed = {r["path"] for r in actions["remove"]}
    assert removed == {p for p, m in old.items() if m in {"2025-01", "2025-02"}}
    assert {a["partitionValues"]["sale_month"] for a in actions["add"]} == {"2025-01"}

    kept = first.filter(pc.equal(first.column("sale_month"), "2025-03"))
    expected = canon(pa.concat_tables([kept, fresh]))
    for reader, table in read_everywhere(uri, spark, duck).items():
        assert table.equals(expected), reader

    latest = history(uri)[0]
    assert latest["operation"] == "WRITE"
    assert (latest["run_id"], latest["step"], latest["months"]) == ("run-2", "silver", "2")
    assert len(history(uri)) == 2


@spark_test
def test_overwrite_without_replace_replaces_the_whole_table(
    spark: se.SparkEngine, tmp_path: Path
) -> None:
    uri = str(tmp_path / "t")
    spark_write(spark, sample(30), uri)
    fresh = sample(5, months=("2030-12",))
    spark_write(spark, fresh, uri, mode="overwrite")
    assert len(log_actions(uri, 1)["remove"]) == len(log_actions(uri, 0)["add"])
    assert canon(pa.table(DeltaTable(uri).to_pyarrow_table())).equals(canon(fresh))


@spark_test
def test_appends_and_time_travel(spark: se.SparkEngine, tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    v0, v1 = sample(20), sample(12, months=("2025-04",), tag="v1-")
    spark_write(spark, v0, uri)
    spark_write(spark, v1, uri)
    spark_write(spark, sample(3, months=("2025-04",)), uri, replace={"sale_month": ["2025-04"]})
    assert [h["version"] for h in history(uri)] == [2, 1, 0]
    expected = {0: canon(v0), 1: canon(pa.concat_tables([v0, v1]))}
    for version, table in expected.items():
        read = spark.to_arrow(spark.read_delta(uri, schema=SCHEMA, version=version))
        assert canon(read).equals(table), version
    assert spark.count(spark.read_delta(uri, schema=SCHEMA)) == 20 + 3


# Zero rows never makes a broken or pointless commit; see SparkEngine.write_dataframe.
@pytest.mark.parametrize(
    ("setup_rows", "kwargs", "new_version", "rows_after"),
    [
        (0, {}, 0, 0),  # a new table is created, empty, with its schema
        (30, {}, 0, 30),  # appending nothing commits nothing
        (30, {"replace": {"sale_month": []}}, 0, 30),  # replacing no partition: nothing
        (30, {"replace": {"sale_month": ["2025-01"]}}, 1, 20),  # the partition is emptied
        (30, {"mode": "overwrite"}, 1, 0),  # the table is emptied
    ],
    ids=["new-table", "append", "replace-nothing", "replace-month", "overwrite"],
)
@spark_test
def test_zero_rows(
    spark: se.SparkEngine,
    tmp_path: Path,
    setup_rows: int,
    kwargs: dict[str, Any],
    new_version: int,
    rows_after: int,
) -> None:
    uri = str(tmp_path / "t")
    if setup_rows:
        spark_write(spark, sample(setup_rows), uri)
    result = spark_write(spark, SCHEMA.empty_table(), uri, **kwargs)
    assert result.rows == 0 and result.files == 0
    assert table_version(uri) == new_version
    assert len(history(uri)) == new_version + 1
    back = spark.read_delta(uri, schema=SCHEMA)
    assert back.schema().names == tuple(SCHEMA.names)
    assert spark.count(back) == rows_after
    assert DeltaTable(uri).to_pyarrow_table().num_rows == rows_after


@spark_test
def test_orphan_files_are_invisible(
    spark: se.SparkEngine, duck: DuckDBEngine, tmp_path: Path
) -> None:
    """A crash leaves written-but-uncommitted files: no reader may see them."""
    uri = str(tmp_path / "t")
    data = sample(12)
    spark_write(spark, data, uri)
    junk = sample(5)
    orphan = Path(uri) / "sale_month=2025-01" / "orphan-part-0.parquet"
    pq.write_table(junk.drop_columns(["sale_month"]), orphan)

    for reader, table in read_everywhere(uri, spark, duck).items():
        assert table.equals(canon(data)), reader
    spark_write(spark, sample(4, months=("2025-09",)), uri)  # a later write works and ignores it
    assert spark.count(spark.read_delta(uri, schema=SCHEMA)) == 16


@pytest.mark.parametrize("stream", [False, True], ids=["table", "stream"])
@spark_test
def test_arrow_from_the_driver_commits_through_delta_rs(
    spark: se.SparkEngine, duck: DuckDBEngine, tmp_path: Path, stream: bool
) -> None:
    """Arrow already on the driver is one delta-rs commit (no round trip through Spark), with
    the run's metadata where Delta Spark's history shows it; Delta Spark then continues the
    table."""
    uri = str(tmp_path / "t")
    data = sample(40)
    result = spark.write_arrow(
        data.to_reader() if stream else data,
        uri,
        WriteSpec(schema=SCHEMA, commit=commit("bronze"), partition_by=["sale_month"]),
    )
    assert (result.version, result.rows) == (0, data.num_rows)
    assert not log_actions(uri, 0)["commitInfo"][0]["engineInfo"].startswith("Apache-Spark")
    assert canon(duck.to_arrow(duck.read_delta(uri, schema=SCHEMA))).equals(canon(data))
    assert canon(spark.to_arrow(spark.read_delta(uri, schema=SCHEMA))).equals(canon(data))
    more = sample(4, tag="s-", months=("2025-09",))
    spark_write(spark, more, uri, commit=commit("silver"))
    assert [c["step"] for c in spark.history(uri)] == ["silver", "bronze"]
    assert spark.count(spark.read_delta(uri, schema=SCHEMA)) == data.num_rows + more.num_rows
    # Appending nothing commits nothing, streamed or not.
    empty = spark.write_arrow(
        iter([]), uri, WriteSpec(schema=SCHEMA, commit=commit(), partition_by=["sale_month"])
    )
    assert (empty.version, empty.rows) == (1, 0)


@spark_test
def test_deletes_and_history_through_delta_spark(spark: se.SparkEngine, tmp_path: Path) -> None:
    """History reads alike for commits of both implementations: run and step on each."""
    uri = str(tmp_path / "t")
    write_arrow(
        uri,
        sample(20),
        WriteSpec(schema=SCHEMA, commit=commit("by-delta-rs"), partition_by=["sale_month"]),
    )
    spark_write(spark, sample(5, tag="s-"), uri, commit=CommitInfo("run-s", "by-spark", {"k": "v"}))
    deleted = spark.delete_where(uri, "sale_month = '2025-02'", commit=commit("delete"))
    expected = sum(1 for m in sample(20).column("sale_month").to_pylist() if m == "2025-02")
    expected += sum(1 for m in sample(5).column("sale_month").to_pylist() if m == "2025-02")
    assert deleted == expected
    for commits in (spark.history(uri), history(uri)):
        assert [c["version"] for c in commits] == [2, 1, 0]
        assert [c["step"] for c in commits] == ["delete", "by-spark", "by-delta-rs"]
        assert [c["operation"] for c in commits] == ["DELETE", "WRITE", "WRITE"]
        assert commits[1]["k"] == "v"
        assert commits[0]["operationMetrics"]["num_deleted_rows"] == expected
        assert isinstance(commits[0]["timestamp"], int)
    assert spark.history(uri, limit=1)[0]["version"] == 2
    assert spark.history(str(tmp_path / "none")) == []
    assert spark.delete_where(str(tmp_path / "none"), "true", commit=commit()) == 0


@spark_test
def test_types_are_cast_to_the_contract(spark: se.SparkEngine, tmp_path: Path) -> None:
    """An expression computing wider or looser types still lands with the contract's types."""
    uri = str(tmp_path / "t")
    data = sample(8)
    t = spark.from_arrow(data)
    loose = t.mutate(
        small=t.small.cast("int64"),
        unit_price=t.unit_price.cast("float64"),
        total=t.total.cast("decimal(20, 4)"),
    )
    spark.write_delta(
        loose, uri, WriteSpec(schema=SCHEMA, commit=commit(), partition_by=["sale_month"])
    )
    written = pq.read_schema(DeltaTable(uri).file_uris()[0])
    for name in ("small", "unit_price", "total", "_ingested_at"):
        assert written.field(name).type == SCHEMA.field(name).type, name
    assert canon(pa.table(DeltaTable(uri).to_pyarrow_table())).equals(canon(data))


@spark_test
def test_a_value_that_does_not_fit_fails_the_write(spark: se.SparkEngine, tmp_path: Path) -> None:
    """Casting never wraps or truncates silently, and a failed write commits nothing."""
    uri = str(tmp_path / "t")
    narrow = pa.schema([("sale_id", pa.string()), ("quantity", pa.int32())])
    t = spark.from_arrow(pa.table({"sale_id": ["a"], "quantity": pa.array([2**40], pa.int64())}))
    with pytest.raises(Exception, match="CAST_OVERFLOW"):
        spark.write_delta(t, uri, WriteSpec(schema=narrow, commit=commit()))
    assert table_version(uri) is None


@spark_test
def test_close_keeps_the_shared_session(spark: se.SparkEngine) -> None:
    other = se.SparkEngine(master="local[2]", conf={"spark.sql.shuffle.partitions": "4"})
    assert other.session is spark.session
    other.close()
    assert spark.scalar(spark.from_arrow(pa.table({"x": [1, 2, 3]})).x.sum()) == 6


# -- bronze on Spark ------------------------------------------------------------------------
@pytest.fixture
def spark_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"engine": "spark", "spark_master": "local[2]"})


@spark_test
def test_bronze_ingest_on_spark_matches_duckdb(
    spark: se.SparkEngine, spark_settings: Settings, workspace: Path, seed_dir: Path
) -> None:
    landing = workspace / "data" / "landing"
    shutil.copyfile(seed_dir / "raw_sales.csv", landing / "raw_sales.csv")
    with Lake(spark_settings, engine=spark) as lake:
        first = ingest(lake, run_id="r1")
        assert (first.ingested, first.rows) == (1, 5_000)
        assert spark.count(lake.read(BRONZE_SALES.name)) == 5_000
        again = ingest(lake, run_id="r2")
        assert (again.ingested, again.skipped, again.rows) == (0, 1, 0)
        assert spark.count(lake.read(BRONZE_SALES.name)) == 5_000
        shutil.copyfile(seed_dir / "late_sales.csv", landing / "late_sales.csv")
        late = ingest(lake, run_id="r3")
        assert (late.ingested, late.rows) == (1, 500)
        on_spark = spark.to_arrow(lake.read(BRONZE_SALES.name))
        assert on_spark.num_rows == 5_500
    with Lake(spark_settings.model_copy(update={"engine": "duckdb"})) as lake:
        on_duckdb = lake.engine.to_arrow(lake.read(BRONZE_SALES.name))

    schema = BRONZE_SALES.schema
    keys = [("_batch_id", "ascending"), ("_source_line", "ascending")]

    def sort(t: pa.Table) -> pa.Table:
        return pa.Table.from_arrays(
            [t.column(f.name).cast(f.type) for f in schema], schema=schema
        ).sort_by(keys)

    assert sort(on_spark).equals(sort(on_duckdb))


@spark_test
def test_unique_key_counts_duplicate_rows_exactly_on_both_engines(
    spark: se.SparkEngine, duck: DuckDBEngine
) -> None:
    """The single-column unique check groups hashes first (Spark's are 32 bits, so among 200k
    distinct ids some collide): the count must still be exactly the rows whose id repeats."""
    from medallion_lakehouse.checks import CheckInputs, unique_key
    from medallion_lakehouse.silver.contract import SILVER_SALES

    distinct = [f"id-{i}" for i in range(200_000)]
    ids = distinct + ["id-7", "id-7", "id-99"]  # id-7 three times, id-99 twice: 5 rows
    data = pa.table({"sale_id": ids})
    check = unique_key()
    for engine in (duck, spark):
        failing = check.failing(engine.from_arrow(data), CheckInputs(SILVER_SALES))
        assert int(engine.scalar(failing)) == 5, engine.name
        clean = check.failing(
            engine.from_arrow(pa.table({"sale_id": distinct})), CheckInputs(SILVER_SALES)
        )
        assert int(engine.scalar(clean) or 0) == 0, engine.name
