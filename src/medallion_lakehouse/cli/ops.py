"""`medallion optimize` (compact small files, vacuum old ones) and `medallion restore`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from medallion_lakehouse.cli.app import (
    JsonOpt,
    WaitOpt,
    WorkspaceOpt,
    app,
    emit_json,
    handle_errors,
    log,
    plain,
    say,
    settings_from,
    show_table,
    write_step,
)
from medallion_lakehouse.contracts import all_contracts, get_contract
from medallion_lakehouse.errors import ConfigError, TableNotFoundError
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.pipeline.context import StepContext, StepResult, new_run_id
from medallion_lakehouse.storage.delta import CommitInfo
from medallion_lakehouse.storage.maintenance import (
    DEFAULT_RETENTION_HOURS,
    missing_files,
    optimize_table,
    restore_table,
)

WRITE_EXIT_CODES = (
    "Exit codes: 0 ok; 2 bad option, unknown table or version; 75 another writer holds the lake."
)


def check_retention(hours: int, force: bool) -> str | None:
    """A retention that ends time travel sooner than Delta's week needs --force; the warning."""
    if hours >= DEFAULT_RETENTION_HOURS:
        return None
    warning = (
        f"--retention-hours {hours} is below Delta's default of {DEFAULT_RETENTION_HOURS} h: "
        f"versions older than {hours} h become unreadable (`show --version`, `restore`)"
    )
    if not force:
        raise ConfigError(f"{warning}; pass --force if that is what you want.")
    return warning


def _optimize_all(
    lake: Lake, names: list[str], apply: bool, hours: int, run_id: str
) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        if apply:
            lake.check_writable()  # maintenance commits, too, only while the lock is held
        done = optimize_table(
            name,
            lake.uri(name),
            apply=apply,
            retention_hours=hours,
            commit=CommitInfo(run_id=run_id, step="optimize"),
            storage_options=lake.storage_options,
        )
        if done is not None:
            rows.append(done.as_dict())
    return rows


@app.command("optimize", epilog=WRITE_EXIT_CODES)
def optimize_cmd(
    workspace: WorkspaceOpt = None,
    table: Annotated[
        str | None, typer.Option("--table", "-t", help="Only this table (default: all).")
    ] = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="Do it (default: dry run that only reports).")
    ] = False,
    retention_hours: Annotated[
        int,
        typer.Option(
            "--retention-hours",
            min=0,
            help="Vacuum removes unreferenced files older than this many hours (time travel "
            f"ends there). Below {DEFAULT_RETENTION_HOURS} needs --force.",
        ),
    ] = DEFAULT_RETENTION_HOURS,
    force: Annotated[
        bool,
        typer.Option("--force", help=f"Allow a retention under {DEFAULT_RETENTION_HOURS} hours."),
    ] = False,
    wait: WaitOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Compact small files (delta-rs optimize) and vacuum files no version needs any more."""
    with handle_errors():
        warning = check_retention(retention_hours, force)
        settings = settings_from(workspace)
        names = [get_contract(table).name] if table else [c.name for c in all_contracts()]
        if warning:
            log("warning", warning + ".")
        rows: list[dict[str, Any]] = []
        run_id = new_run_id()
        # A dry run only reads; applying rewrites files, so it goes through the writing session.
        if apply:

            def optimize_step(lake: Lake, ctx: StepContext) -> StepResult:
                rows.extend(_optimize_all(lake, names, True, retention_hours, ctx.run_id))
                return StepResult(step="optimize", tables={r["table"]: r["version"] for r in rows})

            write_step(
                settings, "optimize", optimize_step, command="medallion optimize", wait=wait,
                run_id=run_id,
            )  # fmt: skip
        else:
            with Lake(settings) as lake:
                rows = _optimize_all(lake, names, False, retention_hours, run_id)
        if json_out:
            emit_json({"run_id": run_id, "applied": apply, "tables": rows})
            return
        out = Table(title="optimize" + ("" if apply else " (dry run: add --apply to do it)"))
        for col in ("table", "version", "files", "small files", "compacted", "vacuum"):
            out.add_column(col, justify="left" if col in ("table", "vacuum") else "right")
        for r in rows:
            compacted = r["compacted"]
            out.add_row(
                plain(r["table"]),
                str(r["version"]),
                str(r["files"]),
                str(r["small_files"]),
                f"-{compacted['files_removed']} +{compacted['files_added']}" if compacted else "-",
                f"{r['vacuum_files']} file(s) {'removed' if apply else 'would be removed'}",
            )
        show_table(out)
        if not rows:
            say("No table has been written yet.")


@app.command("restore", epilog=WRITE_EXIT_CODES)
def restore_cmd(
    table: Annotated[str, typer.Argument(help="Table to roll back, e.g. gold/daily_sales.")],
    version: Annotated[
        int, typer.Option("--version", "-v", min=0, help="The version to restore (see history).")
    ],
    workspace: WorkspaceOpt = None,
    wait: WaitOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Roll a table back to an earlier version (Delta RESTORE: a new commit, history kept).

    Only that table moves: tables built from it are not rolled back, and silver's and gold's
    incremental state in _meta still counts the later batches; rebuild downstream with
    `medallion run --full-refresh --steps silver,gold` when that matters.
    """
    with handle_errors():
        settings = settings_from(workspace)
        name = get_contract(table).name
        with Lake(settings) as lake:
            current = lake.version(name)
            if current is None:
                raise TableNotFoundError(f"{name} has not been written yet: nothing to restore.")
            if version >= current:
                raise ConfigError(
                    f"{name} is at version {current}: --version must be an earlier one "
                    f"(0..{current - 1})."
                )
            gone = missing_files(lake.uri(name), version, lake.storage_options)
            if gone:
                raise TableNotFoundError(
                    f"version {version} of {name} was vacuumed ({gone} data files removed by "
                    "`medallion optimize --apply`): it cannot be restored."
                )
        restored: list[dict[str, Any]] = []

        def restore_step(lake: Lake, ctx: StepContext) -> StepResult:
            lake.check_writable()
            done = restore_table(
                lake.uri(name), version, commit=ctx.commit("restore"),
                storage_options=lake.storage_options,
            )  # fmt: skip
            restored.append(done)
            return StepResult(step="restore", tables={name: done["version"]}, metrics=done)

        write_step(settings, "restore", restore_step, command="medallion restore", wait=wait)
        result = {"table": name, **restored[0]}
        if json_out:
            emit_json(result)
            return
        say(
            plain(
                f"{name} restored to the content of version {version} as version "
                f"{result['version']} (`medallion history {name}` shows both)."
            )
        )
