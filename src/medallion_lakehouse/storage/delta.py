"""Delta Lake tables over delta-rs: the storage layer below both engines.

- Reading the log, for everyone: `open_table`, `table_version`, `history` (normalised so a
  commit made by delta-rs and one made by Delta Spark look alike), `add_actions` (the live files
  of a version: the one place the add-actions table is read), `read_rows` (small reads to
  Arrow) and `distinct_values` (from the log's file statistics).
- Writing, for the DuckDB engine and driver-side tools: `write_arrow` streams Arrow record batches
  into one delta-rs commit tagged with `{run_id, step}`, as a `WriteSpec` (the one description of
  a write every engine takes) says, so a crash before the commit leaves the table at its previous
  version (orphan data files are invisible and removed by `vacuum`);
  `commit_files` commits Parquet files an engine wrote into the table folder (the DuckDB
  engine's COPY of an expression), with Delta statistics from their footers (`file_stats`);
  `delete_where`. The Spark engine commits through Delta Spark instead (engines/spark_engine.py),
  with the same metadata in the commit's `userMetadata`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import (
    ColumnProperties,
    CommitProperties,
    DeltaTable,
    QueryBuilder,
    WriterProperties,
    write_deltalake,
)
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import DeltaError
from deltalake.exceptions import TableNotFoundError as DeltaTableNotFound
from deltalake.transaction import AddAction, create_table_with_add_actions

if TYPE_CHECKING:
    import pyarrow.parquet as pq

WriteMode = Literal["append", "overwrite"]
# The folder name Hive-style writers (Spark, delta-rs) give a null partition value.
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


@dataclass(frozen=True)
class CommitInfo:
    """Who is writing: stored as custom commit metadata, shown by `medallion history`."""

    run_id: str
    step: str
    extra: Mapping[str, str] | None = None

    def metadata(self) -> dict[str, str]:
        meta = {"run_id": self.run_id, "step": self.step}
        if self.extra:
            meta.update({k: str(v) for k, v in self.extra.items()})
        return meta

    def properties(self) -> CommitProperties:
        """delta-rs: custom keys of the commit's commitInfo, and the same as its `userMetadata`
        (the protocol's field, which is all Delta Spark's history shows)."""
        return CommitProperties(
            custom_metadata={**self.metadata(), "userMetadata": self.user_metadata()}
        )

    def user_metadata(self) -> str:
        """Delta Spark: the commit's `userMetadata` string (a JSON object of the same keys)."""
        return json.dumps(self.metadata(), separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class WriteSpec:
    """How one commit writes a table: what the engines' and delta-rs' writers all take.

    `schema` and `partition_by` come from the table's contract, `commit` names the run, and
    `mode` / `replace` say what the commit does to the rows already there: `append`;
    `overwrite` (the whole table); or `replace={"col": [...]}`, which replaces exactly the rows
    holding those values (a predicate overwrite) and, given no values, commits nothing.
    """

    schema: pa.Schema
    commit: CommitInfo
    mode: WriteMode = "append"
    partition_by: Sequence[str] = ()
    replace: Mapping[str, Sequence[str]] | None = None
    unique_columns: Sequence[str] = ()  # written without dictionary encoding (Column.unique)
    # At most this many rows, when the caller knows (an engine may pick how to write by it).
    rows: int | None = None

    @property
    def replaces_nothing(self) -> bool:
        """A replacement of no values: the write is a no-op."""
        return self.replace is not None and not any(self.replace.values())

    @property
    def predicate(self) -> str | None:
        """The SQL predicate of the rows a replacement removes (None: not a replacement)."""
        return None if self.replace is None else partition_predicate(self.replace)

    @property
    def commit_mode(self) -> WriteMode:
        """The Delta save mode: a replacement is an overwrite restricted by `predicate`."""
        return "overwrite" if self.replace is not None else self.mode


@dataclass(frozen=True)
class WriteResult:
    version: int | None  # table version after the write; None when nothing was committed
    rows: int
    files: int


def open_table(
    uri: str, *, version: int | None = None, storage_options: Mapping[str, str] | None = None
) -> DeltaTable | None:
    """The Delta table at `uri`, or None if nothing has been committed there yet."""
    try:
        return DeltaTable(uri, version=version, storage_options=dict(storage_options or {}))
    except DeltaTableNotFound:
        return None


def table_version(uri: str, storage_options: Mapping[str, str] | None = None) -> int | None:
    table = open_table(uri, storage_options=storage_options)
    return None if table is None else table.version()


def history(
    uri: str, *, limit: int | None = None, storage_options: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Commits newest first, each with version, timestamp, operation and our run metadata."""
    table = open_table(uri, storage_options=storage_options)
    if table is None:
        return []
    return [commit_entry(c) for c in table.history(limit)]


# Write metrics `commit_files` stores as commit metadata (delta-rs' transaction API records
# none); `commit_entry` moves them into operationMetrics.
_WRITE_METRICS = ("num_added_rows", "num_added_files", "num_removed_files")
# Delta Spark's operation metrics under the names delta-rs uses (and `medallion history` shows).
_METRIC_ALIASES = {
    "numOutputRows": "num_added_rows",
    "numDeletedRows": "num_deleted_rows",
    "numCopiedRows": "num_copied_rows",
    "numAddedFiles": "num_added_files",
    "numRemovedFiles": "num_removed_files",
}


def commit_entry(info: Mapping[str, Any]) -> dict[str, Any]:
    """One commit's commitInfo in one shape, whichever Delta implementation wrote it.

    delta-rs stores `{run_id, step, ...}` as top-level keys of commitInfo; Delta Spark stores them
    as a JSON object in `userMetadata`. Both come out as top-level keys, and Delta Spark's metrics
    (strings, camelCase) also under delta-rs' names as integers.
    """
    entry = dict(info)
    user = entry.get("userMetadata")
    if isinstance(user, str) and user.startswith("{"):
        try:
            meta = json.loads(user)
        except ValueError:
            meta = None
        if isinstance(meta, dict):
            for key, value in meta.items():
                entry.setdefault(str(key), value)
    metrics = dict(entry.get("operationMetrics") or {})
    for name in _WRITE_METRICS:
        if name in entry and name not in metrics:
            try:
                metrics[name] = int(entry.pop(name))
            except (TypeError, ValueError):
                continue
    for spark_name, name in _METRIC_ALIASES.items():
        if spark_name in metrics and name not in metrics:
            try:
                metrics[name] = int(metrics[spark_name])
            except (TypeError, ValueError):
                continue
    if metrics:
        entry["operationMetrics"] = metrics
    return entry


def add_actions(table: DeltaTable) -> pa.Table:
    """The live files of the table's version, from its log: `path` (relative and percent-encoded
    as logged, or absolute), `size_bytes`, `num_records`, `partition.<column>` (the logged value,
    typed), `null_count.<column>`, `min.<column>`, `max.<column>`. One row per file; no data file
    is opened."""
    return _read_stream(table.get_add_actions(flatten=True))


def arrow_schema(table: DeltaTable) -> pa.Schema:
    """The schema of the table's version as Arrow (delta-rs hands it over as an arro3 schema)."""
    return pa.schema(table.schema().to_arrow())


def _read_stream(source: Any) -> pa.Table:
    """An Arrow table from an object with the C stream interface (arro3, delta-rs' queries).

    `pa.table(source)` imports pandas first to test whether it is a DataFrame; reading the
    stream needs no pandas (other pyarrow calls in a run still import it, so this is no speed-up
    on its own)."""
    return pa.RecordBatchReader.from_stream(source).read_all()


def read_rows(
    table: DeltaTable,
    *,
    columns: Sequence[str],
    where: Mapping[str, Sequence[str]] | None = None,
) -> pa.Table:
    """`columns` of the table's version (each in its schema), in its schema's types; with
    `where`, only rows whose column holds one of the given values (`{"step": ["silver"]}`).

    Read with delta-rs' own query engine: a pyarrow dataset would import pandas, and DataFusion
    reads only the live files of the version `table` was opened at.
    """
    schema = arrow_schema(table)
    wanted = pa.schema([schema.field(c) for c in columns])
    if not columns:
        return wanted.empty_table()
    sql = f"SELECT {', '.join(_identifier(c) for c in columns)} FROM t"
    if where:
        sql += " WHERE " + " AND ".join(
            f"{_identifier(c)} IN ({', '.join(_literal(v) for v in values)})" if values else "FALSE"
            for c, values in where.items()
        )
    data = _read_stream(QueryBuilder().register("t", table).execute(sql))
    # DataFusion hands strings back as string_view; callers get the table's own types.
    return data.cast(wanted)


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def distinct_values(
    uri: str, column: str, *, storage_options: Mapping[str, str] | None = None
) -> set[Any]:
    """The distinct non-null values of `column` in the current version.

    Every bronze file holds one source file's batch id, and the log's file statistics say so
    (min equal to max, no nulls): those files cost nothing to answer. Only when some file holds
    more than one value (or has no statistics) is the column read, once, for the whole table.
    Statistics of long strings are truncated, the maximum rounded up, so a truncated pair is
    never equal. Reading the whole column of a 10M-row bronze on every ingest cost 640 MB.
    """
    table = open_table(uri, storage_options=storage_options)
    if table is None:
        return set()
    if column not in arrow_schema(table).names:
        return set()  # a column the table does not have yet holds no values
    if column in table.metadata().partition_columns:
        logged = add_actions(table).column(f"partition.{column}").to_pylist()
        return {v for v in logged if v is not None}
    files = add_actions(table)
    stats = [f"{kind}.{column}" for kind in ("min", "max", "null_count")]
    if not all(s in files.column_names for s in stats):
        return _scan_distinct(table, column)
    found: set[Any] = set()
    for low, high, nulls, rows in zip(
        *(files.column(s).to_pylist() for s in stats),
        files.column("num_records").to_pylist(),
        strict=True,
    ):
        if rows is not None and nulls is not None and nulls == rows:
            continue  # only nulls
        if low is None or nulls != 0 or low != high:
            return _scan_distinct(table, column)
        found.add(low)
    return found


def _scan_distinct(table: DeltaTable, column: str) -> set[Any]:
    sql = (
        f"SELECT DISTINCT {_identifier(column)} AS v FROM t WHERE {_identifier(column)} IS NOT NULL"
    )
    data = _read_stream(QueryBuilder().register("t", table).execute(sql))
    return set(data.column("v").to_pylist())


def partition_predicate(replace: Mapping[str, Sequence[str]]) -> str:
    """SQL predicate selecting the given partition values, e.g. `sale_month IN ('2025-01')`."""
    parts = []
    for column, values in replace.items():
        quoted = ", ".join("'" + str(v).replace("'", "''") + "'" for v in sorted(set(values)))
        parts.append(f"{column} IN ({quoted})")
    return " AND ".join(parts)


def conform(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Cast each batch to the contract schema (column order and types), counting nothing."""
    for batch in batches:
        if batch.schema.equals(schema):
            yield batch
            continue
        arrays = [batch.column(f.name).cast(f.type) for f in schema]
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)


class _CountingReader:
    """Wraps a batch iterator so the number of rows streamed into a write is known after it."""

    def __init__(self, batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> None:
        self.rows = 0
        self.schema = schema
        self._batches = batches

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        for batch in conform(self._batches, self.schema):
            self.rows += batch.num_rows
            yield batch

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.schema, iter(self))


def write_arrow(
    uri: str,
    data: pa.Table | pa.RecordBatchReader | Iterable[pa.RecordBatch],
    spec: WriteSpec,
    *,
    storage_options: Mapping[str, str] | None = None,
) -> WriteResult:
    """Write Arrow data as one commit, as `spec` says (see WriteSpec)."""
    if isinstance(data, pa.Table):
        batches: Iterable[pa.RecordBatch] = data.to_batches()
        spec = dataclasses.replace(spec, rows=data.num_rows)
    else:
        batches = data
    counter = _CountingReader(batches, spec.schema)
    existing = open_table(uri, storage_options=storage_options)
    if spec.replaces_nothing:
        version = None if existing is None else existing.version()
        return WriteResult(version=version, rows=0, files=0)
    schema_mode: Literal["merge"] | None = "merge" if lacks_columns(existing, spec.schema) else None
    write_deltalake(  # type: ignore[misc]  # the overloads x unions exceed mypy's limit
        uri,
        counter.reader(),
        mode=spec.commit_mode,  # type: ignore[arg-type]  # overloads tie predicate to "overwrite"
        partition_by=list(spec.partition_by) or None,
        predicate=spec.predicate,
        storage_options=dict(storage_options or {}) or None,
        commit_properties=spec.commit.properties(),
        schema_mode=schema_mode,
        writer_properties=_writer_properties(spec),
    )
    table = open_table(uri, storage_options=storage_options)
    assert table is not None
    return WriteResult(version=table.version(), rows=counter.rows, files=-1)


# Rows per Parquet row group. delta-rs keeps one open file per partition and builds each one's
# row group in memory; at its default (about a million rows) a 30M-row silver write over twelve
# months held 2.4 GiB, with this 1.1 GiB in the same time (bench in docs/benchmarks.md). DuckDB's
# own row groups are 122,880 rows, so readers see groups of the size they are made for.
ROW_GROUP_ROWS = 128 * 1024
# DuckDB scans a Parquet file one row group per thread, so a small batch written as one group
# (a 1 % late batch: 100k rows) was parsed by one of two cores. A write known to hold at most
# two groups' worth is split in two halves, down to groups of this many rows.
MIN_SPLIT_ROWS = 16 * 1024


def row_group_rows(rows: int | None) -> int:
    """Rows per Parquet row group for a write of at most `rows` rows (None: not known)."""
    if rows is None or rows > 2 * ROW_GROUP_ROWS:
        return ROW_GROUP_ROWS
    return max(MIN_SPLIT_ROWS, -(-rows // 2))


def _writer_properties(spec: WriteSpec) -> WriterProperties:
    plain = [c for c in spec.unique_columns if c in spec.schema.names]
    return WriterProperties(
        max_row_group_size=row_group_rows(spec.rows),
        column_properties={c: ColumnProperties(dictionary_enabled=False) for c in plain} or None,
    )


@dataclass(frozen=True)
class WrittenFile:
    """A Parquet data file an engine wrote inside the table folder, not yet committed."""

    path: str  # relative to the table root, e.g. "sale_month=2025-01/part-....parquet"
    size: int
    partition_values: Mapping[str, str | None]
    modification_time_ms: int
    metadata: pq.FileMetaData  # its footer: row count and the statistics of `stats`

    def add_action(self) -> AddAction:
        return AddAction(
            path=self.path,
            size=self.size,
            partition_values=dict(self.partition_values),
            modification_time=self.modification_time_ms,
            data_change=True,
            stats=json.dumps(file_stats(self.metadata), separators=(",", ":")),
        )


def commit_files(
    uri: str,
    files: Sequence[WrittenFile],
    spec: WriteSpec,
    *,
    storage_options: Mapping[str, str] | None = None,
) -> WriteResult:
    """Commit Parquet files an engine wrote into the table folder, as `spec` says, in one
    transaction (delta-rs derives the removes of an overwrite or a replacement).

    Zero files: a new table is created empty (its schema readable), an append to an existing
    table commits nothing, and a replacement still commits its removes (the partitions are
    empty now).
    """
    options = dict(storage_options or {})
    table = open_table(uri, storage_options=options)
    if spec.replaces_nothing:
        return WriteResult(version=None if table is None else table.version(), rows=0, files=0)
    adds = [f.add_action() for f in files]
    partition_by = list(spec.partition_by) or None
    rows = sum(f.metadata.num_rows for f in files)
    # delta-rs' transaction API records no operation metrics: the commit carries the ones its
    # writer would (`commit_entry` shows them as operationMetrics, `medallion history` reads them).
    metrics = {
        "num_added_rows": rows,
        "num_added_files": len(files),
        "num_removed_files": _files_replaced(table, spec),
    }
    commit = dataclasses.replace(
        spec.commit,
        extra={**(spec.commit.extra or {}), **{k: str(v) for k, v in metrics.items()}},
    )
    if table is None:
        create_table_with_add_actions(
            uri,
            DeltaSchema.from_arrow(spec.schema),
            adds,
            mode="append",
            partition_by=partition_by,
            storage_options=options or None,
            commit_properties=commit.properties(),
        )
    elif adds or spec.commit_mode == "overwrite":
        filters = (
            [(column, "in", sorted(set(values))) for column, values in spec.replace.items()]
            if spec.replace
            else None
        )
        table.create_write_transaction(
            list(adds),
            mode=spec.commit_mode,
            schema=spec.schema,
            partition_by=partition_by,
            partition_filters=filters,
            commit_properties=commit.properties(),
        )
    else:
        # Appending nothing: no commit, so history does not fill with empty versions.
        return WriteResult(version=table.version(), rows=0, files=0)
    table = open_table(uri, storage_options=options)
    assert table is not None
    return WriteResult(version=table.version(), rows=rows, files=len(files))


def _files_replaced(table: DeltaTable | None, spec: WriteSpec) -> int:
    """How many live files the commit of `spec` removes."""
    if table is None or spec.commit_mode != "overwrite":
        return 0
    return int(files_in_partitions(table, spec.replace or {}).num_rows)


def files_in_partitions(table: DeltaTable, values: Mapping[str, Sequence[str]]) -> pa.Table:
    """The `add_actions` of the live files whose partition values are among `values` (per
    column; no columns: every live file)."""
    actions = add_actions(table)
    keep = pa.array([True] * actions.num_rows, pa.bool_())
    for column, wanted in values.items():
        logged = actions.column(f"partition.{column}")
        hit = pc.is_in(logged, pa.array(sorted(set(wanted)), type=logged.type))
        keep = pc.and_(keep, pc.fill_null(hit, False))
    return actions.filter(keep)


def files_by_partition(actions: pa.Table, column: str) -> dict[Any, frozenset[str]]:
    """The paths of the live files in `actions` (see `add_actions`), by their logged value of
    partition `column`."""
    if actions.num_rows == 0:
        return {}
    groups: dict[Any, set[str]] = {}
    paths = actions.column("path").to_pylist()
    for path, value in zip(paths, actions.column(f"partition.{column}").to_pylist(), strict=True):
        groups.setdefault(value, set()).add(path)
    return {value: frozenset(files) for value, files in groups.items()}


@dataclass(frozen=True)
class PartitionDiff:
    """How the partitions of one column differ between two versions of a table."""

    changed: set[Any]  # values whose live files differ (appeared and vanished ones included)
    rows: dict[Any, int | None]  # per value with live files at the newer version, its logged
    # row count (None: a file without one)


def partition_diff(
    uri: str,
    column: str,
    *,
    since: int,
    version: int,
    storage_options: Mapping[str, str] | None = None,
) -> PartitionDiff | None:
    """Which values of partition `column` hold other files at `version` than at `since`, from
    the log alone. A Delta writer never changes a file in place (a change adds new files), so a
    partition holding the same files holds the same rows. None when either version can no
    longer be loaded (log entries cleaned up) or `column` is not a partition column of both."""
    snapshots = []
    for v in (since, version):
        try:
            table = open_table(uri, version=v, storage_options=storage_options)
        except DeltaError:  # a version whose log entries are gone
            return None
        if table is None or column not in table.metadata().partition_columns:
            return None
        snapshots.append(add_actions(table))
    then, now = (files_by_partition(actions, column) for actions in snapshots)
    changed = {value for value in then.keys() | now.keys() if then.get(value) != now.get(value)}
    rows: dict[Any, int | None] = {}
    newer = snapshots[1]
    for value, count in zip(
        newer.column(f"partition.{column}").to_pylist(),
        newer.column("num_records").to_pylist(),
        strict=True,
    ):
        known = rows.get(value, 0)
        rows[value] = None if known is None or count is None else known + count
    return PartitionDiff(changed=changed, rows=rows)


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


def lacks_columns(table: DeltaTable | None, schema: pa.Schema) -> bool:
    """Whether a table written by an older release lacks columns the contract has added since.

    Such a write adds the (nullable) columns to the table's schema; older files read them as null.
    """
    if table is None:
        return False
    return not set(schema.names) <= set(arrow_schema(table).names)


def delete_where(
    uri: str,
    predicate: str,
    *,
    commit: CommitInfo,
    storage_options: Mapping[str, str] | None = None,
) -> int:
    """Delete rows matching `predicate` in one commit; returns the number of rows deleted."""
    table = open_table(uri, storage_options=storage_options)
    if table is None:
        return 0
    metrics = table.delete(predicate, commit_properties=commit.properties())
    return int(metrics.get("num_deleted_rows", 0) or 0)
