"""Which Delta version of a table introduced something: a bisection over the table's log.

Both questions trace asks are monotonic in the version, so a bisection answers them with a
logarithmic number of snapshot loads (log only, no data files):
- "does this version hold a file of bronze batch B?" (bronze is append-only; each file is one
  batch, and compaction keeps the batch);
- "are the live files of partition M at this version the ones live now?" (a rewrite of M adds
  new files, so versions before the last rewrite of M never hold all of today's files of M).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeAlias

import pyarrow as pa

from medallion_lakehouse.storage.delta import add_actions, files_by_partition, open_table

if TYPE_CHECKING:
    from deltalake import DeltaTable

Snapshot: TypeAlias = pa.Table  # the add actions of one version, flattened


def first_version(
    uri: str,
    holds: Callable[[Snapshot], bool],
    *,
    storage_options: Mapping[str, str] | None = None,
) -> int | None:
    """The smallest version whose snapshot satisfies `holds` (monotonic), or None if none does."""
    table = open_table(uri, storage_options=storage_options)
    if table is None:
        return None
    hi = table.version()
    if not holds(add_actions(table)):
        return None
    lo = _oldest_loadable(table, hi)
    while lo < hi:
        mid = (lo + hi) // 2
        table.load_as_version(mid)
        if holds(add_actions(table)):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _oldest_loadable(table: DeltaTable, newest: int) -> int:
    """The oldest version still in the log (a vacuumed or log-cleaned table starts later)."""
    history = table.history()
    versions = [int(h["version"]) for h in history if h.get("version") is not None]
    return min(versions, default=newest)


def holds_batch(batch_id: str) -> Callable[[Snapshot], bool]:
    """A snapshot holds a file whose `_batch_id` statistics cover `batch_id`."""

    def check(actions: Snapshot) -> bool:
        if actions.num_rows == 0:
            return False
        lows = actions.column("min._batch_id").to_pylist()
        highs = actions.column("max._batch_id").to_pylist()
        return any(
            lo is not None and lo <= batch_id <= hi for lo, hi in zip(lows, highs, strict=True)
        )

    return check


def partition_files(actions: Snapshot, column: str, value: str) -> frozenset[str]:
    return files_by_partition(actions, column).get(value, frozenset())


def last_rewrite(
    uri: str, column: str, value: str, *, storage_options: Mapping[str, str] | None = None
) -> int | None:
    """The version that last rewrote partition `column=value` (None: the table or it is empty)."""
    table = open_table(uri, storage_options=storage_options)
    if table is None:
        return None
    now = partition_files(add_actions(table), column, value)
    if not now:
        return None
    return first_version(
        uri,
        lambda actions: partition_files(actions, column, value) == now,
        storage_options=storage_options,
    )
