"""One writer per lake: an advisory lock file under `_meta/` that every writing command takes.

The lock is `fcntl.flock` on `<lake>/_meta/writer.lock`, so the kernel releases it when its holder
dies, even by `kill -9`: a stale lock can never block a later run. The file also holds the
holder's pid, host, run_id, command and start time (JSON) so a second run can say who holds it;
it is emptied on a clean release, so a non-empty file found by a new holder is the trace of a
crashed run, which is reported as taken over.

Re-entrant within a process: a step that takes the lock while `medallion run` already holds it
simply proceeds. For a lake on an object store (s3://...) the lock file lives in the workspace
(`.medallion/`), which only guards writers on this machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medallion_lakehouse.config import Settings
from medallion_lakehouse.errors import LockHeldError

LOCK_NAME = "writer.lock"
POLL_SECONDS = 0.2

_held: dict[str, int] = {}  # lock path -> depth of re-entrant holds in this process
_held_guard = threading.Lock()


@dataclass(frozen=True)
class LockInfo:
    """What the lock file says about its holder."""

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
    """A held lock; `took_over` describes a crashed holder whose lock file was found."""

    path: Path
    info: LockInfo
    took_over: LockInfo | None = None

    def check(self) -> None:
        """Raise if the lock was lost (a kernel flock held by this process cannot be)."""


def lock_path(settings: Settings) -> Path:
    """Where the lake's lock file lives."""
    lake = settings.lake_path
    if "://" in lake:
        digest = hashlib.sha256(lake.encode()).hexdigest()[:16]
        return settings.workspace / ".medallion" / f"writer-{digest}.lock"
    return Path(lake) / "_meta" / LOCK_NAME


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_holder(settings: Settings) -> LockInfo | None:
    """Who holds (or last crashed holding) the lock, from the file; None when free and clean."""
    path = lock_path(settings)
    try:
        return LockInfo.parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


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
    """
    path = lock_path(settings)
    key = str(path)
    me = LockInfo(
        pid=os.getpid(),
        host=socket.gethostname(),
        run_id=run_id,
        command=command,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    with _held_guard:
        if _held.get(key):
            _held[key] += 1
            reentrant = True
        else:
            reentrant = False
    if reentrant:
        try:
            yield LakeLock(path, me)
        finally:
            with _held_guard:
                _held[key] -= 1
        return

    wait = settings.lock_wait_seconds if wait_seconds is None else wait_seconds
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + max(wait, 0.0)
        while not _try_flock(fd):
            if time.monotonic() >= deadline:
                holder = read_holder(settings)
                who = holder.describe() if holder else "another process"
                waited = f" after waiting {wait:g} s" if wait > 0 else ""
                raise LockHeldError(
                    f"The lake at {settings.lake_path} is locked by {who}{waited}. Only one "
                    "writer may run at a time: wait for it to finish, or retry with --wait SECONDS."
                )
            time.sleep(POLL_SECONDS)
        # We hold the flock; anything left in the file is the trace of a holder that died.
        previous = LockInfo.parse(os.pread(fd, 1 << 16, 0).decode("utf-8", "replace"))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me.__dict__).encode(), 0)
        os.fsync(fd)
        with _held_guard:
            _held[key] = 1
        try:
            yield LakeLock(path, me, took_over=previous)
        finally:
            with _held_guard:
                _held.pop(key, None)
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the descriptor releases the flock
