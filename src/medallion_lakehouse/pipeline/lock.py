"""One writer per lake, wherever the lake lives: every writing command takes this lock.

Local lakes (a path, or a `file://` URI, which maps to the same path) use `fcntl.flock` on
`<lake>/_meta/writer.lock`, so the kernel releases it when its holder dies, even by `kill -9`:
a stale lock can never block a later run. The file also holds the holder's pid, host, run_id,
command and start time (JSON) so a second run can say who holds it; it is emptied on a clean
release, so a non-empty file found by a new holder is the trace of a crashed run, which is
reported as taken over. Two workspaces pointing at the same lake share that file.

Lakes on an object store (s3://, gs://, az://, abfss://, ...) use a lease object,
`<lake>/_meta/writer.lease`, written with conditional puts and renewed every
`lock_lease_seconds / 3` (see `pipeline/lease.py`). A lease not renewed for `lock_lease_seconds`
by the store's clock is a crashed writer's and is taken over (reported like the local trace).
A lease can be lost while held (not renewable, or replaced); `LakeLock.check()` then raises
LockLostError, so a writer calls it before each commit. If the store ignores conditional puts,
writing is refused (LockUnsupportedError) unless `unsafe_no_lock` is set; then the run goes on
without a lock and the warning is logged with `logging` (logger `medallion_lakehouse.pipeline.
lock`; without logging configured Python prints it on stderr) and kept in `LakeLock.warning`.

Re-entrant within a process: a step that takes the lock while `medallion run` already holds it
simply proceeds (and its `check()` checks the outer lease).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from obstore.exceptions import BaseError

from medallion_lakehouse.config import Settings
from medallion_lakehouse.errors import ConfigError, LockHeldError, LockUnsupportedError
from medallion_lakehouse.pipeline import lease as _lease

LOCK_NAME = "writer.lock"
POLL_SECONDS = 0.2
LEASE_POLL_SECONDS = 1.0  # each poll of a lease is a request or two to the store

log = logging.getLogger(__name__)

_held: dict[str, tuple[int, LakeLock]] = {}  # lock key -> (re-entrant depth, the outer lock)
_held_guard = threading.Lock()


@dataclass(frozen=True)
class LockInfo:
    """What the lock file (or lease object) says about its holder."""

    pid: int | None
    host: str | None
    run_id: str | None
    command: str | None
    started_at: str | None

    @classmethod
    def parse(cls, text: str) -> LockInfo | None:
        if not text.strip():
            return None
        try:
            data: dict[str, Any] = json.loads(text)
        except ValueError:
            return cls(None, None, None, None, None)
        if not isinstance(data, dict):
            return cls(None, None, None, None, None)
        return cls(
            pid=data.get("pid"),
            host=data.get("host"),
            run_id=data.get("run_id"),
            command=data.get("command"),
            started_at=data.get("started_at"),
        )

    def describe(self) -> str:
        return (
            f"pid {self.pid} on {self.host} (run {self.run_id}, {self.command or 'a command'}, "
            f"since {self.started_at})"
        )


@dataclass
class LakeLock:
    """A held lock; `took_over` describes a crashed holder whose lock file or lease was found.

    `kind` is "flock" (local lake), "lease" (object store) or "none" (an object store without
    conditional puts, with `unsafe_no_lock` set; `warning` then says so).
    """

    location: str
    info: LockInfo
    took_over: LockInfo | None = None
    kind: Literal["flock", "lease", "none"] = "flock"
    warning: str | None = None
    lease: _lease.Lease | None = field(default=None, repr=False)

    @property
    def path(self) -> Path | None:
        """The local lock file (None for a lake on an object store)."""
        return Path(self.location) if self.kind == "flock" else None

    def check(self) -> None:
        """Raise LockLostError if the lease was lost; never raises for a local lock."""
        if self.lease is not None:
            self.lease.check()


# -- where the lock lives -----------------------------------------------------------------------


def local_lake_dir(settings: Settings) -> Path | None:
    """The lake's folder for a local lake (a path or a file:// URI); None on an object store."""
    lake = settings.lake_path
    if "://" not in lake:
        return Path(lake)
    parts = urlsplit(lake)
    if parts.scheme.lower() != "file":
        return None
    if parts.netloc not in ("", "localhost"):
        raise ConfigError(
            f"lake_dir {lake} names host {parts.netloc!r}: a file:// lake must be on this "
            "machine (file:///absolute/path)."
        )
    return Path(unquote(parts.path))


def lock_path(settings: Settings) -> Path:
    """Where a local lake's lock file lives (ValueError for a lake on an object store)."""
    lake_dir = local_lake_dir(settings)
    if lake_dir is None:
        raise ValueError(f"{settings.lake_path} is on an object store: see lease_url()")
    return lake_dir / "_meta" / LOCK_NAME


def lease_url(settings: Settings) -> str:
    """Where an object-store lake's lease object lives."""
    return f"{settings.lake_path.rstrip('/')}/{_lease.LEASE_KEY}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _store_errors(settings: Settings) -> contextlib.AbstractContextManager[None]:
    """Turn an object-store failure (credentials, endpoint, bucket) into a ConfigError."""

    @contextlib.contextmanager
    def wrap() -> Iterator[None]:
        try:
            yield
        except (BaseError, OSError) as exc:
            raise ConfigError(
                f"Cannot use the writer lease {lease_url(settings)}: {_lease.first_line(exc)}. "
                "Check lake_dir and [storage_options] (endpoint, credentials, bucket)."
            ) from exc

    return wrap()


def open_lease_store(settings: Settings) -> _lease.LeaseStore:
    return _lease.open_store(settings.lake_path, settings.storage_options)


def read_holder(settings: Settings) -> LockInfo | None:
    """Who holds (or last crashed holding) the lock; None when free and clean."""
    if local_lake_dir(settings) is None:
        with _store_errors(settings):
            record = _lease.read_lease(open_lease_store(settings))
        return LockInfo.parse(record.text) if record is not None else None
    try:
        return LockInfo.parse(lock_path(settings).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


# -- taking it ----------------------------------------------------------------------------------


def _held_message(settings: Settings, who: str, wait: float, extra: str = "") -> str:
    waited = f" after waiting {wait:g} s" if wait > 0 else ""
    return (
        f"The lake at {settings.lake_path} is locked by {who}{waited}. Only one writer may run "
        f"at a time: wait for it to finish, or retry with --wait SECONDS.{extra}"
    )


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def lake_lock(
    settings: Settings,
    wait_seconds: float | None = None,
    *,
    run_id: str | None = None,
    command: str | None = None,
) -> Iterator[LakeLock]:
    """Hold the lake's writer lock for the block; raise LockHeldError if it stays taken.

    `wait_seconds` (default: settings.lock_wait_seconds) is how long to wait for the holder.
    On an object store, call `check()` on the yielded lock before each commit.
    """
    local = local_lake_dir(settings)
    # Keyed by the real path, so the same folder reached by two spellings is one lock here too.
    key = os.path.realpath(local / "_meta" / LOCK_NAME) if local else lease_url(settings)
    me = LockInfo(
        pid=os.getpid(),
        host=socket.gethostname(),
        run_id=run_id,
        command=command,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    with _held_guard:
        outer = _held.get(key)
        if outer is not None:
            _held[key] = (outer[0] + 1, outer[1])
    if outer is not None:
        try:
            yield dataclasses.replace(outer[1], info=me, took_over=None)
        finally:
            with _held_guard:
                depth, lock = _held[key]
                _held[key] = (depth - 1, lock)
        return

    wait = settings.lock_wait_seconds if wait_seconds is None else wait_seconds
    hold = _hold_flock(settings, local, me, wait) if local else _hold_lease(settings, me, wait)
    with hold as lock:
        with _held_guard:
            _held[key] = (1, lock)
        try:
            yield lock
        finally:
            with _held_guard:
                _held.pop(key, None)


@contextlib.contextmanager
def _hold_flock(
    settings: Settings, lake_dir: Path, me: LockInfo, wait: float
) -> Iterator[LakeLock]:
    path = lake_dir / "_meta" / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + max(wait, 0.0)
        while not _try_flock(fd):
            if time.monotonic() >= deadline:
                holder = read_holder(settings)
                who = holder.describe() if holder else "another process"
                raise LockHeldError(_held_message(settings, who, wait))
            time.sleep(POLL_SECONDS)
        # We hold the flock; anything left in the file is the trace of a holder that died.
        previous = LockInfo.parse(os.pread(fd, 1 << 16, 0).decode("utf-8", "replace"))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me.__dict__).encode(), 0)
        os.fsync(fd)
        try:
            yield LakeLock(str(path), me, took_over=previous)
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _capability_key(settings: Settings) -> str:
    return json.dumps([settings.lake_path, sorted(settings.storage_options.items())])


@contextlib.contextmanager
def _hold_lease(settings: Settings, me: LockInfo, wait: float) -> Iterator[LakeLock]:
    url = lease_url(settings)
    ttl = settings.lock_lease_seconds
    with _store_errors(settings):
        store = open_lease_store(settings)
        problem = _lease.conditional_put_problem(store, _capability_key(settings))
    if problem is not None:
        if not settings.unsafe_no_lock:
            raise LockUnsupportedError(
                f"The object store behind {settings.lake_path} cannot carry a writer lease: "
                f"{problem}. Without conditional puts two writers could write at once, so "
                "nothing was written. Use a store that honours If-None-Match and If-Match (AWS "
                "S3, GCS, Azure Blob, MinIO, ...), or, only if a single writer ever runs on "
                "this lake, opt out with `unsafe_no_lock = true` in medallion.toml (or "
                "MEDALLION_UNSAFE_NO_LOCK=true)."
            )
        warning = (
            f"writing to {settings.lake_path} WITHOUT a writer lock (unsafe_no_lock is set and "
            f"the store cannot carry a lease: {problem}); make sure no other writer runs"
        )
        log.warning(warning)
        yield LakeLock(url, me, kind="none", warning=warning)
        return

    payload = {**me.__dict__, "token": _lease.new_token(), "ttl_seconds": ttl}
    poll = min(LEASE_POLL_SECONDS, ttl / 3)
    try:
        with _store_errors(settings):
            held, previous = _lease.acquire(store, url, payload, wait=wait, poll=poll)
    except _lease.LeaseBusy as busy:
        holder = LockInfo.parse(busy.record.text)
        who = holder.describe() if holder else "another process"
        extra = (
            f" Its lease {url} was renewed {max(busy.age, 0):.0f} s ago; a writer that stops "
            f"renewing it for {busy.ttl:g} s is taken over automatically."
        )
        raise LockHeldError(_held_message(settings, who, wait, extra)) from None
    try:
        took_over = LockInfo.parse(previous.text) if previous is not None else None
        yield LakeLock(url, me, took_over=took_over, kind="lease", lease=held)
    finally:
        held.release()


# -- inspecting and breaking it (`medallion unlock`) --------------------------------------------


@dataclass(frozen=True)
class LockStatus:
    """The state of a lake's writer lock, for `medallion unlock`.

    state: "free"; "held" (a live holder); "stale" (a lease not renewed for its ttl, or a local
    lock file still naming a crashed holder, which the kernel already released).
    """

    lake: str
    kind: Literal["flock", "lease"]
    location: str
    state: Literal["free", "held", "stale"]
    holder: LockInfo | None
    age_seconds: float | None = None  # lease: seconds since its last renewal, by the store clock
    ttl_seconds: float | None = None  # lease: the holder's ttl


def lock_status(settings: Settings) -> tuple[LockStatus, _lease.LeaseRecord | None]:
    """The lock's state, plus the lease record it was judged from (None for a local lake)."""
    lake_dir = local_lake_dir(settings)
    if lake_dir is not None:
        path = lake_dir / "_meta" / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return LockStatus(settings.lake_path, "flock", str(path), "free", None), None
        try:
            # Taking and dropping the flock at once is the only portable way to ask.
            free = _try_flock(fd)
            text = os.pread(fd, 1 << 16, 0).decode("utf-8", "replace")
        finally:
            os.close(fd)
        holder = LockInfo.parse(text)
        state: Literal["free", "held", "stale"] = (
            "held" if not free else ("stale" if holder else "free")
        )
        return LockStatus(settings.lake_path, "flock", str(path), state, holder), None
    url = lease_url(settings)
    with _store_errors(settings):
        store = open_lease_store(settings)
        record = _lease.read_lease(store)
        if record is None:
            return LockStatus(settings.lake_path, "lease", url, "free", None), None
        clock = _lease.StoreClock.probe(store)
    ttl = record.ttl(settings.lock_lease_seconds)
    stale = _lease.is_stale(record, clock, settings.lock_lease_seconds)
    status = LockStatus(
        settings.lake_path,
        "lease",
        url,
        "stale" if stale else "held",
        LockInfo.parse(record.text),
        age_seconds=round(clock.age(record.last_modified), 1),
        ttl_seconds=ttl,
    )
    return status, record


def remove_lease(settings: Settings, record: _lease.LeaseRecord, *, command: str) -> bool:
    """Remove the lease `record` was read from; False if it changed meanwhile (then nothing
    was removed)."""
    tombstone = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "run_id": None,
        "command": command,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "token": _lease.new_token(),
        "ttl_seconds": settings.lock_lease_seconds,
    }
    with _store_errors(settings):
        return _lease.remove(open_lease_store(settings), record, tombstone)
