"""`medallion optimize` (compact small files, vacuum old ones) and `medallion demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from medallion_lakehouse.cli.app import (
    EngineOpt,
    JsonOpt,
    SparkConfOpt,
    SparkMasterOpt,
    WaitOpt,
    WorkspaceOpt,
    app,
    console,
    emit_json,
    err_console,
    handle_errors,
    plain,
    settings_from,
    write_step,
)
from medallion_lakehouse.cli.run import execute
from medallion_lakehouse.config import Settings
from medallion_lakehouse.contracts import all_contracts, get_contract
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.pipeline.context import StepContext, StepResult, new_run_id
from medallion_lakehouse.pipeline.steps import STEP_ORDER
from medallion_lakehouse.storage.delta import CommitInfo, add_actions, open_table

DEFAULT_RETENTION_HOURS = 168  # Delta's default: time travel keeps working for a week
SMALL_FILE_BYTES = 16 << 20


def optimize_table(
    settings: Settings, name: str, *, apply: bool, retention_hours: float, run_id: str
) -> dict[str, Any] | None:
    """Compact and vacuum one table (or, without `apply`, say what would be done)."""
    table = open_table(settings.table_uri(name), storage_options=settings.storage_options)
    if table is None:
        return None
    actions = add_actions(table)
    sizes = [int(s) for s in actions.column("size_bytes").to_pylist()] if actions.num_rows else []
    hours = int(retention_hours)
    # Delta refuses a retention under the table's configured minimum unless told otherwise;
    # the user asked for it explicitly, so honour it.
    enforce = hours >= DEFAULT_RETENTION_HOURS
    row: dict[str, Any] = {
        "table": name,
        "version": table.version(),
        "files": len(sizes),
        "small_files": sum(1 for s in sizes if s < SMALL_FILE_BYTES),
        "bytes": sum(sizes),
        "compacted": None,
        "vacuum_files": None,
        "applied": apply,
    }
    props = CommitInfo(run_id=run_id, step="optimize").properties()
    if apply:
        metrics = table.optimize.compact(commit_properties=props)
        row["compacted"] = {
            "files_removed": metrics.get("numFilesRemoved", 0),
            "files_added": metrics.get("numFilesAdded", 0),
        }
        row["version"] = table.version()
    removed = table.vacuum(
        retention_hours=hours,
        dry_run=not apply,
        enforce_retention_duration=enforce,
        commit_properties=props if apply else None,
    )
    row["vacuum_files"] = len(removed)
    return row


@app.command("optimize")
def optimize_cmd(
    workspace: WorkspaceOpt = None,
    table: Annotated[
        str | None, typer.Option("--table", "-t", help="Only this table (default: all).")
    ] = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="Do it (default: dry run that only reports).")
    ] = False,
    retention_hours: Annotated[
        float,
        typer.Option(
            "--retention-hours",
            help="Vacuum removes unreferenced files older than this (time travel ends there).",
        ),
    ] = DEFAULT_RETENTION_HOURS,
    wait: WaitOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Compact small files (delta-rs optimize) and vacuum files no version needs any more."""
    with handle_errors():
        settings = settings_from(workspace)
        names = [get_contract(table).name] if table else [c.name for c in all_contracts()]
        rows: list[dict[str, Any]] = []
        # A dry run only reads; applying rewrites files, so it goes through the writing session.
        if apply:

            def optimize_step(lake: Lake, ctx: StepContext) -> StepResult:
                rows.extend(_optimize_all(lake, names, True, retention_hours, ctx.run_id))
                return StepResult(step="optimize", tables={r["table"]: r["version"] for r in rows})

            run_id = new_run_id()
            write_step(
                settings, "optimize", optimize_step, command="medallion optimize", wait=wait,
                run_id=run_id,
            )  # fmt: skip
        else:
            run_id = new_run_id()
            rows = _optimize_all(Lake(settings), names, False, retention_hours, run_id)
        if json_out:
            emit_json({"run_id": run_id, "applied": apply, "tables": rows})
            return
        out = Table(title="optimize" + ("" if apply else " (dry run: add --apply to do it)"))
        for col in ("table", "version", "files", "small files", "compacted", "vacuum"):
            out.add_column(col)
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
        console.print(out)
        if not rows:
            console.print("No table has been written yet.")


def _optimize_all(
    lake: Lake, names: list[str], apply: bool, hours: float, run_id: str
) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        if apply:
            lake.check_writable()  # maintenance commits, too, only while the lock is held
        row = optimize_table(lake.settings, name, apply=apply, retention_hours=hours, run_id=run_id)
        if row is not None:
            rows.append(row)
    return rows


def _land_sample(settings: Settings, rows: int) -> str:
    """Fill an empty landing folder with generated data."""
    landing = Path(settings.landing_path)
    if landing.is_dir() and any(p for p in landing.iterdir() if not p.name.startswith(".")):
        return f"landing folder {landing} is not empty: running on the files already there"
    landing.mkdir(parents=True, exist_ok=True)
    from medallion_lakehouse.generate import GenerateOptions, generate

    manifest = generate(GenerateOptions(rows=rows, seed=settings.seed), landing)
    files = getattr(manifest, "files", [])
    return f"generated {rows:,} sales into {landing} ({len(files)} file(s))"


@app.command("demo")
def demo_cmd(
    workspace: WorkspaceOpt = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
    spark_conf: SparkConfOpt = None,
    rows: Annotated[int, typer.Option("--rows", help="Sales to generate.", min=1)] = 100_000,
    wait: WaitOpt = None,
) -> None:
    """Generate a sample, run every step, and say where the report and tables are."""
    with handle_errors():
        settings = settings_from(workspace, engine, spark_master, spark_conf)
        console.print(_land_sample(settings, rows))
        report = execute(settings, steps=list(STEP_ORDER), wait=wait)
        reports = sorted(
            Path(settings.reports_path).glob("**/*.html"), key=lambda p: p.stat().st_mtime
        )
        console.print(
            f"tables: {settings.lake_path} (try `medallion status -w {settings.workspace}`)"
        )
        if reports:
            console.print(f"report: {reports[-1]} (open it in a browser)")
        else:
            err_console.print("no HTML report was written (see the report step above)")
    if report.exit_code:
        raise typer.Exit(report.exit_code)
