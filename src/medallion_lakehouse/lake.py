"""The lake: table names -> locations, reads and writes through the active engine.

Steps talk to tables by contract name (`silver/sales`), never by path; this is the only place
that joins the settings, the contracts and the engine. It sits above both layers below it:
`engines/` (compute, and each engine's Delta commits) and `storage/` (the Delta log: versions,
live files, statistics).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from medallion_lakehouse.config import Settings
from medallion_lakehouse.contracts import TableContract, get_contract
from medallion_lakehouse.engines import Engine, create_engine
from medallion_lakehouse.lazy_imports import ibis
from medallion_lakehouse.storage import delta
from medallion_lakehouse.storage.delta import CommitInfo, WriteMode, WriteResult, WriteSpec

if TYPE_CHECKING:
    import ibis.expr.types as ir


class Lake:
    def __init__(
        self,
        settings: Settings,
        engine: Engine | None = None,
        *,
        guard: Callable[[], None] | None = None,
    ) -> None:
        """`guard` runs before every write and raises to refuse it (a writer that lost its
        lock must not commit); readers pass none."""
        self.settings = settings
        self._engine = engine
        self._owns_engine = engine is None
        self._guard = guard

    def check_writable(self) -> None:
        """Raise if this lake handle may not write now (see `guard`)."""
        if self._guard is not None:
            self._guard()

    # -- plumbing ------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(self.settings)
        return self._engine

    @property
    def storage_options(self) -> dict[str, str]:
        return dict(self.settings.storage_options)

    def close(self) -> None:
        if self._engine is not None and self._owns_engine:
            self._engine.close()
            self._engine = None

    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def contract(self, name: str) -> TableContract:
        return get_contract(name)

    def uri(self, name: str) -> str:
        return self.settings.table_uri(name)

    # -- metadata ------------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        return self.version(name) is not None

    def version(self, name: str) -> int | None:
        return delta.table_version(self.uri(name), self.storage_options)

    def history(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits newest first (the engine's Delta implementation reads them)."""
        return self.engine.history(self.uri(name), limit=limit)

    # -- engine reads and writes -----------------------------------------------------------
    def read(self, name: str, version: int | None = None) -> ir.Table:
        """The table as an Ibis table on the active engine (empty with its schema if unwritten).

        Columns the contract gained after the table was written read as null.
        """
        schema = self.contract(name).schema
        expr = self.engine.read_delta(self.uri(name), schema=schema, version=version)
        missing = {
            f.name: ibis.null(ibis.dtype(f.type)).name(f.name)
            for f in schema
            if f.name not in expr.columns
        }
        return expr.mutate(**missing) if missing else expr

    def write(
        self,
        name: str,
        expr: ir.Table,
        *,
        commit: CommitInfo,
        mode: WriteMode = "append",
        replace: Mapping[str, Sequence[str]] | None = None,
        rows: int | None = None,
    ) -> WriteResult:
        """Commit `expr` to table `name`; `rows`: at most how many it holds, when known."""
        self.check_writable()
        spec = self._spec(name, commit, mode, replace, rows)
        return self.engine.write_delta(expr, self.uri(name), spec)

    # -- Arrow from and to the driver (bronze ingest, metadata tables) ---------------------
    def write_arrow(
        self,
        name: str,
        data: pa.Table | pa.RecordBatchReader | Iterable[pa.RecordBatch],
        *,
        commit: CommitInfo,
        mode: WriteMode = "append",
        replace: Mapping[str, Sequence[str]] | None = None,
        rows: int | None = None,
    ) -> WriteResult:
        """Commit Arrow `data` to table `name`; `rows`: at most how many it holds, when known
        (a table knows its own)."""
        self.check_writable()
        spec = self._spec(name, commit, mode, replace, rows)
        return self.engine.write_arrow(data, self.uri(name), spec)

    def _spec(
        self,
        name: str,
        commit: CommitInfo,
        mode: WriteMode,
        replace: Mapping[str, Sequence[str]] | None,
        rows: int | None,
    ) -> WriteSpec:
        """A write of table `name`: schema and partitioning from its contract."""
        contract = self.contract(name)
        return WriteSpec(
            schema=contract.schema,
            commit=commit,
            mode=mode,
            partition_by=tuple(contract.partition_by),
            replace=replace,
            unique_columns=contract.unique_columns,
            rows=rows,
        )

    def read_arrow(
        self,
        name: str,
        *,
        version: int | None = None,
        columns: Sequence[str] | None = None,
        where: Mapping[str, Sequence[str]] | None = None,
    ) -> pa.Table:
        """Read a table into Arrow on the driver (for metadata tables and tests); `where` keeps
        the rows whose column holds one of the given values."""
        table = delta.open_table(
            self.uri(name), version=version, storage_options=self.storage_options
        )
        contract = self.contract(name)
        if table is None:
            empty = contract.empty()
            return empty.select(list(columns)) if columns else empty
        wanted = list(columns) if columns else contract.column_names
        logged = set(delta.arrow_schema(table).names)
        data = delta.read_rows(table, columns=[c for c in wanted if c in logged], where=where)
        for c in wanted:
            if c not in logged:  # a column the contract gained after the table was written
                field = contract.schema.field(c)
                data = data.append_column(field, pa.nulls(data.num_rows, field.type))
        return data.select(wanted)

    def distinct_values(self, name: str, column: str) -> set[Any]:
        """Distinct non-null values of a column, from file statistics where they suffice."""
        return delta.distinct_values(self.uri(name), column, storage_options=self.storage_options)

    def partition_diff(
        self, name: str, column: str, *, since: int, version: int
    ) -> delta.PartitionDiff | None:
        """Which partitions of `column` changed files between two versions (from the log)."""
        return delta.partition_diff(
            self.uri(name),
            column,
            since=since,
            version=version,
            storage_options=self.storage_options,
        )

    def rows_in(self, name: str, values: Mapping[str, Sequence[str]]) -> int | None:
        """Rows the current version holds in these partitions, from the log's file statistics
        (None: a file without a row count)."""
        table = delta.open_table(self.uri(name), storage_options=self.storage_options)
        if table is None:
            return 0
        counts = delta.files_in_partitions(table, values).column("num_records").to_pylist()
        return None if any(n is None for n in counts) else sum(counts)

    def delete_where(self, name: str, predicate: str, *, commit: CommitInfo) -> int:
        self.check_writable()
        return self.engine.delete_where(self.uri(name), predicate, commit=commit)
