"""Schema-change events: a batch whose columns differ from its source's previous batch.

Bronze keeps each file's own column names (`_meta/ingested_files.columns`); a feed that adds,
drops or renames a column is still ingested (unknown columns go to `_rescued_data`), so the
change would pass unseen. After each ingest the events are derived again from the ledger and
the new ones appended to `_meta/schema_changes`; `medallion status` and the report show them.

A *source* is the folder of the landing area a file sits in: a feed lands in its own folder,
and files of one folder are expected to share a layout. Names compare as bronze maps them
(`readers.normalise_header`: case and surrounding spaces ignored) and order is ignored, since
bronze maps columns by name. A column removed while an alias of the same canonical column
(medallion.toml `[columns]`) is added is reported as renamed, not as one added and one removed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

import pyarrow as pa

from medallion_lakehouse.bronze.readers import normalise_header
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.meta import INGESTED_FILES, SCHEMA_CHANGES
from medallion_lakehouse.storage.delta import CommitInfo


@dataclass(frozen=True)
class LedgerFile:
    """What the ledger says of one batch: enough to compare it with the source's previous one."""

    source_file: str
    batch_id: str
    seq: int
    columns: tuple[str, ...] | None  # None: unknown (empty file, rebuilt row, older ledger)


@dataclass(frozen=True)
class SchemaChange:
    source: str
    batch_id: str
    seq: int
    source_file: str
    previous_batch_id: str
    previous_file: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    renamed: tuple[tuple[str, str, str], ...] = field(default=())  # (from, to, canonical)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> SchemaChange:
        """A recorded event back from its row (as `recorded` returns it, lists decoded)."""
        return cls(
            row["source"],
            row["batch_id"],
            row["seq"],
            row["source_file"],
            row["previous_batch_id"],
            row["previous_file"],
            tuple(row["added"]),
            tuple(row["removed"]),
            tuple((r["from"], r["to"], r["column"]) for r in row["renamed"]),
        )

    def describe(self) -> str:
        parts = [
            f"{a} -> {b}"
            + ("" if c in (normalise_header(a), normalise_header(b)) else f" (as {c})")
            for a, b, c in self.renamed
        ]
        words = [
            *(["renamed " + ", ".join(parts)] if parts else []),
            *(["added " + ", ".join(self.added)] if self.added else []),
            *(["removed " + ", ".join(self.removed)] if self.removed else []),
        ]
        return "; ".join(words)

    def describe_event(self) -> str:
        """The change with where it happened, in one line."""
        return f"{self.source_file}: {self.describe()} (against {self.previous_file})"

    def as_row(self, run_id: str, detected_at: datetime) -> dict[str, Any]:
        return {
            "source": self.source,
            "batch_id": self.batch_id,
            "seq": self.seq,
            "source_file": self.source_file,
            "previous_batch_id": self.previous_batch_id,
            "previous_file": self.previous_file,
            "added": json.dumps(list(self.added)),
            "removed": json.dumps(list(self.removed)),
            "renamed": json.dumps([{"from": a, "to": b, "column": c} for a, b, c in self.renamed]),
            "detected_at": detected_at,
            "run_id": run_id,
        }


def source_of(source_file: str) -> str:
    """The landing folder of a file (`.` for files at the top of the landing area)."""
    return PurePosixPath(source_file).parent.as_posix()


def _by_name(columns: Sequence[str]) -> dict[str, str]:
    """Normalised name -> the spelling received first (a repeated column is one column)."""
    out: dict[str, str] = {}
    for raw in columns:
        out.setdefault(normalise_header(raw), raw)
    return out


def compare(
    previous: Sequence[str], current: Sequence[str], aliases: Mapping[str, Sequence[str]]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, str, str], ...]]:
    """(added, removed, renamed) from one header to the next; pure."""
    before, after = _by_name(previous), _by_name(current)
    added = [n for n in after if n not in before]
    removed = [n for n in before if n not in after]
    renamed: list[tuple[str, str, str]] = []
    for column, names in aliases.items():
        family = [column, *(normalise_header(a) for a in names)]
        gone = [n for n in removed if n in family]
        new = [n for n in added if n in family]
        for old, fresh in zip(gone, new, strict=False):
            renamed.append((before[old], after[fresh], column))
            removed.remove(old)
            added.remove(fresh)
    return (
        tuple(after[n] for n in added),
        tuple(before[n] for n in removed),
        tuple(renamed),
    )


def detect(files: Iterable[LedgerFile], aliases: Mapping[str, Sequence[str]]) -> list[SchemaChange]:
    """Every change in the ledger, each batch against the previous batch of its source with
    known columns (in `_batch_seq` order); pure."""
    last: dict[str, LedgerFile] = {}
    out = []
    for f in sorted(files, key=lambda f: f.seq):
        if f.columns is None:
            continue
        source = source_of(f.source_file)
        prev = last.get(source)
        last[source] = f
        if prev is None:
            continue
        assert prev.columns is not None  # files with unknown columns never become `last`
        added, removed, renamed = compare(prev.columns, f.columns, aliases)
        if added or removed or renamed:
            out.append(
                SchemaChange(
                    source,
                    f.batch_id,
                    f.seq,
                    f.source_file,
                    prev.batch_id,
                    prev.source_file,
                    added,
                    removed,
                    renamed,
                )
            )
    return out


def ledger_files(lake: Lake) -> list[LedgerFile]:
    table = lake.read_arrow(
        INGESTED_FILES.name, columns=["source_file", "batch_id", "seq", "columns"]
    )
    return [
        LedgerFile(
            r["source_file"],
            r["batch_id"],
            int(r["seq"]),
            tuple(json.loads(r["columns"])) if r["columns"] else None,
        )
        for r in table.to_pylist()
        if r["seq"] is not None
    ]


def record(lake: Lake, commit: CommitInfo) -> list[SchemaChange]:
    """Append the changes `_meta/schema_changes` does not hold yet; returns them.

    Derived from the ledger each time, so a lost table is rebuilt and a rerun adds nothing.
    """
    found = detect(ledger_files(lake), lake.settings.columns)
    have = set(lake.read_arrow(SCHEMA_CHANGES.name, columns=["batch_id"]).column(0).to_pylist())
    new = [c for c in found if c.batch_id not in have]
    if new:
        now = datetime.now(UTC)
        rows = [c.as_row(commit.run_id, now) for c in new]
        lake.write_arrow(
            SCHEMA_CHANGES.name,
            pa.Table.from_pylist(rows, schema=SCHEMA_CHANGES.schema),
            commit=commit,
        )
    return new


def recorded(lake: Lake) -> list[dict[str, Any]]:
    """The recorded events, newest batch first, lists decoded (for status, the report, --json)."""
    table = lake.read_arrow(SCHEMA_CHANGES.name)
    rows = sorted(table.to_pylist(), key=lambda r: r["seq"] or 0, reverse=True)
    for r in rows:
        for key in ("added", "removed", "renamed"):
            r[key] = json.loads(r[key]) if r[key] else []
        if r["detected_at"] is not None:
            r["detected_at"] = r["detected_at"].isoformat()
    return rows
