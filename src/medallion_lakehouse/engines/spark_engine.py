"""Spark: the distributed engine (`--engine spark`), on any `spark.master`.

The Delta Spark jars come from Maven, which is unreachable, so Spark never talks Delta itself:
it reads the live data files that delta-rs lists (`DeltaTable.file_uris()`), writes plain Parquet
into a staging folder inside the table, and the driver commits those files with delta-rs
(`storage.delta.commit_files`). One commit protocol for both engines; Spark only computes.

One SparkSession per process (starting one costs about 5 s): sessions are cached by master and
configuration, `SparkEngine.close()` leaves the session running, `stop_spark()` ends it.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import shutil
import socket
import sys
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from medallion_lakehouse.engines.base import Engine
from medallion_lakehouse.errors import EngineUnavailableError, MissingDependencyError
from medallion_lakehouse.storage.delta import (
    CommitInfo,
    StagedFile,
    WriteMode,
    WriteResult,
    commit_files,
    open_table,
)

if TYPE_CHECKING:
    from deltalake import DeltaTable
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import DataType, StructType

STAGING_DIR = "_staging"
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
MASTER_PROBE_SECONDS = 3.0
INSTALL_HINT = "pip install 'medallion-lakehouse[spark]'"

_names = itertools.count()
_SESSIONS: dict[tuple[str, tuple[tuple[str, str], ...]], SparkSession] = {}


# -- starting Spark -------------------------------------------------------------------------
def _import_pyspark() -> Any:
    try:
        import pyspark
        import pyspark.sql
    except ImportError as exc:
        raise MissingDependencyError(
            f"--engine spark needs PySpark, which is not installed: {INSTALL_HINT}"
        ) from exc
    return pyspark


def _ibis_pyspark() -> Any:
    try:
        # Through `ibis.pyspark` (the entry point), which also registers the backend's options.
        backend = ibis.pyspark
    except (ImportError, AttributeError) as exc:
        raise MissingDependencyError(
            f"--engine spark needs Ibis' PySpark backend, which is not installed: {INSTALL_HINT}"
        ) from exc
    return backend


def find_java() -> str:
    """Path of the `java` Spark will launch; raises EngineUnavailableError if there is none."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
        raise EngineUnavailableError(
            f"JAVA_HOME is {java_home!r} but {candidate} is not an executable: point JAVA_HOME "
            "at a Java 17 or 21 installation (or unset it to use `java` from PATH)."
        )
    found = shutil.which("java")
    if found is None:
        raise EngineUnavailableError(
            "--engine spark needs Java 17 or 21 and none was found (no JAVA_HOME, no `java` on "
            "PATH): install a JDK (e.g. `apt-get install openjdk-17-jre-headless`) or set "
            "JAVA_HOME, or use --engine duckdb."
        )
    return found


def master_endpoints(master: str) -> list[tuple[str, int]]:
    """(host, port) pairs of a standalone master URL; empty for local[...], yarn, k8s, ..."""
    if not master.startswith("spark://"):
        return []
    endpoints = []
    for part in master[len("spark://") :].split(","):
        host, _, port = part.rstrip("/").rpartition(":")
        endpoints.append((host or part, int(port) if port.isdigit() else 7077))
    return endpoints


def check_master(master: str, timeout: float = MASTER_PROBE_SECONDS) -> None:
    """Fail fast when a standalone master does not answer, instead of Spark retrying for minutes."""
    endpoints = master_endpoints(master)
    errors = []
    for host, port in endpoints:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return
        except OSError as exc:
            errors.append(f"{host}:{port} ({exc.strerror or exc})")
    if errors:
        raise EngineUnavailableError(
            f"Spark master {master} is unreachable: {', '.join(errors)}. Start it (e.g. "
            "`scripts/spark_cluster.sh start`), check --spark-master, or use "
            "--spark-master 'local[*]'."
        )


def _is_loopback(master: str) -> bool:
    if master.startswith("local"):
        return True
    return all(host in {"127.0.0.1", "localhost", "::1"} for host, _ in master_endpoints(master))


def default_conf(master: str) -> dict[str, str]:
    """Laptop-friendly defaults; every key can be overridden with --spark-conf KEY=VALUE."""
    cores = os.cpu_count() or 2
    conf = {
        "spark.app.name": "medallion-lakehouse",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": "2g",
        "spark.sql.shuffle.partitions": str(2 * cores),
        # Timestamps are UTC instants everywhere (contracts use timestamp[us, UTC]).
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        # Partition values are typed by the Delta schema, never guessed from folder names.
        "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
        # Executors must run the same Python as the driver (same venv, same libraries).
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
    }
    if _is_loopback(master):
        # Containers often have a hostname that does not resolve; loopback always does.
        conf["spark.driver.host"] = "127.0.0.1"
        conf["spark.driver.bindAddress"] = "127.0.0.1"
    return conf


def get_spark(master: str = "local[*]", conf: Mapping[str, str] | None = None) -> SparkSession:
    """The process's SparkSession for this master and configuration, started on first use.

    Spark allows one SparkContext per process: asking for a different master or configuration
    stops the running session first.
    """
    pyspark = _import_pyspark()
    settings = {**default_conf(master), **dict(conf or {}), "spark.master": master}
    key = (master, tuple(sorted(settings.items())))
    session = _SESSIONS.get(key)
    if session is not None and _alive(session):
        return session
    # Check before stopping a running session: a typo must not take the old session down.
    find_java()
    check_master(master)
    stop_spark()
    if _is_loopback(master):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = pyspark.sql.SparkSession.builder
    for name, value in settings.items():
        builder = builder.config(name, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:
        raise EngineUnavailableError(
            f"Spark could not start with master {master}: {str(exc).strip().splitlines()[0]}. "
            "Check Java (17 or 21), --spark-master and --spark-conf."
        ) from exc
    session.sparkContext.setLogLevel("ERROR")
    _SESSIONS[key] = session
    return session


def _alive(session: SparkSession) -> bool:
    context = session.sparkContext
    return context._jsc is not None and not context._jsc.sc().isStopped()


def stop_spark() -> None:
    """Stop the process's SparkSession (the CLI calls this when a command ends)."""
    while _SESSIONS:
        _, session = _SESSIONS.popitem()
        session.stop()


# -- types ----------------------------------------------------------------------------------
def spark_type(dtype: pa.DataType) -> DataType:
    """The Spark SQL type a contract's Arrow type is written as."""
    from pyspark.sql import types as st

    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return st.StringType()
    if pa.types.is_boolean(dtype):
        return st.BooleanType()
    simple: dict[pa.DataType, DataType] = {
        pa.int8(): st.ByteType(),
        pa.int16(): st.ShortType(),
        pa.int32(): st.IntegerType(),
        pa.int64(): st.LongType(),
        pa.float32(): st.FloatType(),
        pa.float64(): st.DoubleType(),
        pa.date32(): st.DateType(),
        pa.binary(): st.BinaryType(),
    }
    if dtype in simple:
        return simple[dtype]
    if pa.types.is_decimal(dtype):
        return st.DecimalType(dtype.precision, dtype.scale)
    if pa.types.is_timestamp(dtype):
        return st.TimestampType() if dtype.tz else st.TimestampNTZType()
    raise TypeError(f"No Spark type for Arrow type {dtype} (add it to spark_type)")


def spark_schema(schema: pa.Schema) -> StructType:
    from pyspark.sql import types as st

    return st.StructType([st.StructField(f.name, spark_type(f.type), f.nullable) for f in schema])


# -- paths ----------------------------------------------------------------------------------
def spark_path(uri: str) -> str:
    """A table location as Spark (Hadoop) names it: file:/... locally, s3a:// for S3."""
    if "://" not in uri:
        # Hadoop quotes '%' itself: pass the literal path, not a percent-encoded URI.
        return "file://" + str(Path(uri).absolute())
    scheme, rest = uri.split("://", 1)
    return {"s3": "s3a"}.get(scheme, scheme) + "://" + rest


def live_files(table: DeltaTable, uri: str) -> list[tuple[str, dict[str, Any]]]:
    """(absolute path, partition values) of every file in the table version, from the log."""
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return []
    columns = table.metadata().partition_columns
    values = {c: actions.column(f"partition.{c}").to_pylist() for c in columns}
    files = []
    for i, logged in enumerate(actions.column("path").to_pylist()):
        path = unquote(logged)  # the log stores paths percent-encoded
        if "://" not in path and not path.startswith("/"):
            path = f"{uri.rstrip('/')}/{path}"
        files.append((path, {c: values[c][i] for c in columns}))
    return files


def _folders_match(path: str, values: Mapping[str, Any]) -> bool:
    """Whether Spark's partition discovery reads `values` back from the file's folders."""
    found = {}
    for part in path.split("/")[:-1]:
        column, sep, raw = part.partition("=")
        if sep:
            found[_unescape(column)] = None if raw == HIVE_NULL else _unescape(raw)
    return all(
        c in found and found[c] == (None if v is None else str(v)) for c, v in values.items()
    )


def _unescape(value: str) -> str:
    """Inverse of Spark's escapePathName (`%XX` per escaped character)."""
    return re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), value)


# -- Delta statistics from Parquet footers --------------------------------------------------
def _stat_value(value: Any) -> Any:
    """A Parquet min/max as Delta writes it in `stats`, or None when it cannot be (skip it)."""
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value else None  # NaN
    if isinstance(value, Decimal):
        # Delta stores decimals as JSON numbers; only exact ones (<= 15 digits) are safe.
        return float(value) if len(value.as_tuple().digits) <= 15 else None
    if isinstance(value, datetime):
        # Delta truncates timestamp statistics to milliseconds, as delta-rs does.
        value = value.astimezone(UTC)
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, date):
        return value.isoformat()
    return None


def file_stats(metadata: pq.FileMetaData) -> dict[str, Any]:
    """Delta `stats` (numRecords, nullCount, minValues, maxValues) from a Parquet footer."""
    stats: dict[str, Any] = {"numRecords": metadata.num_rows}
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    schema = metadata.schema
    for i in range(metadata.num_columns):
        name = schema.column(i).path
        if "." in name:  # nested columns: no statistics
            continue
        chunks = [
            metadata.row_group(g).column(i).statistics for g in range(metadata.num_row_groups)
        ]
        if not chunks or any(s is None for s in chunks):
            continue
        if all(s.has_null_count for s in chunks):
            nulls[name] = sum(s.null_count for s in chunks)
        with_values = [s for s in chunks if s.has_min_max]
        # A row group of only nulls has no min/max; any other gap means unknown bounds.
        if not with_values or any(
            not s.has_min_max and s.null_count != s.num_values for s in chunks
        ):
            continue
        low = _stat_value(min(s.min for s in with_values))
        high = _stat_value(max(s.max for s in with_values))
        if low is not None and high is not None:
            mins[name], maxs[name] = low, high
    if metadata.num_rows:
        stats.update(minValues=mins, maxValues=maxs, nullCount=nulls)
    return stats


# -- the engine -----------------------------------------------------------------------------
class SparkEngine(Engine):
    name = "spark"

    def __init__(
        self,
        *,
        master: str = "local[*]",
        conf: Mapping[str, str] | None = None,
        storage_options: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(storage_options)
        self.master = master
        self.session = get_spark(master, conf)
        self.backend = _ibis_pyspark().connect(self.session)
        self._views: list[str] = []

    # -- reading -------------------------------------------------------------------------
    def _view(self, df: DataFrame, prefix: str) -> ir.Table:
        name = f"{prefix}_{next(_names)}"
        df.createOrReplaceTempView(name)
        self._views.append(name)
        return self.backend.table(name)

    def read_dataframe(
        self, uri: str, *, schema: pa.Schema, version: int | None = None
    ) -> DataFrame:
        """The live files of a Delta table version as a Spark DataFrame typed by `schema`."""
        from pyspark.sql import functions as sf

        table = open_table(uri, version=version, storage_options=self.storage_options)
        files = live_files(table, uri) if table is not None else []
        if not files:
            return self.session.createDataFrame([], spark_schema(schema))
        reader = self.session.read.schema(spark_schema(schema))
        if all(_folders_match(path, values) for path, values in files):
            # The usual case: Hive folders that Spark decodes to the Delta partition values.
            # basePath keeps the partition columns; their types come from the contract.
            df = reader.option("basePath", spark_path(uri)).parquet(
                *(spark_path(path) for path, _ in files)
            )
        else:
            df = self._read_by_partition(files, schema)
        return df.select(*(sf.col(f.name).cast(spark_type(f.type)).alias(f.name) for f in schema))

    def _read_by_partition(
        self, files: list[tuple[str, dict[str, Any]]], schema: pa.Schema
    ) -> DataFrame:
        """Partition values from the Delta log, not from folder names Spark would misread.

        delta-rs percent-encodes non-ASCII values as UTF-8 bytes, which Spark decodes byte by
        byte, and other writers need not use Hive folders at all.
        """
        from pyspark.sql import functions as sf

        columns = set(files[0][1])
        data = pa.schema([f for f in schema if f.name not in columns])
        groups: dict[tuple[Any, ...], list[str]] = {}
        for path, values in files:
            groups.setdefault(tuple(sorted(values.items())), []).append(path)
        frames = []
        for key, paths in groups.items():
            df = self.session.read.schema(spark_schema(data)).parquet(*map(spark_path, paths))
            literals = [
                sf.lit(value).cast(spark_type(schema.field(name).type)).alias(name)
                for name, value in key
                if name in schema.names
            ]
            frames.append(df.select(*data.names, *literals))
        return functools.reduce(lambda a, b: a.unionByName(b), frames)

    def read_delta(self, uri: str, *, schema: pa.Schema, version: int | None = None) -> ir.Table:
        return self._view(self.read_dataframe(uri, schema=schema, version=version), "delta")

    def from_arrow(self, data: pa.Table) -> ir.Table:
        if data.num_rows == 0:
            df = self.session.createDataFrame([], spark_schema(data.schema))
        else:
            df = self.session.createDataFrame(data)
        return self._view(df, "arrow")

    # -- results -------------------------------------------------------------------------
    def dataframe(self, expr: ir.Expr) -> DataFrame:
        """The Spark DataFrame that computes an Ibis expression."""
        table = expr.as_table()
        self.backend._run_pre_execute_hooks(table)
        return self.session.sql(self.backend.compile(table))

    def to_arrow(self, expr: ir.Expr) -> pa.Table:
        # Ibis' own to_pyarrow goes through pandas (and types Spark timestamps as naive);
        # Spark 4 hands Arrow over directly, timestamps as timestamp[us, tz=UTC].
        return self.dataframe(expr).toArrow()

    def scalar(self, expr: ir.Scalar) -> Any:
        return self.to_arrow(expr).column(0)[0].as_py()

    # -- writing -------------------------------------------------------------------------
    def write_delta(
        self,
        expr: ir.Table,
        uri: str,
        *,
        schema: pa.Schema,
        commit: CommitInfo,
        mode: WriteMode = "append",
        partition_by: Sequence[str] = (),
        replace: Mapping[str, Sequence[str]] | None = None,
    ) -> WriteResult:
        from pyspark.sql import functions as sf

        df = self.dataframe(expr.select(*schema.names))
        # Cast in Spark so the files carry exactly the contract's types.
        df = df.select(*(sf.col(f.name).cast(spark_type(f.type)).alias(f.name) for f in schema))
        return self.write_dataframe(
            df,
            uri,
            schema=schema,
            commit=commit,
            mode=mode,
            partition_by=partition_by,
            replace=replace,
        )

    def write_dataframe(
        self,
        df: DataFrame,
        uri: str,
        *,
        schema: pa.Schema,
        commit: CommitInfo,
        mode: WriteMode = "append",
        partition_by: Sequence[str] = (),
        replace: Mapping[str, Sequence[str]] | None = None,
    ) -> WriteResult:
        """Write a DataFrame of the contract's columns as Parquet and commit it with delta-rs."""
        token = uuid.uuid4().hex
        fs, root = pafs.FileSystem.from_uri(uri)
        staging = f"{root}/{STAGING_DIR}/{token}"
        parts = list(partition_by)
        try:
            # One shuffle by partition keeps it to about one file per partition and task.
            out = df.repartition(*parts) if parts else df
            out.write.mode("errorifexists").partitionBy(*parts).parquet(
                spark_path(_join_uri(uri, f"{STAGING_DIR}/{token}"))
            )
            staged = _publish(fs, root, staging, token, parts)
            return commit_files(
                uri,
                staged,
                schema=schema,
                commit=commit,
                mode=mode,
                partition_by=parts,
                replace=replace,
                storage_options=self.storage_options,
            )
        finally:
            # Files already moved and committed are safe; anything left here is not in the log.
            _delete_dir(fs, staging)

    def close(self) -> None:
        """Drop this engine's temporary views; the session stays up for the next engine."""
        if _alive(self.session):
            for name in self._views:
                self.session.catalog.dropTempView(name)
        self._views.clear()


def _join_uri(uri: str, relative: str) -> str:
    return uri.rstrip("/") + "/" + relative


def _delete_dir(fs: pafs.FileSystem, path: str) -> None:
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)


def _publish(
    fs: pafs.FileSystem, root: str, staging: str, token: str, partition_by: Sequence[str]
) -> list[StagedFile]:
    """Move Spark's Parquet files from staging to `col=value/` folders and describe them."""
    staged = []
    selector = pafs.FileSelector(staging, recursive=True, allow_not_found=True)
    for info in fs.get_file_info(selector):
        name = info.base_name
        if info.type != pafs.FileType.File or not name.endswith(".parquet"):
            continue  # _SUCCESS, .crc checksums
        relative_dir = info.path[len(staging) :].strip("/").rpartition("/")[0]
        metadata = _footer(fs, info.path)
        if metadata.num_rows == 0:
            continue  # Spark writes a schema-only file for an empty unpartitioned result
        values = _partition_values(relative_dir, partition_by)
        # Spark's escaped folder names are kept: Spark reads them back to the same values.
        target = f"{relative_dir}/{token}-{name}" if relative_dir else f"{token}-{name}"
        fs.create_dir(f"{root}/{relative_dir}" if relative_dir else root, recursive=True)
        fs.move(info.path, f"{root}/{target}")
        moved = fs.get_file_info(f"{root}/{target}")
        mtime = moved.mtime_ns // 1_000_000 if moved.mtime_ns is not None else 0
        staged.append(
            StagedFile(
                path=target,
                size=int(moved.size or 0),
                rows=metadata.num_rows,
                partition_values=values,
                modification_time_ms=mtime,
                stats=file_stats(metadata),
            )
        )
    return staged


def _footer(fs: pafs.FileSystem, path: str) -> pq.FileMetaData:
    with fs.open_input_file(path) as handle:
        return pq.ParquetFile(handle).metadata


def _partition_values(relative_dir: str, partition_by: Sequence[str]) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for part in relative_dir.split("/") if relative_dir else []:
        column, _, raw = part.partition("=")
        values[_unescape(column)] = None if raw == HIVE_NULL else _unescape(raw)
    missing = [c for c in partition_by if c not in values]
    if missing:
        raise RuntimeError(f"Spark output {relative_dir!r} lacks partition folders {missing}")
    return {c: values[c] for c in partition_by}
