"""`medallion run`: the whole pipeline (or a selection of steps) with progress and a summary."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

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
    markup,
    plain,
    settings_from,
)
from medallion_lakehouse.config import Settings
from medallion_lakehouse.errors import ConfigError
from medallion_lakehouse.pipeline.context import StepResult
from medallion_lakehouse.pipeline.runner import RunReport, run_pipeline
from medallion_lakehouse.pipeline.steps import STEP_ORDER, parse_steps

StepsOpt = Annotated[
    str | None,
    typer.Option(
        "--steps", help=f"Comma-separated steps to run, in pipeline order ({','.join(STEP_ORDER)})."
    ),
]
FullRefreshOpt = Annotated[
    bool, typer.Option("--full-refresh", help="Rebuild silver and gold from all of bronze.")
]
FromOpt = Annotated[
    str | None, typer.Option("--from", help="Reprocess sale dates from this day (YYYY-MM-DD).")
]
ToOpt = Annotated[str | None, typer.Option("--to", help="... up to this day (YYYY-MM-DD).")]


def parse_day(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{flag} expects a date YYYY-MM-DD, got {value!r}.") from None


def summary_table(report: RunReport) -> Table:
    """Per step: status, rows in/out/quarantined, seconds, tables and versions written."""
    table = Table(
        title=plain(f"run {report.run_id} ({report.engine})"),
        title_justify="left",
        caption="quar. = rows quarantined (bronze: unparseable lines; silver: failed drop rules)",
        caption_justify="left",
    )
    for col, justify in (
        ("step", "left"),
        ("status", "left"),
        ("rows in", "right"),
        ("rows out", "right"),
        ("quar.", "right"),
        ("secs", "right"),
        ("tables (version)", "left"),
    ):
        table.add_column(col, justify=justify, no_wrap=col != "tables (version)")  # type: ignore[arg-type]
    colour = {"ok": "green", "failed": "red", "skipped": "yellow"}
    for r in report.steps:
        written = "\n".join(f"{t} v{v}" for t, v in sorted(r.tables.items()) if v is not None)
        table.add_row(
            plain(r.step),
            plain(r.status, colour.get(r.status, "")),
            f"{r.rows_in:,}",
            f"{r.rows_out:,}",
            f"{r.rows_quarantined:,}",
            f"{r.seconds:.1f}",
            plain(written or (r.message or "-")),
        )
    return table


def execute(
    settings: Settings,
    *,
    steps: list[str],
    full_refresh: bool = False,
    date_from: date | None = None,
    date_to: date | None = None,
    wait: float | None = None,
    json_out: bool = False,
) -> RunReport:
    """Run with a Rich progress display (none with --json) and print the outcome."""
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.fields[step]}[/]", table_column=Column(no_wrap=True, width=7)),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console if json_out else console,
        disable=json_out,
        transient=False,
    ) as progress:
        tasks = {s: progress.add_task("waiting", total=None, step=s, start=False) for s in steps}

        def on_step(name: str, result: StepResult | None) -> None:
            task = tasks[name]
            if result is None:
                progress.start_task(task)
                progress.update(task, description="running")
                return
            progress.update(
                task,
                total=1,
                completed=1,
                description=f"{result.status}: {result.message or ''}"[:80],
            )
            progress.stop_task(task)

        def on_progress(name: str, done: float, total: float | None, text: str) -> None:
            progress.update(tasks[name], completed=done, total=total, description=text[:80])

        report = run_pipeline(
            settings,
            steps=steps,
            full_refresh=full_refresh,
            date_from=date_from,
            date_to=date_to,
            wait_seconds=wait,
            on_progress=on_progress,
            on_step=on_step,
        )
    if json_out:
        emit_json(report.as_dict())
    else:
        if report.lock_note:
            err_console.print(markup("[yellow]note:[/] {}", report.lock_note))
        console.print(summary_table(report))
        for r in report.steps:
            if r.status == "skipped" and r.message:
                console.print(markup("[yellow]{} skipped:[/] {}", r.step, r.message))
    if report.failed_step:
        err_console.print(
            markup("[bold red]error:[/] step {} failed: {}", report.failed_step, report.error)
        )
    elif report.error:
        err_console.print(markup("[bold red]error:[/] {}", report.error))
    return report


@app.command("run")
def run_cmd(
    workspace: WorkspaceOpt = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
    spark_conf: SparkConfOpt = None,
    steps: StepsOpt = None,
    full_refresh: FullRefreshOpt = False,
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    wait: WaitOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the pipeline bronze -> silver -> gold -> ml -> report (incremental by default)."""
    with handle_errors():
        settings = settings_from(workspace, engine, spark_master, spark_conf)
        report = execute(
            settings,
            steps=parse_steps(steps),
            full_refresh=full_refresh,
            date_from=parse_day(date_from, "--from"),
            date_to=parse_day(date_to, "--to"),
            wait=wait,
            json_out=json_out,
        )
    if report.exit_code:
        raise typer.Exit(report.exit_code)
