"""`medallion unlock`: show who holds the lake's writer lock; remove a crashed writer's lease."""

from __future__ import annotations

import socket
from dataclasses import asdict
from typing import Annotated, Any

import typer

from medallion_lakehouse.cli.app import (
    JsonOpt,
    WorkspaceOpt,
    app,
    emit_json,
    error_line,
    handle_errors,
    plain,
    say,
    settings_from,
)
from medallion_lakehouse.config import Settings
from medallion_lakehouse.errors import LockHeldError
from medallion_lakehouse.pipeline.lock import (
    LockStatus,
    lock_status,
    pid_alive,
    remove_lease,
)

EXIT_HELD = LockHeldError.exit_code  # a live holder keeps the lock: try again later


def _dead_pid(status: LockStatus) -> int | None:
    """The holder's pid if it names this host and that pid is gone (a crashed writer)."""
    holder = status.holder
    if holder is None or holder.host != socket.gethostname() or not isinstance(holder.pid, int):
        return None
    return None if pid_alive(holder.pid) else holder.pid


def _unlock(settings: Settings, force: bool) -> tuple[dict[str, Any], int]:
    """What `unlock` found and did, as a JSON-ready dict, and the exit code."""
    status, record = lock_status(settings)
    who = status.holder.describe() if status.holder else "an unknown writer"
    removed = False
    code = 0
    if status.kind == "flock":
        if status.state == "held":
            message = (
                f"The lock {status.location} is held by {who}, a live process. There is nothing "
                "to remove: the kernel releases it when that process exits; stop the process if "
                "it is stuck."
            )
            if force:
                message += " (--force cannot break a lock held by a live process.)"
            code = EXIT_HELD
        elif status.state == "stale":
            message = (
                f"The lake is free. The lock file still names {who}, which ended without "
                "releasing it (the kernel already did); the next writer reports it as taken "
                "over. Nothing to remove."
            )
        else:
            message = "The lake is free: no writer holds its lock."
    elif status.state == "free" or record is None:
        message = "The lake is free: there is no lease object."
    else:
        age = f"renewed {status.age_seconds:g} s ago by the store's clock"
        ttl = f"{status.ttl_seconds:g} s"
        if status.state == "stale" or force:
            what = (
                f"the stale lease of {who} ({age}, ttl {ttl})"
                if status.state == "stale"
                else f"the LIVE lease of {who} ({age}, ttl {ttl}) because of --force"
            )
            removed = remove_lease(settings, record, command="medallion unlock")
            if removed:
                message = f"Removed {what}: {status.location}."
                if status.state != "stale":
                    message += (
                        " If that writer is still running, its next renewal (within "
                        f"{(status.ttl_seconds or 0) / 3:g} s) finds the lease gone and it "
                        "stops with exit code 75 before its next commit."
                    )
            else:
                message = (
                    f"Did not remove {what}: it changed while being removed (renewed or taken "
                    "over by another writer). Run `medallion unlock` again to see its state."
                )
                code = EXIT_HELD
        else:
            message = (
                f"The lease {status.location} is live: {who}, {age} (ttl {ttl}). It belongs to "
                "a running writer: wait for it to finish or stop it; a writer that stops "
                f"renewing it is taken over automatically after {ttl}. If you are sure it is "
                "dead (a frozen machine, say), remove it with --force."
            )
            dead = _dead_pid(status)
            if dead is not None:
                message += f" (pid {dead} is not running on this host.)"
            code = EXIT_HELD
    data = {**asdict(status), "removed": removed, "message": message}
    return data, code


@app.command("unlock")
def unlock_cmd(
    workspace: WorkspaceOpt = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Remove the lease even if it is live (only when its writer is surely dead).",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Show who holds the lake's writer lock; remove a crashed writer's stale lease.

    On an object store, a lease not renewed for its ttl (lock_lease_seconds) is removed; a live
    one only with --force. A local lake's lock is released by the kernel when its holder dies,
    so there is never anything to remove: the command says whether it is held. Exit codes: 0
    the lake is free (or a stale lease was removed); 2 not a workspace; 75 a live holder keeps
    the lock.
    """
    with handle_errors():
        settings = settings_from(workspace)
        data, code = _unlock(settings, force)
    if json_out:
        emit_json(data)
    else:
        holder = data["holder"]
        say(plain(f"lake {data['lake']} ({data['kind']}: {data['location']}): {data['state']}"))
        if holder:
            say(
                f"holder: pid {holder['pid']} on {holder['host']}, run {holder['run_id']}, "
                f"{holder['command']}, since {holder['started_at']}"
            )
        if code:
            error_line(data["message"])
        else:
            say(plain(data["message"]))
    if code:
        raise typer.Exit(code)
