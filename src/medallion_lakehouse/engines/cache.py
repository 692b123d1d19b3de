"""Tables materialised on an engine for the length of one step, released at its end."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from medallion_lakehouse.engines.base import Engine

if TYPE_CHECKING:
    import ibis.expr.types as ir


class StepCache:
    """`cache(expr)` materialises `expr` once (a step that reads it several times pays for one
    evaluation); `release()` drops every table it made. Use it as a context manager."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.tables: list[ir.Table] = []

    def __call__(self, expr: ir.Table, *, rows: int | None = None) -> ir.Table:
        """`expr` materialised (`rows`: an upper bound of its size, when known)."""
        cached = self.engine.cache(expr, rows=rows)
        self.tables.append(cached)
        return cached

    def drop(self, table: ir.Table) -> None:
        """Release one cached table before the step ends (its memory is needed next)."""
        self.tables.remove(table)
        self.engine.release_cached(table)

    def release(self) -> None:
        for table in self.tables:
            self.engine.release_cached(table)
        self.tables.clear()

    def __enter__(self) -> StepCache:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.release()
            return
        # The step is failing already: a cleanup error must not replace the reason (a write
        # that ran out of spill disk at 100M rows surfaced as DuckDB's "connection is busy").
        with contextlib.suppress(Exception):
            self.release()
