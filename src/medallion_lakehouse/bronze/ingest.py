"""Bronze ingest: landing files -> bronze/sales (+ bronze/sales_rejects), idempotent by sha256.

Per file, in name order: hash it, skip it if its sha256 is already recorded, parse it, then
commit its rows, its rejects, and finally its row in `_meta/ingested_files`. That last row is the
commit marker: bronze rows whose sha256 has no marker were left by an interrupted ingest and are
deleted before the file is ingested again, so a crash at any point loses and duplicates nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa

from medallion_lakehouse.bronze import readers
from medallion_lakehouse.bronze.contract import BRONZE_REJECTS, BRONZE_SALES
from medallion_lakehouse.faults import checkpoint
from medallion_lakehouse.meta import INGESTED_FILES
from medallion_lakehouse.storage.delta import CommitInfo
from medallion_lakehouse.storage.lake import Lake

HASH_CHUNK = 8 << 20
Status = Literal["ingested", "skipped", "failed"]


@dataclass
class FileOutcome:
    source_file: str
    status: Status
    sha256: str | None = None
    size_bytes: int = 0
    format: str | None = None
    batch_id: str | None = None
    rows: int = 0
    rejects: int = 0
    parser: str | None = None
    rescued_columns: list[str] = field(default_factory=list)
    reason: str | None = None
    seconds: float = 0.0


@dataclass
class IngestResult:
    files: list[FileOutcome] = field(default_factory=list)
    recovered_rows: int = 0  # rows of interrupted earlier ingests that were removed

    def _count(self, status: Status) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def ingested(self) -> int:
        return self._count("ingested")

    @property
    def skipped(self) -> int:
        return self._count("skipped")

    @property
    def failed(self) -> int:
        return self._count("failed")

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def rejects(self) -> int:
        return sum(f.rejects for f in self.files)

    @property
    def bytes(self) -> int:
        return sum(f.size_bytes for f in self.files if f.status == "ingested")

    @property
    def batch_ids(self) -> list[str]:
        return [f.batch_id for f in self.files if f.status == "ingested" and f.batch_id]


@dataclass(frozen=True)
class Digest:
    sha256: str
    size: int
    data_lines: int  # physical lines after the header line
    looks_binary: bool


def discover(landing: Path) -> list[Path]:
    """Landing files in arrival (name) order; `_`/`.`-prefixed files such as manifests excluded."""
    if not landing.is_dir():
        return []
    found = [
        p
        for p in landing.rglob("*")
        if p.is_file()
        and not any(part.startswith(("_", ".")) for part in p.relative_to(landing).parts)
        and readers.file_format(p) is not None
    ]
    return sorted(found, key=lambda p: p.relative_to(landing).as_posix())


def digest(path: Path, on_bytes: Callable[[int], None] | None = None) -> Digest:
    """sha256, size and line count in one pass over the file."""
    sha = hashlib.sha256()
    size = newlines = 0
    last = b""
    looks_binary = False
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            if size == 0 and b"\x00" in chunk[:8192]:
                looks_binary = True
            sha.update(chunk)
            newlines += chunk.count(b"\n")
            size += len(chunk)
            last = chunk[-1:]
            if on_bytes:
                on_bytes(len(chunk))
    lines = newlines + (1 if size and last != b"\n" else 0)
    return Digest(sha.hexdigest(), size, max(lines - 1, 0), looks_binary)


@dataclass(frozen=True)
class Lineage:
    """The lineage values shared by every row of one ingested file."""

    source_file: str
    sha256: str
    batch_id: str
    ingested_at: datetime


def _lineage(batches: Iterable[pa.RecordBatch], lineage: Lineage) -> Iterator[pa.RecordBatch]:
    """Add the lineage columns of the bronze contract to parsed batches."""
    schema = BRONZE_SALES.schema
    source_file, sha256 = lineage.source_file, lineage.sha256
    batch_id, ingested_at = lineage.batch_id, lineage.ingested_at
    ingest_date = ingested_at.date().isoformat()
    for batch in batches:
        n = batch.num_rows
        yield pa.RecordBatch.from_arrays(
            [
                *(batch.column(c) for c in readers.SOURCE_COLUMNS),
                _repeat(source_file, n),
                _repeat(sha256, n),
                batch.column("_source_line"),
                _repeat(batch_id, n),
                pa.array(np.full(n, _micros(ingested_at), dtype="int64"), pa.int64()).cast(
                    schema.field("_ingested_at").type
                ),
                batch.column("_rescued_data"),
                _repeat(ingest_date, n),
            ],
            schema=schema,
        )


def _repeat(value: str, n: int) -> pa.Array:
    # A dictionary-decoded constant column is far cheaper to build than a Python list.
    return pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n, dtype=np.int32)), pa.array([value])
    ).cast(pa.string())


def _micros(ts: datetime) -> int:
    return int(ts.timestamp() * 1_000_000)


def _rejects_table(rejects: list[readers.Reject], lineage: Lineage) -> pa.Table:
    n = len(rejects)
    source_file, sha256 = lineage.source_file, lineage.sha256
    batch_id, ingested_at = lineage.batch_id, lineage.ingested_at
    return pa.table(
        {
            "_source_file": [source_file] * n,
            "_source_file_sha256": [sha256] * n,
            "_source_line": pa.array([r.line for r in rejects], pa.int64()),
            "_batch_id": [batch_id] * n,
            "_ingested_at": pa.array(
                [ingested_at] * n, BRONZE_REJECTS.schema.field("_ingested_at").type
            ),
            "raw_line": [r.raw for r in rejects],
            "error": [r.error for r in rejects],
            "_ingest_date": [ingested_at.date().isoformat()] * n,
        },
        schema=BRONZE_REJECTS.schema,
    )


def known_files(lake: Lake) -> set[str]:
    marker = lake.read_arrow(INGESTED_FILES.name, columns=["sha256"])
    return set(marker.column("sha256").to_pylist())


def recover_interrupted(lake: Lake, known: set[str], commit: CommitInfo) -> int:
    """Delete bronze rows and rejects of files whose ingest never reached its commit marker."""
    removed = 0
    for table in (BRONZE_SALES.name, BRONZE_REJECTS.name):
        orphans = sorted(lake.distinct_values(table, "_source_file_sha256") - known)
        if orphans:
            quoted = ", ".join(f"'{s}'" for s in orphans)
            removed += lake.delete_where(table, f"_source_file_sha256 IN ({quoted})", commit=commit)
    return removed


class _Clock:
    """Strictly increasing UTC timestamps, so later files always sort after earlier ones."""

    def __init__(self) -> None:
        self._last: datetime | None = None

    def now(self) -> datetime:
        now = datetime.now(UTC)
        if self._last is not None and now <= self._last:
            now = self._last + timedelta(microseconds=1)
        self._last = now
        return now


def ingest(
    lake: Lake,
    *,
    run_id: str,
    landing: Path | None = None,
    files: list[Path] | None = None,
    on_bytes: Callable[[int], None] | None = None,
    on_file: Callable[[FileOutcome], None] | None = None,
) -> IngestResult:
    """Ingest new landing files into bronze. Never raises for a bad file: it is reported."""
    landing = Path(landing or lake.settings.landing_path)
    paths = files if files is not None else discover(landing)
    commit = CommitInfo(run_id=run_id, step="bronze")
    known = known_files(lake)
    result = IngestResult(recovered_rows=recover_interrupted(lake, known, commit))
    clock = _Clock()
    for path in paths:
        started = datetime.now(UTC)
        outcome = _ingest_one(lake, path, landing, known, clock, commit, on_bytes)
        outcome.seconds = (datetime.now(UTC) - started).total_seconds()
        result.files.append(outcome)
        if on_file:
            on_file(outcome)
    return result


def _relative(path: Path, landing: Path) -> str:
    try:
        return path.resolve().relative_to(landing.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def _ingest_one(
    lake: Lake,
    path: Path,
    landing: Path,
    known: set[str],
    clock: _Clock,
    commit: CommitInfo,
    on_bytes: Callable[[int], None] | None,
) -> FileOutcome:
    source = _relative(path, landing)
    fmt = readers.file_format(path)
    try:
        info = digest(path, on_bytes)
    except OSError as exc:
        return FileOutcome(source, "failed", format=fmt, reason=f"cannot read file: {exc}")
    outcome = FileOutcome(source, "skipped", sha256=info.sha256, size_bytes=info.size, format=fmt)
    if info.sha256 in known:
        outcome.reason = "already ingested (same sha256)"
        return outcome
    if info.looks_binary and fmt != "parquet":
        outcome.status = "failed"
        outcome.reason = f"binary content (NUL bytes) in a .{path.suffix.lstrip('.')} file"
        return outcome

    ingested_at = clock.now()
    batch_id = f"{ingested_at:%Y%m%dT%H%M%S%f}-{info.sha256[:12]}"
    outcome.batch_id = batch_id
    lineage = Lineage(source, info.sha256, batch_id, ingested_at)
    report = readers.ParseReport()
    try:
        wrote = _write_rows(lake, path, fmt, info, report, lineage, commit)
    except readers.FileUnreadableError as exc:
        outcome.status = "failed"
        outcome.reason = str(exc)
        return outcome
    except OSError as exc:
        outcome.status = "failed"
        outcome.reason = f"cannot read file: {exc}"
        return outcome
    if report.rejects:
        lake.write_arrow(
            BRONZE_REJECTS.name, _rejects_table(report.rejects, lineage), commit=commit
        )
    checkpoint("bronze.before_marker")
    outcome.status = "ingested"
    outcome.rows = wrote
    outcome.rejects = len(report.rejects)
    outcome.parser = report.path
    outcome.rescued_columns = report.rescued_columns
    lake.write_arrow(
        INGESTED_FILES.name, _marker(outcome, ingested_at, commit.run_id), commit=commit
    )
    known.add(info.sha256)
    return outcome


def _write_rows(
    lake: Lake,
    path: Path,
    fmt: str | None,
    info: Digest,
    report: readers.ParseReport,
    lineage: Lineage,
    commit: CommitInfo,
    before_commit: Callable[[], None] | None = None,
) -> int:
    """Parse and commit the file's rows; returns how many were written.

    `before_commit` runs after the last batch was parsed and before the Delta commit; raising
    there abandons the write (nothing is committed).
    """

    def commit_batches(batches: Iterable[pa.RecordBatch]) -> int:
        stream = _lineage(batches, lineage)
        first = next(stream, None)
        if first is None:
            return 0

        def chained() -> Iterator[pa.RecordBatch]:
            yield first
            yield from stream
            checkpoint("bronze.before_commit")
            if before_commit is not None:
                before_commit()

        return lake.write_arrow(BRONZE_SALES.name, chained(), commit=commit).rows

    if fmt == "jsonl":
        return commit_batches(readers.read_jsonl(path, report))
    if fmt == "parquet":
        return commit_batches(readers.read_parquet(path, report))
    cmap, header_bytes = readers.csv_header_map(path)
    if cmap is None:
        return 0
    report.rescued_columns = [name for name, _ in cmap.extras]
    try:
        return commit_batches(readers.stream_csv_fast(path, cmap, report, info.data_lines))
    except Exception:
        # The Delta writer wraps errors raised inside the stream; the flag tells them apart.
        if not report.fast_path_failed:
            raise
    report.rows = 0
    report.rejects.clear()
    return commit_batches(readers.stream_csv_slow(path, cmap, header_bytes, report))


def _marker(outcome: FileOutcome, ingested_at: datetime, run_id: str) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "source_file": outcome.source_file,
                "sha256": outcome.sha256,
                "size_bytes": outcome.size_bytes,
                "format": outcome.format,
                "batch_id": outcome.batch_id,
                "rows": outcome.rows,
                "rejects": outcome.rejects,
                "rescued_columns": json.dumps(outcome.rescued_columns),
                "parser": outcome.parser,
                "ingested_at": ingested_at,
                "run_id": run_id,
            }
        ],
        schema=INGESTED_FILES.schema,
    )
