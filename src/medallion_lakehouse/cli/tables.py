"""Looking at tables: `status`, `show`, `history`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import pyarrow as pa
import typer
from rich.table import Table
from rich.text import Text

from medallion_lakehouse.cli.app import (
    EngineOpt,
    JsonOpt,
    WorkspaceOpt,
    app,
    console,
    emit_json,
    handle_errors,
    markup,
    plain,
    settings_from,
)
from medallion_lakehouse.contracts import get_contract
from medallion_lakehouse.errors import TableNotFoundError
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.pipeline.attention import needs_attention
from medallion_lakehouse.status import lake_status

TableArg = Annotated[str, typer.Argument(help="Table name, e.g. bronze/sales or silver/sales.")]


def _fmt(value: Any) -> Text:
    """A cell value as typed: data is never read as Rich markup or emoji codes."""
    if value is None:
        return plain("null", "dim")
    if isinstance(value, datetime):
        return plain(value.isoformat(sep=" ", timespec="seconds"))
    return plain(value)


def arrow_table_view(data: pa.Table, title: str) -> Table:
    view = Table(title=plain(title))
    for name in data.column_names:
        view.add_column(plain(name), overflow="fold")
    for row in data.to_pylist():
        view.add_row(*(_fmt(v) for v in row.values()))
    return view


@app.command("status")
def status_command(workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Tables with their versions, row counts and last commit, and the last run."""
    with handle_errors():
        settings = settings_from(workspace)
        with Lake(settings) as lake:
            tables = lake_status(lake)
            last_run = _last_run(lake)
            attention = needs_attention(lake)
        if json_out:
            emit_json(
                {
                    "lake": settings.lake_path,
                    "tables": tables,
                    "last_run": last_run,
                    "attention": attention,
                }
            )
            return
        view = Table(title=plain(f"lake {settings.lake_path}"))
        for col in ("table", "version", "rows", "files", "last commit", "operation", "run"):
            view.add_column(
                col,
                justify="right" if col in ("version", "rows", "files") else "left",
                no_wrap=col == "table",
            )
        for t in tables:
            if not t.exists:
                view.add_row(t.name, "[dim]-[/]", "[dim]not written yet[/]", "", "", "", "")
                continue
            view.add_row(
                t.name,
                str(t.version),
                f"{t.rows:,}" if t.rows is not None else "?",
                str(t.files),
                plain(t.last_commit or ""),
                plain(t.last_operation or ""),
                plain(t.last_run_id or ""),
            )
        console.print(view)
        if last_run:
            steps = ", ".join(f"{s['step']}={s['status']}" for s in last_run["steps"])
            console.print(markup("Last run {}: {}", last_run["run_id"], steps))
        else:
            console.print("No run recorded yet: try `medallion run` (or `medallion demo`).")
        for f in attention["failed_files"]:
            console.print(markup("[red]failed file[/] {}: {}", f["source_file"], f["reason"]))
        for b in attention["held_batches"]:
            console.print(
                markup(
                    "[yellow]held batch[/] {} ({}): {} (`medallion held`)",
                    b["batch_id"],
                    b["source_file"] or "?",
                    b["reason"] or "",
                )
            )


def _last_run(lake: Lake) -> dict[str, Any] | None:
    runs = lake.read_arrow("_meta/runs")
    if runs.num_rows == 0:
        return None
    rows = runs.to_pylist()
    newest = max(r["run_id"] for r in rows)
    steps = sorted((r for r in rows if r["run_id"] == newest), key=lambda r: r["started_at"])
    return {
        "run_id": newest,
        "steps": [
            {k: r[k] for k in ("step", "status", "seconds", "rows_out", "message")} for r in steps
        ],
    }


@app.command("show")
def show_command(
    table: TableArg,
    workspace: WorkspaceOpt = None,
    engine: EngineOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=0, help="Rows to show.")] = 20,
    version: Annotated[
        int | None, typer.Option("--version", "-v", help="Time travel: read this table version.")
    ] = None,
    where: Annotated[
        str | None,
        typer.Option("--where", help="Keep rows where COLUMN=VALUE (string comparison)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Print rows of a table (optionally as of an earlier version)."""
    with handle_errors():
        settings = settings_from(workspace, engine)
        get_contract(table)
        with Lake(settings) as lake:
            if not lake.exists(table):
                raise TableNotFoundError(
                    f"{table} has not been written yet in {settings.lake_path}: run "
                    "`medallion run` first."
                )
            current = lake.version(table)
            if version is not None and (version < 0 or (current is not None and version > current)):
                raise TableNotFoundError(
                    f"{table} has versions 0..{current}; version {version} does not exist."
                )
            expr = lake.read(table, version=version)
            if where:
                column, sep, value = where.partition("=")
                if not sep or column not in expr.columns:
                    raise typer.BadParameter(
                        f"--where expects COLUMN=VALUE with a column of {table}: "
                        f"{', '.join(expr.columns)}"
                    )
                expr = expr.filter(expr[column].cast("string") == value)
            data = lake.engine.to_arrow(expr.limit(limit))
        if json_out:
            emit_json(data.to_pylist())
        else:
            shown = version if version is not None else current
            console.print(arrow_table_view(data, f"{table} @ version {shown}"))


@app.command("history")
def history_command(
    table: TableArg,
    workspace: WorkspaceOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", help="Newest N commits.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Commits of a table, newest first: operation, rows, and the run and step that wrote it."""
    with handle_errors():
        settings = settings_from(workspace)
        get_contract(table)
        with Lake(settings) as lake:
            commits = lake.history(table, limit=limit)
        if json_out:
            emit_json(commits)
            return
        if not commits:
            console.print(plain(f"{table} has no commits yet."))
            return
        view = Table(title=plain(f"history of {table}"))
        for col in (
            "version",
            "when (UTC)",
            "operation",
            "rows added",
            "rows removed",
            "run",
            "step",
        ):
            view.add_column(col)
        for c in commits:
            metrics = c.get("operationMetrics", {}) or {}
            when = datetime.fromtimestamp(c["timestamp"] / 1000, UTC)
            view.add_row(
                str(c.get("version")),
                when.strftime("%Y-%m-%d %H:%M:%S"),
                plain(c.get("operation")),
                plain(metrics.get("num_added_rows", metrics.get("num_copied_rows", ""))),
                plain(metrics.get("num_deleted_rows", "")),
                plain(c.get("run_id", "")),
                plain(c.get("step", "")),
            )
        console.print(view)
