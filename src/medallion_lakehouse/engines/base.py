"""The engine interface: the few operations that differ between DuckDB and Spark.

Transformations are Ibis expressions and run unchanged on either backend; an engine only
supplies the edges: turning a Delta table into an Ibis table, and turning an Ibis expression (or
Arrow data from the driver) back into a Delta commit. Each engine has one Delta implementation
for all of its reads and commits: delta-rs (storage.delta) for DuckDB, Delta Spark for Spark.
Reading the log for planning (versions, live files) is storage.delta's, below both.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from medallion_lakehouse.storage.delta import CommitInfo, WriteResult, WriteSpec

if TYPE_CHECKING:
    import ibis
    import ibis.expr.types as ir
    import pyarrow as pa


class Engine(ABC):
    """A compute engine bound to one Ibis backend for the lifetime of a command."""

    name: str
    backend: ibis.BaseBackend

    def __init__(self, storage_options: Mapping[str, str] | None = None) -> None:
        self.storage_options = dict(storage_options or {})

    # -- reading -------------------------------------------------------------------------
    @abstractmethod
    def read_delta(self, uri: str, *, schema: pa.Schema, version: int | None = None) -> ir.Table:
        """The table at `uri` (at `version`), or an empty table of `schema` if none exists."""

    @abstractmethod
    def from_arrow(self, data: pa.Table) -> ir.Table:
        """An in-memory Arrow table as an Ibis table on this backend."""

    # -- writing -------------------------------------------------------------------------
    @abstractmethod
    def write_delta(self, expr: ir.Table, uri: str, spec: WriteSpec) -> WriteResult:
        """Evaluate `expr` and commit it to the Delta table at `uri` in one transaction."""

    @abstractmethod
    def write_arrow(
        self,
        data: pa.Table | pa.RecordBatchReader | Iterable[pa.RecordBatch],
        uri: str,
        spec: WriteSpec,
    ) -> WriteResult:
        """Commit Arrow data from the driver (bronze batches, metadata rows) in one transaction."""

    @abstractmethod
    def delete_where(self, uri: str, predicate: str, *, commit: CommitInfo) -> int:
        """Delete the rows matching a SQL predicate in one commit; the number deleted."""

    @abstractmethod
    def history(self, uri: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits newest first in storage.delta.commit_entry's shape ([] without a table)."""

    # -- results -------------------------------------------------------------------------
    @abstractmethod
    def to_arrow(self, expr: ir.Expr) -> pa.Table:
        """Evaluate a (small) expression into Arrow on the driver."""

    def count(self, expr: ir.Table) -> int:
        return int(self.scalar(expr.count()))

    def scalar(self, expr: ir.Scalar) -> Any:
        return self.backend.execute(expr)

    def unordered(self) -> AbstractContextManager[None]:
        """Within it, results need keep no row order (counts, or ordered by the query itself):
        an engine that preserves insertion order by default may then stream and spill more."""
        return contextlib.nullcontext()

    def cache(self, expr: ir.Table, *, rows: int | None = None) -> ir.Table:
        """Materialise `expr` for several reads; `rows` bounds its size when it is known (an
        engine may then keep a large one somewhere other than memory)."""
        return expr.cache()

    def release_cached(self, table: ir.Table) -> None:
        """Drop a table `cache` made."""
        try:
            table.release()
        except Exception:
            # ibis' release can fail on a backend (see drop_cached); it has already detached
            # its finalizer then, so the engine drops the table itself.
            self.drop_cached(table.op().name)

    def drop_cached(self, name: str) -> None:
        """Drop a table `expr.cache()` made, when ibis' own release failed."""
        self.backend.drop_table(name, force=True)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (Spark sessions)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
