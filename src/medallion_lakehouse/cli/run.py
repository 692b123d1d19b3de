"""`medallion run`: the whole pipeline (or a selection of steps) with progress and a summary."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer
from rich.table import Table

from medallion_lakehouse.cli.app import (
    OUTPUT,
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
    error_line,
    handle_errors,
    log,
    markup,
    plain,
    say,
    settings_from,
    show_table,
)
from medallion_lakehouse.cli.args import check_range, init_workspace, parse_day
from medallion_lakehouse.cli.progress import STATE_STYLE, RunProgress
from medallion_lakehouse.config import Settings
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
    str | None,
    typer.Option(
        "--from",
        help="Rebuild the silver and gold months covering sale dates from this day (YYYY-MM-DD).",
    ),
]
ToOpt = Annotated[
    str | None, typer.Option("--to", help="... up to this day, inclusive (YYYY-MM-DD).")
]
InitOpt = Annotated[
    bool,
    typer.Option(
        "--init", help="Create the workspace (folder, medallion.toml, landing) if it is missing."
    ),
]

RUN_EXIT_CODES = (
    "Exit codes: 0 ok (skipped steps say why); 1 a step failed or a landing file could not be "
    "read; 2 usage, configuration or a missing landing folder; 3 a quality gate held a batch "
    "or the newest data is older than [freshness] error_after; 75 another writer holds the "
    "lake; 130 interrupted (Ctrl-C), recorded in _meta/runs."
)


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
        # Numbers and names keep their width at 80 columns; only the free text wraps.
        text = col == "tables (version)"
        table.add_column(
            col,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=not text,
            overflow="fold" if text else "ellipsis",
            min_width=None if text else len(col),
        )
    colour = STATE_STYLE
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


def report_path(report: RunReport) -> str | None:
    """Where this run's report step wrote the HTML report, if it ran."""
    for r in report.steps:
        if r.step == "report" and r.metrics.get("path"):
            return str(r.metrics["path"])
    return None


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
    """Run with progress (none with --json), print the summary and what needs doing."""
    with RunProgress(err_console if json_out else console, enabled=not json_out) as progress:
        report = run_pipeline(
            settings,
            steps=steps,
            full_refresh=full_refresh,
            date_from=date_from,
            date_to=date_to,
            wait_seconds=wait,
            on_progress=progress.on_progress,
            on_step=progress.on_step,
        )
    if json_out:
        emit_json(report.as_dict() | {"report_path": report_path(report)})
    else:
        if report.lock_note:
            log("note", report.lock_note)
        show_table(summary_table(report))
        for r in report.steps:
            if r.status == "skipped" and r.message:
                say(markup("[yellow]{} skipped:[/] {}", r.step, r.message))
        for f in report.freshness:
            if f["level"] == "warn":
                log("warning", f"stale data: {f['message']}")
        path = report_path(report)
        if path:
            say(markup("report: {} (open it in a browser)", path))
    if report.interrupted_step:
        error_line(
            f"interrupted (Ctrl-C) during step {report.interrupted_step}: recorded in _meta/runs "
            "as interrupted; what it committed before stays; run `medallion run` again to finish."
        )
    elif report.failed_step:
        error_line(f"step {report.failed_step} failed: {report.error}")
    elif report.error:
        error_line(report.error)
    elif OUTPUT.quiet:
        console.print(plain(f"run {report.run_id}: ok ({report.seconds:.1f} s)"))
    return report


@app.command("run", epilog=RUN_EXIT_CODES)
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
    init: InitOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Run the pipeline bronze -> silver -> gold -> ml -> report (incremental by default).

    A workspace that does not exist is an error unless --init creates it; so is a missing
    landing folder when bronze runs. --from/--to and --full-refresh concern silver and gold.
    """
    with handle_errors():
        selected = parse_steps(steps)
        day_from, day_to = parse_day(date_from, "--from"), parse_day(date_to, "--to")
        check_range(day_from, day_to, steps=selected, full_refresh=full_refresh)
        settings = settings_from(
            workspace, engine, spark_master, spark_conf, require_workspace=not init
        )
        if init:
            for created in init_workspace(settings):
                log("note", f"created {created}")
        report = execute(
            settings,
            steps=selected,
            full_refresh=full_refresh,
            date_from=day_from,
            date_to=day_to,
            wait=wait,
            json_out=json_out,
        )
    if report.exit_code:
        raise typer.Exit(report.exit_code)
