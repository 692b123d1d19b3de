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

    def __call__(self, expr: ir.Table) -> ir.Table:
        cached = expr.cache()
        self.tables.append(cached)
        return cached

    def drop(self, table: ir.Table) -> None:
        """Release one cached table before the step ends (its memory is needed next)."""
        self.tables.remove(table)
        self._release(table)

    def release(self) -> None:
        for table in self.tables:
            self._release(table)
        self.tables.clear()

    def _release(self, table: ir.Table) -> None:
        try:
            table.release()
        except Exception:
            # ibis' release can fail on a backend (see Engine.drop_cached); it has already
            # detached its finalizer then, so the engine drops the table itself.
            self.engine.drop_cached(table.op().name)

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
