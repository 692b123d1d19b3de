"""Bronze ingest: landing files -> bronze/sales (+ bronze/sales_rejects), idempotent by sha256.

Per file, in name order, under the writer lock:
1. Wait out the settle time of files modified moments ago; a file that a process here has open
   for writing, or whose size or mtime changes before its rows are committed, is *waiting*
   (still being written) and left for a later run.
2. Hash it; skip it if its sha256 is already in `_meta/ingested_files`.
3. Give it the lake's next batch sequence number and record an intent (`_meta/intents`).
4. Commit its rows to bronze/sales, its unparseable lines to bronze/sales_rejects, and last its
   row in `_meta/ingested_files` (the record that the file is complete).

Recovery never deletes: an intent without its ledger row is finished from the file (the parts
not yet committed) or, when the file has left landing, recorded from the rows already in
bronze; a batch in bronze with no ledger row and no intent (a lost or partly restored `_meta`)
gets its ledger row back from bronze's own lineage columns.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.compute as pc

from medallion_lakehouse import intents
from medallion_lakehouse.bronze import readers, schema_changes
from medallion_lakehouse.bronze.contract import BRONZE_REJECTS, BRONZE_SALES
from medallion_lakehouse.errors import MedallionError
from medallion_lakehouse.faults import checkpoint
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.meta import INGESTED_FILES
from medallion_lakehouse.storage.delta import CommitInfo

HASH_CHUNK = 8 << 20
STEP = "bronze"
INTENT_KIND = "ingest_file"
Status = Literal["ingested", "skipped", "failed", "waiting"]


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
    # What recovery did before new files were read: one sentence per repaired batch.
    repairs: list[str] = field(default_factory=list)
    # Schema changes this ingest recorded: "<file>: renamed quantity -> qty", one per batch.
    schema_changes: list[str] = field(default_factory=list)

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
    def waiting(self) -> int:
        return self._count("waiting")

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
    seq: int


def _lineage(batches: Iterable[pa.RecordBatch], lineage: Lineage) -> Iterator[pa.RecordBatch]:
    """Add the lineage columns of the bronze contract to parsed batches."""
    schema = BRONZE_SALES.schema
    ingested_at = pa.scalar(_micros(lineage.ingested_at), pa.int64()).cast(
        schema.field("_ingested_at").type
    )
    ingest_date = lineage.ingested_at.date().isoformat()
    for batch in batches:
        n = batch.num_rows
        columns = {c: batch.column(c) for c in readers.SOURCE_COLUMNS}
        columns.update(
            _source_file=_repeat(lineage.source_file, n),
            _source_file_sha256=_repeat(lineage.sha256, n),
            _source_line=batch.column("_source_line"),
            _batch_id=_repeat(lineage.batch_id, n),
            _batch_seq=pa.array(np.full(n, lineage.seq, dtype="int64"), pa.int64()),
            _ingested_at=pa.repeat(ingested_at, n),
            _rescued_data=batch.column("_rescued_data"),
            _ingest_date=_repeat(ingest_date, n),
        )
        yield pa.RecordBatch.from_arrays([columns[f.name] for f in schema], schema=schema)


def bronze_rows(parsed: pa.Table, lineage: Lineage) -> pa.Table:
    """A parsed landing file as the bronze rows an ingest would commit (read-only, for `plan`)."""
    return pa.Table.from_batches(
        list(_lineage(parsed.to_batches(), lineage)), schema=BRONZE_SALES.schema
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
    return pa.table(
        {
            "_source_file": [lineage.source_file] * n,
            "_source_file_sha256": [lineage.sha256] * n,
            "_source_line": pa.array([r.line for r in rejects], pa.int64()),
            "_batch_id": [lineage.batch_id] * n,
            "_batch_seq": pa.array([lineage.seq] * n, pa.int64()),
            "_ingested_at": pa.array(
                [lineage.ingested_at] * n, BRONZE_REJECTS.schema.field("_ingested_at").type
            ),
            "raw_line": [r.raw for r in rejects],
            "error": [r.error for r in rejects],
            "_ingest_date": [lineage.ingested_at.date().isoformat()] * n,
        },
        schema=BRONZE_REJECTS.schema,
    )


def known_files(lake: Lake) -> set[str]:
    marker = lake.read_arrow(INGESTED_FILES.name, columns=["sha256"])
    return set(marker.column("sha256").to_pylist())


FileKey = tuple[str, int, int]  # (path under landing, size, mtime_ns)


def unchanged_files(lake: Lake) -> dict[FileKey, str]:
    """(path, size, mtime_ns) -> sha256 of the files already ingested, as they were read.

    sha256 stays the identity of a file; this index only spares re-reading a file that has not
    been touched since (same path, size and modification time).
    """
    ledger = lake.read_arrow(
        INGESTED_FILES.name, columns=["source_file", "size_bytes", "mtime_ns", "sha256"]
    )
    return {
        (r["source_file"], r["size_bytes"], r["mtime_ns"]): r["sha256"]
        for r in ledger.to_pylist()
        if r["mtime_ns"] is not None and r["size_bytes"] is not None
    }


class _Clock:
    """Strictly increasing UTC timestamps within a run (information only: order is `seq`)."""

    def __init__(self) -> None:
        self._last: datetime | None = None

    def now(self) -> datetime:
        now = datetime.now(UTC)
        if self._last is not None and now <= self._last:
            now = self._last + timedelta(microseconds=1)
        self._last = now
        return now


# -- files still being written ------------------------------------------------------------
FileState = tuple[int, int]  # (size, mtime_ns)


class FileChangedError(Exception):
    """The file changed while it was being read: a producer is still writing it."""


def file_state(path: Path) -> FileState:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def open_for_writing(paths: Iterable[Path]) -> dict[Path, str]:
    """The files among `paths` that a process on this host has open for writing, with who.

    A producer that pauses longer than the settle time still holds its file open, and this
    sees it (processes of other users or hosts it cannot: the settle time covers those).
    """
    wanted = {p.resolve() for p in paths}
    found: dict[Path, str] = {}
    if not wanted:
        return found
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            files = proc.open_files()
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        for f in files:
            if f.mode != "r" and (path := Path(f.path)) in wanted:
                found[path] = f"pid {proc.info['pid']} ({proc.info['name']})"
    return found


def settle(paths: Iterable[Path], settle_seconds: float) -> dict[Path, FileState]:
    """Each file's (size, mtime) after waiting, once, until the youngest is `settle_seconds` old.

    The wait is bounded by `settle_seconds` whatever the clocks say (an mtime in the future
    counts as just written); the caller compares the states it sees later with these.
    """
    states: dict[Path, FileState] = {}
    for path in paths:
        try:
            states[path] = file_state(path)
        except OSError:
            continue  # reported as unreadable when it is ingested
    if settle_seconds > 0 and states:
        newest = max(mtime for _, mtime in states.values()) / 1e9
        wait = min(settle_seconds, settle_seconds - (time.time() - newest))
        if wait > 0:
            time.sleep(wait)
    return states


# -- recovery: finish what an earlier run started, never delete ---------------------------
def _ledger_batches(lake: Lake) -> set[str]:
    table = lake.read_arrow(INGESTED_FILES.name, columns=["batch_id"])
    return set(table.column("batch_id").to_pylist())


def _next_seq(lake: Lake) -> int:
    """One more than any sequence number the ledger or an intent holds (1 for a new lake)."""
    seqs = lake.read_arrow(INGESTED_FILES.name, columns=["seq"]).column("seq")
    candidates = [pc.max(seqs).as_py() if len(seqs) else None, intents.max_seq(lake, STEP)]
    return max((int(v) for v in candidates if v is not None), default=0) + 1


def _lineage_counts(lake: Lake, name: str, batches: set[str]) -> dict[str, dict[str, object]]:
    """Per batch, its lineage values and row count, read from the table's own columns."""
    if not batches or not lake.exists(name):
        return {}
    keys = ["_batch_id", "_batch_seq", "_source_file", "_source_file_sha256", "_ingested_at"]
    table = lake.read_arrow(name, columns=keys, where={"_batch_id": sorted(batches)})
    grouped = table.group_by(keys, use_threads=False).aggregate([("_batch_id", "count")])
    return {row["_batch_id"]: row for row in grouped.to_pylist()}


def _rebuilt_marker(
    batch_id: str, rows: dict[str, object] | None, rejects: dict[str, object] | None, run_id: str
) -> dict[str, object]:
    any_side = rows or rejects
    assert any_side is not None
    source = str(any_side["_source_file"])
    return {
        "source_file": source,
        "sha256": any_side["_source_file_sha256"],
        "size_bytes": None,
        "mtime_ns": None,
        "format": readers.file_format(Path(source)),
        "batch_id": batch_id,
        "seq": any_side["_batch_seq"],
        "rows": int(rows["_batch_id_count"]) if rows else 0,  # type: ignore[call-overload]
        "rejects": int(rejects["_batch_id_count"]) if rejects else 0,  # type: ignore[call-overload]
        "rescued_columns": None,
        "columns": None,  # bronze keeps the known columns only: the header is not recoverable
        "parser": "rebuilt from bronze lineage",
        "ingested_at": any_side["_ingested_at"],
        "run_id": run_id,
    }


@dataclass
class _Run:
    """What one ingest run shares across its files."""

    lake: Lake
    landing: Path
    commit: CommitInfo
    known: set[str]
    next_seq: int
    clock: _Clock = field(default_factory=_Clock)
    on_bytes: Callable[[int], None] | None = None
    options: readers.ReaderOptions | None = None
    settled: dict[Path, FileState] = field(default_factory=dict)
    finished: list[intents.Intent] = field(default_factory=list)  # to close as done
    unchanged: dict[FileKey, str] = field(default_factory=dict)  # skipped without reading
    writing: dict[Path, str] = field(default_factory=dict)  # open for writing elsewhere

    def allocate(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq


def recover(run: _Run, paths: list[Path]) -> list[str]:
    """Complete interrupted ingests and restore lost ledger rows; returns what was done.

    Intents whose ledger row did land (a crash after it, before the run closed them) are added
    to `run.finished`, to be closed with the run's own.
    """
    lake = run.lake
    notes: list[str] = []
    ledger = _ledger_batches(lake)
    in_rows = lake.distinct_values(BRONZE_SALES.name, "_batch_id")
    in_rejects = lake.distinct_values(BRONZE_REJECTS.name, "_batch_id")
    unverified: set[str] = set()  # rows committed, rejects maybe not, file gone
    open_intents = intents.unfinished(lake, STEP, INTENT_KIND)
    by_source = {_relative(p, run.landing): p for p in paths}
    for intent in open_intents:
        if intent.intent_id in ledger:  # its ledger row landed; only the intent looks open
            run.finished.append(intent)
            continue
        payload = intent.payload
        has_rows, has_rejects = intent.intent_id in in_rows, intent.intent_id in in_rejects
        path = by_source.get(str(payload["source_file"]))
        lineage = Lineage(
            source_file=str(payload["source_file"]),
            sha256=str(payload["sha256"]),
            batch_id=intent.intent_id,
            ingested_at=datetime.fromisoformat(str(payload["ingested_at"])),
            seq=int(intent.seq or 0),
        )
        if path is not None and _sha_of(path) == lineage.sha256:
            outcome = _ingest_one(
                run, path, resume=lineage, skip_rows=has_rows, skip_rejects=has_rejects
            )
            notes.append(
                f"completed the interrupted ingest of {lineage.source_file} "
                f"(batch {lineage.batch_id}): {outcome.status}"
                + (f", {outcome.reason}" if outcome.reason else "")
            )
            ledger.add(lineage.batch_id)
            if outcome.status == "ingested":
                run.finished.append(intent)
            continue
        if has_rows or has_rejects:
            if not has_rejects:
                unverified.add(intent.intent_id)
            continue  # recorded below from the rows already in bronze
        intents.record(lake, [_close(intent, "abandoned", run.commit.run_id)], commit=run.commit)
        notes.append(
            f"an interrupted ingest of {lineage.source_file} (batch {lineage.batch_id}) had "
            "committed nothing and the file is no longer in landing: nothing to recover"
        )

    unrecorded = (in_rows | in_rejects) - ledger
    if unrecorded:
        rows = _lineage_counts(lake, BRONZE_SALES.name, unrecorded)
        rejects = _lineage_counts(lake, BRONZE_REJECTS.name, unrecorded)
        markers = [
            _rebuilt_marker(b, rows.get(b), rejects.get(b), run.commit.run_id)
            for b in sorted(unrecorded)
        ]
        lake.write_arrow(
            INGESTED_FILES.name,
            pa.Table.from_pylist(markers, schema=INGESTED_FILES.schema),
            commit=run.commit,
        )
        for m in markers:
            run.known.add(str(m["sha256"]))
        notes.append(
            f"recorded {len(markers)} batch(es) that were in bronze without a row in "
            f"{INGESTED_FILES.name} (an interrupted ingest, or a lost or restored ledger), from "
            "bronze's own lineage; nothing was deleted"
            + (
                f"; the rejected lines of {len(unverified)} of them could not be checked: their "
                "ingest was interrupted and the files are no longer in landing"
                if unverified
                else ""
            )
        )
    return notes


def _close(intent: intents.Intent, state: intents.State, run_id: str) -> intents.Intent:
    return intents.Intent(intent.intent_id, intent.step, intent.kind, state, intent.seq, {}, run_id)


def _sha_of(path: Path) -> str | None:
    try:
        return digest(path).sha256
    except OSError:
        return None


# -- the run ------------------------------------------------------------------------------
def ingest(
    lake: Lake,
    *,
    run_id: str,
    landing: Path | None = None,
    files: list[Path] | None = None,
    on_bytes: Callable[[int], None] | None = None,
    on_file: Callable[[FileOutcome], None] | None = None,
    settle_seconds: float | None = None,
    options: readers.ReaderOptions | None = None,
    verify: bool = False,
) -> IngestResult:
    """Ingest new landing files into bronze. Never raises for a bad file: it is reported.

    `settle_seconds` (default: settings.landing_settle_seconds) is how long a file must stay
    unchanged before it is read. Paths `discover` refused (given `files` from discover, or
    discovering here) are reported as skipped with their reason. `options` default to the lake's
    settings. A file already ingested is recognised by path, size and mtime without being read,
    unless `verify` asks to hash every file again.
    """
    landing = Path(landing or lake.settings.landing_path)
    options = options or readers.ReaderOptions.from_settings(lake.settings)
    paths = files if files is not None else discover(landing, options=options)
    wait = lake.settings.landing_settle_seconds if settle_seconds is None else settle_seconds
    run = _Run(
        lake=lake,
        landing=landing,
        commit=CommitInfo(run_id=run_id, step=STEP),
        known=known_files(lake),
        next_seq=0,
        on_bytes=on_bytes,
        options=options,
    )
    result = IngestResult(repairs=recover(run, paths))
    run.known = known_files(lake)
    run.next_seq = _next_seq(lake)
    run.unchanged = {} if verify else unchanged_files(lake)
    for link, why in paths.refused if isinstance(paths, Discovered) else ():
        try:
            name = link.relative_to(landing).as_posix()  # the link's own name, not its target
        except ValueError:
            name = str(link)
        result.files.append(FileOutcome(name, "skipped", reason=why))
        if on_file:
            on_file(result.files[-1])
    candidates = [p for p in paths if _unchanged_sha(run, p) is None]
    run.settled = settle(candidates, wait)
    run.writing = open_for_writing(candidates)
    for path in paths:
        started = time.perf_counter()
        outcome = _ingest_one(run, path)
        outcome.seconds = time.perf_counter() - started
        result.files.append(outcome)
        if on_file:
            on_file(outcome)
    # The ledger rows are the files' completion records; closing their intents (one commit per
    # run, not per file) only keeps a later loss of the ledger from looking like a crash.
    done = [_close(i, "done", run_id) for i in run.finished]
    intents.record(lake, done, commit=run.commit)
    result.schema_changes = [c.describe_event() for c in schema_changes.record(lake, run.commit)]
    return result


def _relative(path: Path, landing: Path) -> str:
    try:
        return path.resolve().relative_to(landing.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def _unchanged_sha(run: _Run, path: Path) -> str | None:
    """The sha256 of this file as already ingested, if it is untouched since; else None."""
    try:
        size, mtime = file_state(path)
    except OSError:
        return None
    return run.unchanged.get((_relative(path, run.landing), size, mtime))


def _ingest_one(
    run: _Run,
    path: Path,
    *,
    resume: Lineage | None = None,
    skip_rows: bool = False,
    skip_rejects: bool = False,
) -> FileOutcome:
    """One file, start to end; `resume` finishes an interrupted ingest under its own lineage."""
    lake, commit = run.lake, run.commit
    source = _relative(path, run.landing)
    fmt = readers.file_format(path, options=run.options)
    known_sha = None if resume is not None else _unchanged_sha(run, path)
    if known_sha is not None:
        reason = "already ingested (same path, size and mtime; --verify re-hashes)"
        size = path.stat().st_size
        return FileOutcome(source, "skipped", known_sha, size, fmt, reason=reason)
    writer = run.writing.get(path.resolve())
    if resume is None and writer is not None:
        reason = f"open for writing by {writer}: still being written, a later run takes it"
        return FileOutcome(source, "waiting", format=fmt, reason=reason)
    try:
        before = file_state(path)
        info = digest(path, run.on_bytes)
    except OSError as exc:
        return FileOutcome(source, "failed", format=fmt, reason=f"cannot read file: {exc}")
    outcome = FileOutcome(source, "skipped", sha256=info.sha256, size_bytes=info.size, format=fmt)
    seen = run.settled.get(path)
    if resume is None and seen is not None and seen != before:
        outcome.status = "waiting"
        outcome.reason = (
            "still being written (it changed during the settle time): a later run takes it"
        )
        return outcome
    if resume is None and info.sha256 in run.known:
        outcome.reason = "already ingested (same sha256)"
        return outcome
    if info.looks_binary and fmt != "parquet":
        outcome.status = "failed"
        outcome.reason = f"binary content (NUL bytes) in a .{path.suffix.lstrip('.')} file"
        return outcome

    if resume is None:
        ingested_at = run.clock.now()
        seq = run.allocate()
        lineage = Lineage(
            source,
            info.sha256,
            f"{ingested_at:%Y%m%dT%H%M%S%f}-{info.sha256[:12]}",
            ingested_at,
            seq,
        )
        intents.record(lake, [_intent(lineage, info, fmt, commit.run_id)], commit=commit)
    else:
        lineage = resume
    outcome.batch_id = lineage.batch_id

    changed = False

    def unchanged() -> None:
        nonlocal changed
        if file_state(path) != before:
            changed = True  # the Delta writer may wrap the error raised in its input stream
            raise FileChangedError(source)

    report = readers.ParseReport()
    try:
        wrote = _write_rows(
            lake, path, fmt, info, report, lineage, commit, unchanged,
            write=not skip_rows, options=run.options,
        )  # fmt: skip
        if wrote == 0:
            unchanged()  # no rows commit ran the hook: check before the rejects and the marker
    except MedallionError:
        raise  # the lake's, not the file's: a lost lock stops the step
    except Exception as exc:  # one poison file never stops the others; nothing was committed
        if changed:
            outcome.status = "waiting"
            outcome.reason = (
                "changed while it was being read (still being written?): a later run takes it"
            )
        elif isinstance(exc, readers.FileUnreadableError):
            outcome.status, outcome.reason = "failed", str(exc)
        elif isinstance(exc, OSError):
            outcome.status, outcome.reason = "failed", f"cannot read file: {exc}"
        else:
            outcome.status, outcome.reason = "failed", f"{type(exc).__name__}: {exc}"
        if resume is None:  # nothing of this attempt reached a commit
            intents.record(lake, [_abandon(lineage, commit.run_id)], commit=commit)
        return outcome
    if report.rejects and not skip_rejects:
        lake.write_arrow(
            BRONZE_REJECTS.name, _rejects_table(report.rejects, lineage), commit=commit
        )
    checkpoint("bronze.before_marker")
    outcome.status = "ingested"
    outcome.rows = wrote
    outcome.rejects = len(report.rejects)
    outcome.parser = report.path
    outcome.rescued_columns = report.rescued_columns
    marker = _marker(outcome, lineage, commit.run_id, mtime_ns=before[1], columns=report.columns)
    lake.write_arrow(INGESTED_FILES.name, marker, commit=commit)
    run.known.add(info.sha256)
    if resume is None:
        run.finished.append(_intent(lineage, info, fmt, commit.run_id))
    return outcome


def _intent(lineage: Lineage, info: Digest, fmt: str | None, run_id: str) -> intents.Intent:
    return intents.Intent(
        intent_id=lineage.batch_id,
        step=STEP,
        kind=INTENT_KIND,
        state="started",
        seq=lineage.seq,
        payload={
            "source_file": lineage.source_file,
            "sha256": lineage.sha256,
            "ingested_at": lineage.ingested_at.isoformat(),
            "size_bytes": info.size,
            "format": fmt,
        },
        run_id=run_id,
    )


def _abandon(lineage: Lineage, run_id: str) -> intents.Intent:
    """Nothing of this attempt was committed (the failure came before the rows commit)."""
    return intents.Intent(lineage.batch_id, STEP, INTENT_KIND, "abandoned", lineage.seq, {}, run_id)


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
    write: bool = True,
    options: readers.ReaderOptions | None = None,
) -> int:
    """Parse and commit the file's rows; returns how many were written.

    `before_commit` runs after the last batch was parsed and before the Delta commit; raising
    there abandons the write (nothing is committed). `write=False` parses and counts only (an
    interrupted ingest whose rows are already committed needs the file's rejects alone). A file
    that fails as a whole raises FileUnreadableError, even when the Delta writer wrapped the
    reader's exception.
    """
    options = options or readers.ReaderOptions()

    def commit_batches(batches: Iterable[pa.RecordBatch], most: int | None = None) -> int:
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

        if not write:
            return sum(batch.num_rows for batch in chained())
        return lake.write_arrow(BRONZE_SALES.name, chained(), commit=commit, rows=most).rows

    try:
        if fmt == "jsonl":
            return commit_batches(readers.read_jsonl(path, report, options=options))
        if fmt == "parquet":
            return commit_batches(readers.read_parquet(path, report, options=options))
        header = readers.read_csv_header(path, options=options)
        if header is None:
            return 0
        report.use_header(header.cmap)
        # digest counted the lines of an uncompressed file (and found no NUL byte in it).
        data_lines = info.data_lines if readers.compression_of(path) is None else None
        try:
            # A row takes at least one line: the count bounds the rows (their row groups).
            return commit_batches(
                readers.stream_csv_fast(path, header, report, data_lines, options=options),
                data_lines,
            )
        except Exception:
            # The Delta writer wraps errors raised inside the stream; the flags tell them apart.
            if report.unreadable is not None or not report.fast_path_failed:
                raise
        report.reset()
        return commit_batches(
            readers.stream_csv_slow(path, header, report, options=options), data_lines
        )
    except readers.FileUnreadableError:
        raise
    except Exception as exc:
        if report.unreadable is not None:
            raise report.unreadable from exc
        raise


def _marker(
    outcome: FileOutcome, lineage: Lineage, run_id: str, *, mtime_ns: int, columns: list[str]
) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "source_file": outcome.source_file,
                "sha256": outcome.sha256,
                "size_bytes": outcome.size_bytes,
                "mtime_ns": mtime_ns,
                "format": outcome.format,
                "batch_id": outcome.batch_id,
                "seq": lineage.seq,
                "rows": outcome.rows,
                "rejects": outcome.rejects,
                "rescued_columns": json.dumps(outcome.rescued_columns),
                # An empty file has no header: its columns are unknown, not "none".
                "columns": json.dumps(columns) if columns else None,
                "parser": outcome.parser,
                "ingested_at": lineage.ingested_at,
                "run_id": run_id,
            }
        ],
        schema=INGESTED_FILES.schema,
    )
