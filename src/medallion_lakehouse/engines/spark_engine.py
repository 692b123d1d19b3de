"""Spark: the distributed engine (`--engine spark`), on any `spark.master`, on Delta Lake's own
Spark connector (delta-spark).

Every read, and every commit of data Spark computes, goes through Delta Spark: `format("delta")`
reads with time travel (`versionAsOf`), appends and overwrites, partition replacement with
`replaceWhere`, `DeltaTable.delete` and `DeltaTable.history`. Each commit carries
`{run_id, step, ...}` as its `userMetadata` (a JSON object), which `storage.delta.commit_entry`
lifts to the same keys delta-rs commits carry, so history reads alike whichever engine wrote a
commit.

Arrow data that is already on the driver (bronze's parsed batches, metadata rows) is committed
by delta-rs instead (see `SparkEngine.write_arrow` for the measured reason), with the same
metadata; Delta Spark reads and continues those commits like its own.

The session itself (Java, master, jars, S3A settings) is engines/spark_session.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from medallion_lakehouse.engines.base import Engine
from medallion_lakehouse.engines.spark_session import (
    INSTALL_HINT,
    alive,
    get_spark,
    stop_spark,
)
from medallion_lakehouse.errors import MissingDependencyError
from medallion_lakehouse.lazy_imports import ibis
from medallion_lakehouse.storage import delta
from medallion_lakehouse.storage.delta import (
    CommitInfo,
    WriteResult,
    WriteSpec,
    commit_entry,
)

if TYPE_CHECKING:
    import ibis.expr.types as ir
    from pyspark.sql import DataFrame
    from pyspark.sql.types import DataType, StructType


__all__ = ["SparkEngine", "spark_path", "spark_schema", "spark_type", "stop_spark"]

_names = itertools.count()


def _ibis_pyspark() -> Any:
    try:
        # Through `ibis.pyspark` (the entry point), which also registers the backend's options.
        backend = ibis.pyspark
    except (ImportError, AttributeError) as exc:
        raise MissingDependencyError(
            f"--engine spark needs Ibis' PySpark backend, which is not installed: {INSTALL_HINT}"
        ) from exc
    return backend


def _delta_tables() -> Any:
    try:
        from delta.tables import DeltaTable
    except ImportError as exc:
        raise MissingDependencyError(
            f"--engine spark needs delta-spark, which is not installed: {INSTALL_HINT}"
        ) from exc
    return DeltaTable


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
        self.session = get_spark(master, conf, self.storage_options)
        self.backend = _ibis_pyspark().connect(self.session)
        self._views: list[str] = []
        self._cache_without_whole_stage_codegen()

    def _cache_without_whole_stage_codegen(self) -> None:
        """Plan cached tables (Ibis `.cache()`) without whole-stage code generation.

        The tables a step caches are its wide parses (silver: every standardisation and rule of
        bronze in one projection). Fused into one whole-stage method, that projection outgrows
        the JVM's 64 KB per method: Janino fails to compile it ("Code grows beyond 64 KB") and
        Spark falls back after wasting the compile. Planned without whole-stage codegen, the
        projection is still generated code (split into methods), with no failed compile. The
        cached plan is fixed when `.cache()` is called, so the setting is needed only then.
        """
        backend = self.backend
        create = backend._create_cached_table
        key = "spark.sql.codegen.wholeStage"

        def create_cached_table(name: str, expr: ir.Table) -> ir.Table:
            before = self.session.conf.get(key, "true")
            self.session.conf.set(key, "false")
            try:
                return create(name, expr)
            finally:
                self.session.conf.set(key, before or "true")

        backend._create_cached_table = create_cached_table

    # -- reading -------------------------------------------------------------------------
    def _view(self, df: DataFrame, prefix: str) -> ir.Table:
        name = f"{prefix}_{next(_names)}"
        df.createOrReplaceTempView(name)
        self._views.append(name)
        return self.backend.table(name)

    def _exists(self, uri: str) -> bool:
        return delta.table_version(uri, self.storage_options) is not None

    def read_dataframe(
        self, uri: str, *, schema: pa.Schema, version: int | None = None
    ) -> DataFrame:
        """A Delta table (at `version`) as a DataFrame of the contract's types; columns the table
        does not have yet are left out (Lake.read adds them as nulls)."""
        from pyspark.sql import functions as sf

        if not self._exists(uri):
            return self.session.createDataFrame([], spark_schema(schema))
        reader = self.session.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        df = reader.load(spark_path(uri))
        present = set(df.columns)
        return df.select(
            *(
                sf.col(f"`{f.name}`").cast(spark_type(f.type)).alias(f.name)
                for f in schema
                if f.name in present
            )
        )

    def read_delta(self, uri: str, *, schema: pa.Schema, version: int | None = None) -> ir.Table:
        return self._view(self.read_dataframe(uri, schema=schema, version=version), "delta")

    def from_arrow(self, data: pa.Table) -> ir.Table:
        return self._view(self._arrow_frame(data), "arrow")

    def _arrow_frame(self, data: pa.Table) -> DataFrame:
        if data.num_rows == 0:
            return self.session.createDataFrame([], spark_schema(data.schema))
        return self.session.createDataFrame(data)

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
    def write_delta(self, expr: ir.Table, uri: str, spec: WriteSpec) -> WriteResult:
        return self.write_dataframe(self.dataframe(expr.select(*spec.schema.names)), uri, spec)

    def write_dataframe(
        self, df: DataFrame, uri: str, spec: WriteSpec, *, rows: int | None = None
    ) -> WriteResult:
        """Commit a DataFrame of the contract's columns with Delta Spark, in one transaction.

        Zero rows: a new table is created empty (its schema readable); appending nothing commits
        nothing; replacing no values commits nothing; replacing values or overwriting with
        nothing commits the removes. `rows`: the row count when the caller knows it.
        """
        from pyspark.sql import functions as sf

        before = delta.table_version(uri, self.storage_options)
        if spec.replaces_nothing:
            return WriteResult(version=before, rows=0, files=0)
        if (
            spec.commit_mode == "append"
            and before is not None
            and (rows == 0 or (rows is None and df.isEmpty()))
        ):
            return WriteResult(version=before, rows=0, files=0)
        # Cast in Spark so the files carry exactly the contract's types.
        df = df.select(
            *(sf.col(f"`{f.name}`").cast(spark_type(f.type)).alias(f.name) for f in spec.schema)
        )
        # No repartitioning by the partition columns: it would shuffle every row once more, and
        # put a partition with one value (bronze's ingest date) in one task. Each task writes a
        # file per partition value it holds.
        writer = (
            df.write.format("delta")
            .mode(spec.commit_mode)
            .option("userMetadata", spec.commit.user_metadata())
        )
        if spec.predicate is not None:
            writer = writer.option("replaceWhere", spec.predicate)
        if before is not None and _lacks_columns(uri, spec.schema, self.storage_options):
            writer = writer.option("mergeSchema", "true")
        if spec.partition_by and before is None:
            writer = writer.partitionBy(*spec.partition_by)
        writer.save(spark_path(uri))
        return self._result(uri, before)

    def _result(self, uri: str, before: int | None) -> WriteResult:
        """Version, rows and files of the commit just made (from its commitInfo)."""
        version = delta.table_version(uri, self.storage_options)
        if version is None or version == before:
            return WriteResult(version=version, rows=0, files=0)
        last = delta.history(uri, limit=1, storage_options=self.storage_options)
        metrics = last[0].get("operationMetrics", {}) if last else {}
        return WriteResult(
            version=version,
            rows=int(metrics.get("num_added_rows", 0) or 0),
            files=int(metrics.get("numFiles", metrics.get("num_added_files", 0)) or 0),
        )

    def write_arrow(
        self,
        data: pa.Table | pa.RecordBatchReader | Iterable[pa.RecordBatch],
        uri: str,
        spec: WriteSpec,
    ) -> WriteResult:
        """Arrow data that is already on the driver (bronze's parsed batches, `_meta` rows,
        gold's small aggregates) is committed by delta-rs, as on the DuckDB engine.

        A measured exception to "one Delta implementation per engine": handing driver-side
        Arrow to Delta Spark meant spooling it to Parquet and reading it back into Spark
        (bronze: 86 s against 12 s at 10M rows), and every small Delta Spark commit costs about
        a second on local[2] (a dozen `_meta` commits a run). delta-rs writes the same protocol
        (reader 1, writer 2) and the same `{run_id, step}` metadata, also as `userMetadata`, so
        Delta Spark reads, continues and shows the history of these commits as its own
        (tests/test_interop.py, tests/test_s3_engines.py).
        """
        batches = iter(data.to_batches() if isinstance(data, pa.Table) else data)
        first = next((b for b in batches if b.num_rows), None)
        before = delta.table_version(uri, self.storage_options)
        if first is None and spec.commit_mode == "append" and before is not None:
            # Appending nothing commits nothing, as for Spark's own writes (delta-rs would
            # commit an empty version).
            return WriteResult(version=before, rows=0, files=0)
        rest = itertools.chain([] if first is None else [first], batches)
        return delta.write_arrow(uri, rest, spec, storage_options=self.storage_options)

    def delete_where(self, uri: str, predicate: str, *, commit: CommitInfo) -> int:
        if not self._exists(uri):
            return 0
        before = delta.table_version(uri, self.storage_options)
        table = _delta_tables().forPath(self.session, spark_path(uri))
        key = "spark.databricks.delta.commitInfo.userMetadata"
        self.session.conf.set(key, commit.user_metadata())
        try:
            table.delete(predicate)
        finally:
            self.session.conf.unset(key)
        if delta.table_version(uri, self.storage_options) == before:
            return 0
        last = delta.history(uri, limit=1, storage_options=self.storage_options)
        return int(last[0].get("operationMetrics", {}).get("num_deleted_rows", 0) or 0)

    def history(self, uri: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits newest first, read by Delta Spark's `DeltaTable.history`."""
        if not self._exists(uri):
            return []
        table = _delta_tables().forPath(self.session, spark_path(uri))
        frame = table.history(limit) if limit else table.history()
        commits = []
        for row in frame.toArrow().to_pylist():
            entry = {k: v for k, v in row.items() if v is not None}
            when = entry.get("timestamp")
            if when is not None:
                entry["timestamp"] = int(when.timestamp() * 1000)
            for key in ("operationParameters", "operationMetrics"):
                if isinstance(entry.get(key), list):  # Arrow maps arrive as (key, value) pairs
                    entry[key] = dict(entry[key])
            commits.append(commit_entry(entry))
        return commits

    def close(self) -> None:
        """Drop this engine's temporary views; the session stays up for the next engine."""
        if alive(self.session):
            for name in self._views:
                self.session.catalog.dropTempView(name)
        self._views.clear()


def _lacks_columns(uri: str, schema: pa.Schema, storage_options: Mapping[str, str]) -> bool:
    """Whether the table lacks columns the contract has added since it was written."""
    return delta.lacks_columns(delta.open_table(uri, storage_options=storage_options), schema)
