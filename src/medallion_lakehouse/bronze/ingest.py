"""Bronze ingest: landing files -> bronze/sales (+ bronze/sales_rejects), idempotent by sha256.

Per file, in name order: hash it, skip it if its sha256 is already recorded, parse it, then
commit its rows, its rejects, and finally its row in `_meta/ingested_files`. That last row is the
commit marker: bronze rows whose sha256 has no marker were left by an interrupted ingest and are
deleted before the file is ingested again, so a crash at any point loses and duplicates nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
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


class Discovered(list[Path]):
    """The landing files to ingest (a list, in arrival order), plus the paths refused.

    `refused` holds (path, reason) for entries that look like landing files but must not be
    read: symlinks leading out of the landing folder, broken symlinks, non-regular files. The
    caller reports them as skipped; `ingest` does so when given a Discovered.
    """

    def __init__(
        self, files: Iterable[Path] = (), refused: Iterable[tuple[Path, str]] = ()
    ) -> None:
        super().__init__(files)
        self.refused: list[tuple[Path, str]] = list(refused)


SYMLINK_OUTSIDE = "symlink to a path outside the landing folder"


def discover(landing: Path, *, options: readers.ReaderOptions | None = None) -> Discovered:
    """Landing files in arrival (name) order; `_`/`.`-prefixed files such as manifests excluded.

    Symlinks are never followed out of the landing folder: a link (to a file or a folder) whose
    target resolves outside it is refused with reason SYMLINK_OUTSIDE. A file reached by several
    names (links inside the folder) is listed once, under its own name if it has one there, and
    the other names are refused; links to folders inside are not descended (their files are
    found under their own names). Broken links and non-regular files (FIFOs...) are refused too.
    """
    if not landing.is_dir():
        return Discovered()
    root = landing.resolve()
    found: dict[Path, list[Path]] = {}  # resolved target -> the paths leading to it
    refused: list[tuple[Path, str]] = []

    def hidden(name: str) -> bool:
        return name.startswith(("_", "."))

    def inside(target: Path) -> bool:
        return target == root or target.is_relative_to(root)

    for folder, dirs, names in os.walk(landing, followlinks=False):
        base = Path(folder)
        for name in [d for d in dirs if not hidden(d)]:
            if (base / name).is_symlink() and not inside((base / name).resolve()):
                refused.append((base / name, SYMLINK_OUTSIDE))
        dirs[:] = sorted(d for d in dirs if not hidden(d) and not (base / d).is_symlink())
        for name in names:
            path = base / name
            if hidden(name) or readers.file_format(path, options=options) is None:
                continue
            if path.is_symlink():
                target = path.resolve()
                if not inside(target):
                    refused.append((path, SYMLINK_OUTSIDE))
                    continue
                if any(hidden(part) for part in target.relative_to(root).parts):
                    refused.append((path, "symlink to an excluded (_ or . prefixed) path"))
                    continue
            try:
                mode = path.stat().st_mode
            except OSError:
                refused.append((path, "broken symlink"))
                continue
            if not stat.S_ISREG(mode):
                refused.append((path, "not a regular file"))
                continue
            found.setdefault(path.resolve(), []).append(path)

    def rel(path: Path) -> str:
        return path.relative_to(landing).as_posix()

    files = []
    for paths in found.values():
        keep, *others = sorted(paths, key=lambda p: (p.is_symlink(), rel(p)))
        files.append(keep)
        refused += [(other, f"symlink to {rel(keep)}, listed under that name") for other in others]
    return Discovered(sorted(files, key=rel), sorted(refused, key=lambda r: rel(r[0])))


def digest(path: Path, on_bytes: Callable[[int], None] | None = None) -> Digest:
    """sha256 and size of the bytes on disk, line count and NUL check, in one pass.

    Lines are counted as the readers count them (universal newlines: `\\n`, `\\r\\n` and a
    lone `\\r` each end one). Every chunk is checked for NUL bytes, not just the first. A
    compressed file's bytes say nothing about its text: for one, `data_lines` is 0 and
    `looks_binary` False, and the reader counts lines and finds NUL bytes on the decompressed
    stream instead.
    """
    sha = hashlib.sha256()
    text = readers.compression_of(path) is None
    size = lf = cr = crlf = 0
    last = b""
    looks_binary = False
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            sha.update(chunk)
            if text:
                looks_binary = looks_binary or b"\x00" in chunk
                lf += chunk.count(b"\n")
                if b"\r" in chunk:  # memchr: LF-only files skip the counts
                    cr += chunk.count(b"\r")
                    crlf += chunk.count(b"\r\n")
                if last == b"\r" and chunk[:1] == b"\n":
                    crlf += 1  # split between two chunks
            size += len(chunk)
            last = chunk[-1:]
            if on_bytes:
                on_bytes(len(chunk))
    lines = lf + cr - crlf + (1 if size and last not in (b"\n", b"\r") else 0)
    return Digest(sha.hexdigest(), size, max(lines - 1, 0) if text else 0, looks_binary)


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
    options: readers.ReaderOptions | None = None,
) -> IngestResult:
    """Ingest new landing files into bronze. Never raises for a bad file: it is reported.

    Paths `discover` refused (given `files` from discover, or discovering here) are reported
    as skipped with their reason. `options` default to the lake's settings.
    """
    landing = Path(landing or lake.settings.landing_path)
    options = options or readers.ReaderOptions.from_settings(lake.settings)
    paths = files if files is not None else discover(landing, options=options)
    commit = CommitInfo(run_id=run_id, step="bronze")
    known = known_files(lake)
    result = IngestResult(recovered_rows=recover_interrupted(lake, known, commit))
    clock = _Clock()
    for link, why in paths.refused if isinstance(paths, Discovered) else ():
        try:
            name = link.relative_to(landing).as_posix()  # the link's own name, not its target
        except ValueError:
            name = str(link)
        result.files.append(FileOutcome(name, "skipped", reason=why))
        if on_file:
            on_file(result.files[-1])
    for path in paths:
        started = datetime.now(UTC)
        outcome = _ingest_one(lake, path, landing, known, clock, commit, on_bytes, options=options)
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
    *,
    options: readers.ReaderOptions | None = None,
) -> FileOutcome:
    source = _relative(path, landing)
    fmt = readers.file_format(path, options=options)
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
        wrote = _write_rows(lake, path, fmt, info, report, lineage, commit, options=options)
    except readers.FileUnreadableError as exc:
        outcome.status = "failed"
        outcome.reason = str(exc)
        return outcome
    except OSError as exc:
        outcome.status = "failed"
        outcome.reason = f"cannot read file: {exc}"
        return outcome
    except Exception as exc:  # one poison file never stops the others; nothing was committed
        outcome.status = "failed"
        outcome.reason = f"{type(exc).__name__}: {exc}"
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
    *,
    options: readers.ReaderOptions | None = None,
) -> int:
    """Parse and commit the file's rows; returns how many were written.

    `before_commit` runs after the last batch was parsed and before the Delta commit; raising
    there abandons the write (nothing is committed). A file that fails as a whole raises
    FileUnreadableError, even when the Delta writer wrapped the reader's exception.
    """
    options = options or readers.ReaderOptions()

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

    try:
        if fmt == "jsonl":
            return commit_batches(readers.read_jsonl(path, report, options=options))
        if fmt == "parquet":
            return commit_batches(readers.read_parquet(path, report, options=options))
        header = readers.read_csv_header(path, options=options)
        if header is None:
            return 0
        report.rescued_columns = [name for name, _ in header.cmap.extras]
        # digest counted the lines of an uncompressed file (and found no NUL byte in it).
        data_lines = info.data_lines if readers.compression_of(path) is None else None
        try:
            return commit_batches(
                readers.stream_csv_fast(path, header, report, data_lines, options=options)
            )
        except Exception:
            # The Delta writer wraps errors raised inside the stream; the flags tell them apart.
            if report.unreadable is not None or not report.fast_path_failed:
                raise
        report.reset()
        return commit_batches(readers.stream_csv_slow(path, header, report, options=options))
    except readers.FileUnreadableError:
        raise
    except Exception as exc:
        if report.unreadable is not None:
            raise report.unreadable from exc
        raise


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
