"""Delta Lake tables over delta-rs, independent of the compute engine.

Two ways in: `write_arrow` streams Arrow record batches (the DuckDB engine), and `commit_files`
commits Parquet files that another engine wrote into the table folder (the Spark engine). Both end
in one delta-rs commit tagged with `{run_id, step}`, so a crash before the commit leaves the table
at its previous version (orphan data files are invisible and removed by `vacuum`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import TableNotFoundError as DeltaTableNotFound
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

WriteMode = Literal["append", "overwrite"]


@dataclass(frozen=True)
class CommitInfo:
    """Who is writing: stored as custom commit metadata, shown by `medallion history`."""

    run_id: str
    step: str
    extra: Mapping[str, str] | None = None

    def properties(self) -> CommitProperties:
        meta = {"run_id": self.run_id, "step": self.step}
        if self.extra:
            meta.update({k: str(v) for k, v in self.extra.items()})
        return CommitProperties(custom_metadata=meta)


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
    return list(table.history(limit))


def distinct_values(
    uri: str, column: str, *, storage_options: Mapping[str, str] | None = None
) -> set[Any]:
    """The distinct non-null values of `column` in the current version.

    A data file whose Parquet statistics say it holds a single value (every bronze file holds
    one source file's sha256) costs a footer read; any other file is scanned batch by batch.
    So the cost follows the number of files, not rows: reading the whole sha256 column of a 10M-row
    bronze materialised 640 MB of strings on every ingest.
    """
    table = open_table(uri, storage_options=storage_options)
    if table is None:
        return set()
    found: set[Any] = set()
    for fragment in table.to_pyarrow_dataset().get_fragments():
        value = _single_value(fragment.metadata, column)
        if value is not None:
            found.add(value)
            continue
        for batch in fragment.to_batches(columns=[column]):
            found.update(v for v in pc.unique(batch.column(0)).to_pylist() if v is not None)
    return found


def _single_value(metadata: pq.FileMetaData, column: str) -> Any | None:
    """The only value of a never-null column in a Parquet file, per its statistics; else None."""
    names = metadata.schema.names
    if column not in names or metadata.num_row_groups == 0:
        return None
    index = names.index(column)
    values = set()
    for g in range(metadata.num_row_groups):
        stats = metadata.row_group(g).column(index).statistics
        if stats is None or not stats.has_min_max or not stats.has_null_count:
            return None
        if stats.null_count or stats.min != stats.max:
            return None
        values.add(stats.min)
    return values.pop() if len(values) == 1 else None


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
    *,
    schema: pa.Schema,
    commit: CommitInfo,
    mode: WriteMode = "append",
    partition_by: Sequence[str] = (),
    replace: Mapping[str, Sequence[str]] | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> WriteResult:
    """Write Arrow data as one commit.

    `replace={"sale_month": [...]}` replaces exactly those partitions (a predicate overwrite); an
    empty `replace` mapping value list with no data is a no-op. `mode="overwrite"` without
    `replace` replaces the whole table.
    """
    if isinstance(data, pa.Table):
        batches: Iterable[pa.RecordBatch] = data.to_batches()
    else:
        batches = data
    counter = _CountingReader(batches, schema)
    predicate = None
    existing = open_table(uri, storage_options=storage_options)
    if replace is not None:
        if not any(replace.values()):
            version = None if existing is None else existing.version()
            return WriteResult(version=version, rows=0, files=0)
        mode = "overwrite"
        predicate = partition_predicate(replace)
    schema_mode: Literal["merge"] | None = "merge" if _lacks_columns(existing, schema) else None
    write_deltalake(  # type: ignore[misc]  # the overloads x unions exceed mypy's limit
        uri,
        counter.reader(),
        mode=mode,  # type: ignore[arg-type]  # overloads tie predicate to "overwrite"; set above
        partition_by=list(partition_by) or None,
        predicate=predicate,
        storage_options=dict(storage_options or {}) or None,
        commit_properties=commit.properties(),
        schema_mode=schema_mode,
    )
    table = open_table(uri, storage_options=storage_options)
    assert table is not None
    return WriteResult(version=table.version(), rows=counter.rows, files=-1)


def _lacks_columns(table: DeltaTable | None, schema: pa.Schema) -> bool:
    """Whether a table written by an older release lacks columns the contract has added since.

    Such a write adds the (nullable) columns to the table's schema; older files read them as null.
    """
    if table is None:
        return False
    have = {f.name for f in pa.schema(table.schema().to_arrow())}
    return not set(schema.names) <= have


@dataclass(frozen=True)
class StagedFile:
    """A Parquet data file already inside the table folder, ready to be committed."""

    path: str  # relative to the table root, e.g. "sale_month=2025-01/part-....parquet"
    size: int
    rows: int
    partition_values: Mapping[str, str | None]
    modification_time_ms: int
    # Delta `stats` (numRecords, nullCount, minValues, maxValues); None: numRecords only.
    stats: Mapping[str, Any] | None = None

    def add_action(self) -> AddAction:
        stats = dict(self.stats) if self.stats else {}
        stats["numRecords"] = self.rows
        return AddAction(
            path=self.path,
            size=self.size,
            partition_values=dict(self.partition_values),
            modification_time=self.modification_time_ms,
            data_change=True,
            stats=json.dumps(stats, separators=(",", ":")),
        )


def commit_files(
    uri: str,
    files: Sequence[StagedFile],
    *,
    schema: pa.Schema,
    commit: CommitInfo,
    mode: WriteMode = "append",
    partition_by: Sequence[str] = (),
    replace: Mapping[str, Sequence[str]] | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> WriteResult:
    """Commit Parquet files written by another engine in one transaction (adds and removes).

    delta-rs derives the removes: `replace={"sale_month": [...]}` removes the live files of those
    partitions, `mode="overwrite"` without `replace` removes every live file. Zero files:
    a new table is created empty (its schema readable), an append to an existing table
    commits nothing, and a replace or overwrite still commits its removes (the partitions
    really are empty now).
    """
    options = dict(storage_options or {})
    adds = [f.add_action() for f in files]
    table = open_table(uri, storage_options=options)
    partition_filters: list[tuple[str, str, Any]] | None = None
    if replace is not None:
        if not any(replace.values()):
            return WriteResult(version=None if table is None else table.version(), rows=0, files=0)
        mode = "overwrite"
        partition_filters = [(col, "in", sorted(set(vals))) for col, vals in replace.items()]
    if table is None:
        # Version 0 holds the staged files (or none: an empty table with its schema).
        create_table_with_add_actions(
            uri,
            DeltaSchema.from_arrow(schema),
            adds,
            mode="append",
            partition_by=list(partition_by) or None,
            storage_options=options or None,
            commit_properties=commit.properties(),
        )
    elif adds or mode == "overwrite":
        actions: list[AddAction | RemoveAction] = list(adds)
        table.create_write_transaction(
            actions,
            mode=mode,
            schema=schema,
            partition_by=list(partition_by) or None,
            partition_filters=partition_filters,
            commit_properties=commit.properties(),
        )
    else:
        # Appending nothing: no commit, so history does not fill with empty versions.
        return WriteResult(version=table.version(), rows=0, files=0)
    table = open_table(uri, storage_options=options)
    assert table is not None
    return WriteResult(version=table.version(), rows=sum(f.rows for f in files), files=len(files))


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
