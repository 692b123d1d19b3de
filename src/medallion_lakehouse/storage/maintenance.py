"""Delta table maintenance: compact, vacuum, restore, and whether an old version is still readable.

The CLI's `optimize`, `restore` and `show --version` call these; the knowledge of delta-rs's
maintenance API (retention checks, commit metadata, the files a version needs) lives here only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from medallion_lakehouse.storage.delta import CommitInfo, add_actions, open_table

# Delta's default `deletedFileRetentionDuration`: a vacuum keeping files this long leaves a week
# of versions readable; anything shorter ends time travel (and `restore`) sooner.
DEFAULT_RETENTION_HOURS = 168
SMALL_FILE_BYTES = 16 << 20  # a data file below this is worth compacting


@dataclass(frozen=True)
class Maintenance:
    """What `optimize` found (dry run) or did (applied) for one table."""

    table: str
    version: int
    files: int
    small_files: int
    bytes: int
    applied: bool
    files_removed: int | None = None  # by compaction
    files_added: int | None = None
    vacuum_files: int = 0  # removed (applied) or removable (dry run)

    def as_dict(self) -> dict[str, Any]:
        compacted = (
            None
            if self.files_removed is None
            else {"files_removed": self.files_removed, "files_added": self.files_added}
        )
        return {
            "table": self.table,
            "version": self.version,
            "files": self.files,
            "small_files": self.small_files,
            "bytes": self.bytes,
            "compacted": compacted,
            "vacuum_files": self.vacuum_files,
            "applied": self.applied,
        }


def optimize_table(
    name: str,
    uri: str,
    *,
    apply: bool,
    retention_hours: int,
    commit: CommitInfo,
    storage_options: Mapping[str, str] | None = None,
) -> Maintenance | None:
    """Compact small files and vacuum unreferenced ones (without `apply`: only count them).

    None when the table has not been written. The caller has validated `retention_hours` (>= 0)
    and decided that a retention below DEFAULT_RETENTION_HOURS is wanted; delta-rs refuses one
    unless told not to enforce its minimum, so it is told.
    """
    table = open_table(uri, storage_options=storage_options)
    if table is None:
        return None
    actions = add_actions(table)
    sizes = [int(s) for s in actions.column("size_bytes").to_pylist()] if actions.num_rows else []
    removed = added = None
    props = commit.properties()
    if apply:
        metrics = table.optimize.compact(commit_properties=props)
        removed = int(metrics.get("numFilesRemoved", 0))
        added = int(metrics.get("numFilesAdded", 0))
    vacuumed = table.vacuum(
        retention_hours=retention_hours,
        dry_run=not apply,
        enforce_retention_duration=retention_hours >= DEFAULT_RETENTION_HOURS,
        commit_properties=props if apply else None,
    )
    return Maintenance(
        table=name,
        version=table.version(),
        files=len(sizes),
        small_files=sum(1 for s in sizes if s < SMALL_FILE_BYTES),
        bytes=sum(sizes),
        applied=apply,
        files_removed=removed,
        files_added=added,
        vacuum_files=len(vacuumed),
    )


def _local_path(file_uri: str) -> Path | None:
    """The local path of a `file://` (or plain path) URI; None for an object-store URI."""
    parsed = urlparse(file_uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path))
    if len(parsed.scheme) == 1:  # a Windows drive letter, not a scheme
        return Path(file_uri)
    return None


def missing_files(
    uri: str, version: int, storage_options: Mapping[str, str] | None = None
) -> int | None:
    """How many data files version `version` needs that are gone (vacuumed); None if unknown.

    Only a local lake can be checked cheaply; on an object store the read itself says so.
    """
    table = open_table(uri, version=version, storage_options=storage_options)
    if table is None:
        return None
    paths = [_local_path(u) for u in table.file_uris()]
    if any(p is None for p in paths):
        return None
    return sum(1 for p in paths if p is not None and not p.exists())


def restore_table(
    uri: str,
    version: int,
    *,
    commit: CommitInfo,
    storage_options: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Delta RESTORE: a new commit whose content is that of `version` (history is kept).

    Returns the new version and delta-rs's restore metrics (files added back and removed).
    """
    table = open_table(uri, storage_options=storage_options)
    if table is None:
        raise FileNotFoundError(uri)
    metrics = table.restore(version, commit_properties=commit.properties())
    return {"version": table.version(), "restored_from": version, "metrics": dict(metrics)}
