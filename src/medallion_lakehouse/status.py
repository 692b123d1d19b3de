"""Cheap facts about tables (versions, row counts from the Delta log) for `status`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow.compute as pc

from medallion_lakehouse.contracts import all_contracts
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.storage.delta import add_actions, commit_entry, open_table


@dataclass(frozen=True)
class TableStatus:
    name: str
    exists: bool
    version: int | None = None
    rows: int | None = None
    files: int | None = None
    last_commit: str | None = None
    last_operation: str | None = None
    last_run_id: str | None = None


def row_count(lake: Lake, name: str) -> int | None:
    """Rows from the Delta log's per-file statistics, without reading data files."""
    table = open_table(lake.uri(name), storage_options=lake.storage_options)
    if table is None:
        return None
    batch = add_actions(table)
    if batch.num_rows == 0:
        return 0
    return int(pc.sum(batch.column("num_records")).as_py() or 0)


def table_status(lake: Lake, name: str) -> TableStatus:
    table = open_table(lake.uri(name), storage_options=lake.storage_options)
    if table is None:
        return TableStatus(name=name, exists=False)
    last: dict[str, Any] = commit_entry(table.history(1)[0])
    when = datetime.fromtimestamp(last["timestamp"] / 1000, UTC).isoformat(timespec="seconds")
    return TableStatus(
        name=name,
        exists=True,
        version=table.version(),
        rows=row_count(lake, name),
        files=len(table.file_uris()),
        last_commit=when,
        last_operation=last.get("operation"),
        last_run_id=last.get("run_id"),
    )


def lake_status(lake: Lake) -> list[TableStatus]:
    return [table_status(lake, c.name) for c in all_contracts()]


def rows_at(lake: Lake, name: str, version: int) -> int | None:
    """Rows of `name` at `version`, from the log's file statistics (None if not known)."""
    table = open_table(lake.uri(name), version=version, storage_options=lake.storage_options)
    if table is None:
        return None
    batch = add_actions(table)
    if batch.num_rows == 0:
        return 0
    if "num_records" not in batch.column_names or batch.column("num_records").null_count:
        return None
    return int(pc.sum(batch.column("num_records")).as_py() or 0)


def rows_removed(lake: Lake, name: str, commit: dict[str, Any]) -> int | None:
    """Rows a commit removed: its own metric, else (for a partition overwrite, whose metrics
    count files only) the row counts before and after it. None when neither is known."""
    metrics = commit.get("operationMetrics") or {}
    for key in ("num_deleted_rows", "num_removed_rows", "numDeletedRows"):
        if metrics.get(key) is not None:
            return int(metrics[key])
    version = commit.get("version")
    added = metrics.get("num_added_rows")
    if not isinstance(version, int) or added is None or not metrics.get("num_removed_files"):
        return 0 if added is not None and version is not None else None
    before = rows_at(lake, name, version - 1) if version > 0 else 0
    after = rows_at(lake, name, version)
    if before is None or after is None:
        return None
    return before + int(added) - after
