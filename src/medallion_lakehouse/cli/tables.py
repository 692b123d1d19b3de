"""Looking at tables: `status`, `show`, `history`."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import pyarrow as pa
import typer
from rich import box
from rich.table import Table

from medallion_lakehouse import freshness
from medallion_lakehouse.attention import needs_attention
from medallion_lakehouse.bronze import schema_changes
from medallion_lakehouse.cli.app import (
    OUTPUT,
    EngineOpt,
    JsonOpt,
    WorkspaceOpt,
    app,
    console,
    emit_json,
    handle_errors,
    log,
    markup,
    plain,
    say,
    settings_from,
    show_table,
)
from medallion_lakehouse.cli.output import csv_text
from medallion_lakehouse.contracts import get_contract
from medallion_lakehouse.errors import ConfigError, TableNotFoundError
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.status import lake_status, rows_removed
from medallion_lakehouse.storage.maintenance import missing_files

if TYPE_CHECKING:
    from rich.text import Text

TableArg = Annotated[str, typer.Argument(help="Table name, e.g. bronze/sales or silver/sales.")]
READ_EXIT_CODES = "Exit codes: 0 ok; 2 unknown table, bad option or a workspace that is not one."


def _fmt(value: Any) -> Text:
    """A cell value as typed: data is never read as Rich markup or emoji codes."""
    if value is None:
        return plain("null", "dim")
    if isinstance(value, datetime):
        return plain(value.isoformat(sep=" ", timespec="seconds"))
    return plain(value)


def _keeps_width(name: str, field_type: pa.DataType, key: tuple[str, ...]) -> bool:
    """Numbers, dates, flags and ids are never cut or wrapped; free text wraps."""
    if name in key or name.endswith("_id") or name.startswith("_batch"):
        return True
    return not (pa.types.is_string(field_type) or pa.types.is_large_string(field_type))


_MIN_TEXT = 12  # a text column narrower than this is unreadable: show records as blocks


def arrow_table_view(data: pa.Table, title: str, key: tuple[str, ...] = ()) -> Table:
    """Rows as a table; when the fixed-width columns alone overflow the terminal, one block
    per record instead (as psql's expanded mode), so that no number or id is cut."""
    view = Table(title=plain(title), box=box.SIMPLE_HEAD, collapse_padding=True)
    needed = 0  # the width the table needs with every fixed column whole
    for field in data.schema:
        fixed = _keeps_width(field.name, field.type, key)
        cells = [len(_fmt(v).plain) for v in data.column(field.name).to_pylist()]
        longest = max([len(field.name), *cells])
        needed += (longest if fixed else min(longest, _MIN_TEXT)) + 1
        view.add_column(
            plain(field.name),
            no_wrap=fixed,
            overflow="fold",
            justify="right" if pa.types.is_integer(field.type) or pa.types.is_decimal(field.type)
            else "left",
        )  # fmt: skip
    rows = data.to_pylist()
    for row in rows:
        view.add_row(*(_fmt(v) for v in row.values()))
    if OUTPUT.plain or not rows:
        return view
    if needed + 2 <= console.width:
        return view
    expanded = Table(title=plain(title), box=box.SIMPLE_HEAD, show_header=False)
    expanded.add_column("column", no_wrap=True, style="bold")
    expanded.add_column("value", overflow="fold")
    for i, row in enumerate(rows):
        if i:
            expanded.add_section()
        for name, value in row.items():
            expanded.add_row(plain(name), _fmt(value))
    return expanded


_STATUS_COLUMNS = ("table", "version", "rows", "files", "last commit (UTC)", "operation", "run")
_WIDE = 110
_SCHEMA_CHANGES_SHOWN = 5  # newest first; `--json` lists them all


@app.command("status", epilog=READ_EXIT_CODES)
def status_command(workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Tables with their versions, row counts and last commit, and the last run."""
    with handle_errors():
        settings = settings_from(workspace)
        with Lake(settings) as lake:
            tables = lake_status(lake)
            last_run = _last_run(lake)
            attention = needs_attention(lake)
            fresh = freshness.check(lake)
            changes = schema_changes.recorded(lake)
        if json_out:
            emit_json(
                {
                    "lake": settings.lake_path,
                    "tables": tables,
                    "last_run": last_run,
                    "attention": attention,
                    "freshness": [
                        {"rule": f.rule, "level": f.level, "message": f.message} for f in fresh
                    ],
                    "schema_changes": changes,
                }
            )
            return
        view = Table(
            title=plain(f"lake {settings.lake_path}"), box=box.SIMPLE_HEAD, collapse_padding=True
        )
        numbers = ("version", "rows", "files")
        # Below 110 columns the files and operation columns give way (`--json` has them), so
        # that versions, counts, times and run ids are never cut.
        wide = OUTPUT.plain or console.width >= _WIDE
        shown = [c for c in _STATUS_COLUMNS if wide or c not in ("files", "operation")]
        for col in shown:
            text = col in ("table", "operation")
            view.add_column(
                col,
                justify="right" if col in numbers else "left",
                no_wrap=not text,
                overflow="fold",
                min_width=16 if col == "table" else None,
            )
        for t in tables:
            when = (t.last_commit or "").replace("T", " ").removesuffix("+00:00")
            cells: dict[str, Text | str] = {
                "table": plain(t.name),
                "version": str(t.version) if t.exists else "[dim]-[/]",
                "rows": (f"{t.rows:,}" if t.rows is not None else "?") if t.exists else "[dim]-[/]",
                "files": str(t.files) if t.exists else "",
                "last commit (UTC)": plain(when) if t.exists else "[dim]not written yet[/]",
                "operation": plain(t.last_operation or ""),
                "run": plain(t.last_run_id or ""),
            }
            view.add_row(*(cells[c] for c in shown))
        show_table(view)
        if last_run:
            steps = ", ".join(f"{s['step']}={s['status']}" for s in last_run["steps"])
            say(markup("Last run {}: {}", last_run["run_id"], steps))
            stopped = [s["step"] for s in last_run["steps"] if s["status"] == "interrupted"]
            if stopped:
                log(
                    "warning",
                    f"the last run was interrupted during step {stopped[0]}: run "
                    "`medallion run` to finish its work.",
                )
        else:
            say("No run recorded yet: try `medallion run` (or `medallion demo`).")
        for measure in fresh:
            colour = {"ok": "green", "warn": "yellow", "error": "red"}[measure.level]
            say(markup(f"[{colour}]freshness {{}}[/]: {{}}", measure.level, measure.message))
        for c in changes[:_SCHEMA_CHANGES_SHOWN]:
            event = schema_changes.SchemaChange.from_row(c).describe_event()
            say(markup("[yellow]schema change[/] {}", event))
        if len(changes) > _SCHEMA_CHANGES_SHOWN:
            say(f"... and {len(changes) - _SCHEMA_CHANGES_SHOWN} earlier schema change(s) (--json)")
        for f in attention["failed_files"]:
            say(markup("[red]failed file[/] {}: {}", f["source_file"], f["reason"]))
        for b in attention["held_batches"]:
            say(
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


def _columns(spec: str | None, available: list[str], table: str, flag: str) -> list[str]:
    if not spec:
        return []
    names = [c.strip().removeprefix("-") for c in spec.split(",") if c.strip()]
    unknown = [n.split(":")[0] for n in names if n.split(":")[0] not in available]
    if unknown or not names:
        raise ConfigError(
            f"{flag} {spec!r}: {', '.join(unknown) or 'no column'} is not a column of {table}; "
            f"choose from {', '.join(available)}."
        )
    return names


def _order(spec: str | None, available: list[str], key: tuple[str, ...], table: str) -> list[Any]:
    """`--order-by a,b:desc` (or `-b`) as Ibis sort keys; default: the table's key."""
    import ibis

    if spec is None:
        return [k for k in key if k in available]
    keys: list[Any] = []
    for item in [c.strip() for c in spec.split(",") if c.strip()]:
        name, _, direction = item.removeprefix("-").partition(":")
        descending = item.startswith("-") or direction.lower() == "desc"
        if direction.lower() not in ("", "asc", "desc"):
            raise ConfigError(f"--order-by {item!r}: the direction is asc or desc (col:desc).")
        _columns(name, available, table, "--order-by")
        keys.append(ibis.desc(name) if descending else name)
    return keys


def _check_readable(lake: Lake, table: str, version: int | None) -> int | None:
    """The current version; an error for a version that does not exist or was vacuumed."""
    current = lake.version(table)
    if version is None:
        return current
    if version < 0 or (current is not None and version > current):
        raise TableNotFoundError(
            f"{table} has versions 0..{current}; version {version} does not exist."
        )
    gone = missing_files(lake.uri(table), version, lake.storage_options)
    if gone:
        raise TableNotFoundError(
            f"version {version} of {table} was vacuumed: {gone} of its data files were removed "
            "by `medallion optimize --apply`, so it cannot be read (history still lists the "
            "commit). Keep --retention-hours at 168 or more to keep a week of time travel."
        )
    return current


@app.command(
    "show",
    epilog="Exit codes: 0 ok; 2 unknown table, column or version, or a vacuumed version.",
)
def show_command(
    table: TableArg,
    workspace: WorkspaceOpt = None,
    engine: EngineOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=0, help="Rows to show.")] = 20,
    version: Annotated[
        int | None,
        typer.Option("--version", "-v", min=0, help="Time travel: read this table version."),
    ] = None,
    where: Annotated[
        str | None,
        typer.Option("--where", help="Keep rows where COLUMN=VALUE (string comparison)."),
    ] = None,
    columns: Annotated[
        str | None, typer.Option("--columns", "-c", help="Only these columns (comma-separated).")
    ] = None,
    order_by: Annotated[
        str | None,
        typer.Option(
            "--order-by",
            help="Sort by these columns (comma-separated; COL:desc or -COL descending). "
            "Default: the table's key.",
        ),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option("--format", "-f", help="table (default), csv or json."),
    ] = "table",
    json_out: JsonOpt = False,
) -> None:
    """Print rows of a table (optionally as of an earlier version), sorted by its key."""
    with handle_errors():
        if fmt not in ("table", "csv", "json"):
            raise ConfigError(f"--format {fmt!r}: choose table, csv or json.")
        settings = settings_from(workspace, engine)
        contract = get_contract(table)
        with Lake(settings) as lake:
            if not lake.exists(table):
                raise TableNotFoundError(
                    f"{table} has not been written yet in {settings.lake_path}: run "
                    "`medallion run` first."
                )
            current = _check_readable(lake, table, version)
            expr = lake.read(table, version=version)
            if where:
                column, sep, value = where.partition("=")
                if not sep or column not in expr.columns:
                    raise ConfigError(
                        f"--where expects COLUMN=VALUE with a column of {table}: "
                        f"{', '.join(expr.columns)}."
                    )
                expr = expr.filter(expr[column].cast("string") == value)
            keys = _order(order_by, list(expr.columns), tuple(contract.key), table)
            if keys:
                expr = expr.order_by(keys)
            wanted = _columns(columns, list(expr.columns), table, "--columns")
            if wanted:
                expr = expr.select(wanted)
            data = lake.engine.to_arrow(expr.limit(limit))
        if json_out or fmt == "json":
            emit_json(data.to_pylist())
        elif fmt == "csv":
            sys.stdout.write(csv_text(data))  # data, not Rich: stays parseable
            sys.stdout.flush()
        else:
            shown = version if version is not None else current
            view = arrow_table_view(data, f"{table} @ version {shown}", tuple(contract.key))
            show_table(view)


@app.command("history", epilog=READ_EXIT_CODES)
def history_command(
    table: TableArg,
    workspace: WorkspaceOpt = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Newest N commits (N >= 1).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Commits of a table, newest first: operation, rows, and the run and step that wrote it."""
    with handle_errors():
        settings = settings_from(workspace)
        get_contract(table)
        with Lake(settings) as lake:
            commits = lake.history(table, limit=limit)
            for c in commits:
                c["rows_removed"] = rows_removed(lake, table, c)
        if json_out:
            emit_json(commits)
            return
        if not commits:
            say(plain(f"{table} has no commits yet: run `medallion run` to write it."))
            return
        view = Table(title=plain(f"history of {table}"), box=box.SIMPLE_HEAD)
        for col in ("version", "when (UTC)", "operation", "rows added", "rows removed", "run",
                    "step"):  # fmt: skip
            numeric = col in ("version", "rows added", "rows removed")
            view.add_column(
                col,
                justify="right" if numeric else "left",
                no_wrap=col != "operation",
                overflow="fold",
            )
        for c in commits:
            metrics = c.get("operationMetrics", {}) or {}
            when = datetime.fromtimestamp(c["timestamp"] / 1000, UTC)
            added = metrics.get("num_added_rows", metrics.get("num_copied_rows"))
            removed = c["rows_removed"]
            view.add_row(
                str(c.get("version")),
                when.strftime("%Y-%m-%d %H:%M:%S"),
                plain(c.get("operation")),
                "" if added is None else f"{int(added):,}",
                "" if removed is None else f"{removed:,}",
                plain(c.get("run_id", "")),
                plain(c.get("step", "")),
            )
        show_table(view)
