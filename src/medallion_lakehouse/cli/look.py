"""Looking into the lake without writing: `sql`, `trace`, `plan`, `verify` (and the manifest
score behind `quality --manifest`). The logic lives in `medallion_lakehouse.look`; this module
only parses options and renders results."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pyarrow as pa
import typer
from rich.table import Table

from medallion_lakehouse.cli.app import (
    EngineOpt,
    JsonOpt,
    SparkConfOpt,
    SparkMasterOpt,
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
from medallion_lakehouse.cli.output import csv_text, show_table
from medallion_lakehouse.config import Settings
from medallion_lakehouse.errors import ConfigError
from medallion_lakehouse.lake import Lake

if TYPE_CHECKING:  # the look modules are imported when their command runs
    from medallion_lakehouse.look.plan import Plan
    from medallion_lakehouse.look.trace import Trace
    from medallion_lakehouse.look.verify import VerifyReport

TABLE_ROWS = 1000  # rows a terminal table shows; --json and --csv print every row


def _value(value: Any) -> str:
    return "null" if value is None else str(value)


def _arrow_view(data: pa.Table, title: str | None = None) -> Table:
    view = Table(title=plain(title) if title else None)
    for name in data.column_names:
        numeric = (
            pa.types.is_integer(data.schema.field(name).type)
            or pa.types.is_decimal(data.schema.field(name).type)
            or pa.types.is_floating(data.schema.field(name).type)
        )
        view.add_column(plain(name), justify="right" if numeric else "left", overflow="fold")
    for row in data.slice(0, TABLE_ROWS).to_pylist():
        view.add_row(*(plain(_value(v), "dim" if v is None else "") for v in row.values()))
    return view


# -- sql ---------------------------------------------------------------------------------------
@app.command(
    "sql", epilog="Exit codes: 0 ok; 2 a query DuckDB refuses, a bad option or not a workspace."
)
def sql_command(
    query: Annotated[
        str | None, typer.Argument(help="A SELECT over views such as silver.sales or meta.runs.")
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Read the query from this file.")
    ] = None,
    tables: Annotated[
        bool, typer.Option("--tables", help="List the views (one per lake table) and exit.")
    ] = False,
    as_of: Annotated[
        list[str] | None,
        typer.Option(
            "--as-of",
            help="Time travel one view: VIEW=VERSION or VIEW=TIMESTAMP (ISO, UTC), repeatable.",
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="Print the result as CSV.")] = False,
) -> None:
    """Query the lake with SQL (read-only): every table is a view named after it.

    `bronze/sales` is `bronze.sales`, `_meta/runs` is `meta.runs`. Only SELECT and EXPLAIN run;
    the DuckDB session cannot read or write files of its own.
    """
    from medallion_lakehouse.look import sql as look_sql

    with handle_errors():
        if json_out and csv_out:
            raise ConfigError("Give --json or --csv, not both.")
        settings = settings_from(workspace)
        when = look_sql.parse_as_of(as_of)
        with Lake(settings) as lake:
            if tables:
                views = look_sql.list_views(lake, as_of=when)
                if json_out:
                    emit_json(views)
                    return
                view = Table(title=plain(f"views of lake {settings.lake_path}"))
                for col in ("view", "version", "rows", "grain"):
                    view.add_column(col, justify="right" if col in ("version", "rows") else "left")
                for v in views:
                    view.add_row(
                        plain(v.view),
                        "-" if v.version is None else str(v.version),
                        f"{v.rows:,}",
                        plain(v.grain),
                    )
                show_table(view)
                return
            if (query is None) == (file is None):
                raise ConfigError("Give a query, or --file FILE (or --tables to list the views).")
            if file is not None:
                try:
                    query = file.read_text()
                except OSError as exc:
                    raise ConfigError(f"Cannot read --file {file}: {exc.strerror}.") from None
            assert query is not None
            data = look_sql.query(lake, query, as_of=when)
        if json_out:
            emit_json(data.to_pylist())
        elif csv_out:
            sys.stdout.write(csv_text(data))
        else:
            show_table(_arrow_view(data))
            shown = min(data.num_rows, TABLE_ROWS)
            more = (
                f" (first {shown:,} shown: use --csv or --json for all)"
                if shown < data.num_rows
                else ""
            )
            console.print(markup("[dim]{} row(s){}[/]", data.num_rows, more))


# -- trace -------------------------------------------------------------------------------------
@app.command(
    "trace", epilog="Exit codes: 0 found; 1 nothing matches; 2 bad option or not a workspace."
)
def trace_command(
    sale_id: Annotated[str | None, typer.Argument(help="The sale_id to trace.")] = None,
    file: Annotated[
        str | None,
        typer.Option("--file", help="Landing file: its name or its path under the landing folder."),
    ] = None,
    line: Annotated[
        int | None,
        typer.Option("--line", min=1, help="Data line in --file (1-based, header not counted)."),
    ] = None,
    workspace: WorkspaceOpt = None,
    engine: EngineOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Every version of one sale from landing to gold (exit 1 when nothing matches).

    Per version: landing file and line, bronze batch and the bronze version that added it, and
    the silver outcome (current, superseded by which version, quarantined with rule and reason,
    or pending); then the current silver row and the gold rows it feeds, with the version that
    last rewrote each.
    """
    from medallion_lakehouse.look import trace as look_trace

    with handle_errors():
        settings = settings_from(workspace, engine)
        with Lake(settings) as lake:
            result = look_trace.trace(lake, sale_id=sale_id, file=file, line=line)
        if json_out:
            emit_json(result.as_dict())
        else:
            _print_trace(result)
        if not result.found:
            if not json_out:
                what = sale_id if sale_id is not None else f"{file} line {line}"
                err_console.print(markup("No record matches {} in bronze or silver.", what))
            raise typer.Exit(1)


def _print_trace(result: Trace) -> None:
    if not result.found:
        return
    console.print(markup("[bold]sale {}[/]", result.sale_id or "(no sale_id: quarantined)"))
    view = Table(title="versions, oldest first")
    for col in ("file:line", "batch (seq)", "ingested at", "bronze v", "outcome", "rule / reason"):
        view.add_column(col, overflow="fold")
    colours = {"current": "green", "superseded": "dim", "quarantined": "red", "pending": "yellow"}
    for v in result.versions:
        why = " - ".join(x for x in (v.rule, v.reason) if x)
        view.add_row(
            plain(f"{v.source_file}:{v.source_line}"),
            plain(f"{v.batch_id} ({_value(v.batch_seq)})"),
            plain(v.ingested_at[:19].replace("T", " ")),  # to the second; --json has it all
            _value(v.bronze_version),
            plain(v.outcome, colours.get(v.outcome, "")),
            plain(why),
        )
    show_table(view)
    if result.silver is not None:
        row = Table(title=plain(f"silver/sales (month last rewritten at v{result.silver_version})"))
        row.add_column("column")
        row.add_column("value", overflow="fold")
        for k, val in result.silver.items():
            row.add_row(plain(k), plain(_value(val)))
        show_table(row)
    else:
        console.print("Not in silver/sales.")
    for g in result.gold:
        key = ", ".join(f"{k}={_value(v)}" for k, v in g.key.items())
        console.print(markup("{} [{}] at v{}", g.table, key, _value(g.version)))
        console.print(plain("  " + ", ".join(f"{k}={_value(v)}" for k, v in g.row.items())))


# -- plan --------------------------------------------------------------------------------------
@app.command(
    "plan", epilog="Exit codes: 0 ok (nothing is written); 2 bad option or not a workspace."
)
def plan_command(
    workspace: WorkspaceOpt = None,
    engine: EngineOpt = None,
    replay: Annotated[
        bool | None,
        typer.Option(
            "--replay/--no-replay",
            help="Replay processed bronze through today's rules (default: only if rules changed).",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """What the next `medallion run` would do (no writes, no lock).

    Files to ingest, skip or defer; batches pending for silver and whether the gate would hold
    them; rows per rule it would quarantine; months silver and gold would rebuild; and, after a
    rule change (or with --replay), the rows a rebuild from bronze would move between silver and
    the quarantine, with the change of gold revenue per month.
    """
    from medallion_lakehouse.look import plan as look_plan

    with handle_errors():
        settings = settings_from(workspace, engine)
        with Lake(settings) as lake:
            result = look_plan.plan(lake, replay=replay)
        if json_out:
            emit_json(result.as_dict())
            return
        _print_plan(result)


def _print_plan(p: Plan) -> None:
    if p.files:
        files = Table(title="landing files (bronze)")
        for col in ("file", "action", "rows", "rejects", "why"):
            files.add_column(col, justify="right" if col in ("rows", "rejects") else "left")
        for f in p.files:
            colour = {"ingest": "green", "defer": "yellow", "fail": "red"}.get(f.action, "dim")
            files.add_row(
                plain(f.source_file), plain(f.action, colour),
                f"{f.rows:,}" if f.action == "ingest" else "",
                f"{f.rejects:,}" if f.action == "ingest" else "", plain(f.reason or ""),
            )  # fmt: skip
        show_table(files)
    else:
        console.print("No landing files.")
    if p.bronze_recovery:
        console.print(
            markup(
                "bronze would first finish interrupted ingests: {}", ", ".join(p.bronze_recovery)
            )
        )
    if p.resumes_full_refresh:
        console.print("[yellow]silver would resume an unfinished full refresh.[/]")
    if p.batches:
        batches = Table(title="batches for silver")
        for col in ("batch", "file", "rows", "quarantined", "gate"):
            batches.add_column(col, justify="right" if col in ("rows", "quarantined") else "left")
        for b in p.batches:
            batches.add_row(
                plain(b.batch_id + ("" if b.in_bronze else " (after ingest)")),
                plain(b.source_file), f"{b.rows:,}", f"{b.quarantined:,}",
                plain("held" if b.held else "passes", "red" if b.held else ""),
            )  # fmt: skip
        show_table(batches)
        rules = ", ".join(f"{r} {n:,}" for r, n in p.quarantined_by_rule.items()) or "none"
        console.print(markup("quarantined by rule: {}", rules))
        warned = ", ".join(f"{r} {n:,}" for r, n in p.rule_failures.items() if n) or "none"
        console.print(markup("rule failures (each rule alone): {}", warned))
    else:
        console.print("No bronze batch pending for silver.")
    console.print(markup("silver would rebuild: {}", ", ".join(p.silver_months) or "nothing"))
    for table, months in p.gold_months.items():
        console.print(markup("{} would rebuild: {}", table, ", ".join(months) or "nothing"))
    r = p.replay
    if r is not None and r.rules_changed:
        console.print(
            markup("[yellow]rules changed since the last silver run:[/] {}", "; ".join(r.changes))
        )
    if r is not None and r.computed:
        moves = ", ".join(f"{m.rows:,} {m.direction} ({m.rule})" for m in r.moves) or "no row moves"
        console.print(markup("replay from bronze: {}", moves))
        if r.months:
            console.print(
                markup("  months to rebuild (silver --from/--to): {}", ", ".join(r.months))
            )
        for c in r.revenue:
            console.print(
                markup("  {} revenue {} -> {} ({:+})", c.sale_month, c.revenue_now,
                       c.revenue_replayed, c.change)
            )  # fmt: skip
    if p.nothing_to_do:
        console.print("[green]Nothing to do: the lake is up to date with its landing folder.[/]")


# -- verify ------------------------------------------------------------------------------------
@app.command(
    "verify", epilog="Exit codes: 0 equal; 1 a month differs; 2 bad option or not a workspace."
)
def verify_command(
    workspace: WorkspaceOpt = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
    spark_conf: SparkConfOpt = None,
    scratch: Annotated[
        Path | None,
        typer.Option("--scratch", help="Folder for the scratch lake (default: the system temp)."),
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the scratch lake afterwards.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Prove the live silver and gold equal a full refresh from bronze (exit 1 if not).

    Rebuilds into a scratch lake (on this engine, or another with --engine spark) and compares
    month by month: rows, a hash of every row, revenue. Prints the differing months; exit 1 on
    any difference, 0 when equal. Bronze batches live silver has not processed are left out.
    """
    from medallion_lakehouse.look import verify as look_verify

    with handle_errors():
        settings: Settings = settings_from(workspace, engine, spark_master, spark_conf)
        with Lake(settings) as lake:
            report = look_verify.verify(lake, scratch_dir=scratch, keep=keep)
        if json_out:
            emit_json(report.as_dict())
        else:
            _print_verify(report, look_verify.differing_months(report))
        if not report.equal:
            raise typer.Exit(1)


def _print_verify(report: VerifyReport, months: list[str]) -> None:
    for note in report.notes:
        console.print(markup("[yellow]note:[/] {}", note))
    if report.excluded_batches:
        console.print(
            markup(
                "{} batch(es) not processed by live silver were left out.",
                len(report.excluded_batches),
            )
        )
    tables = [t for t in report.as_dict()["tables"]]
    if report.equal:
        console.print(
            markup(
                "[green]equal:[/] {} part(s) of {} match a full refresh on {} ({} batch(es)).",
                len(report.parts),
                ", ".join(tables),
                report.engine,
                report.compared_batches,
            )
        )
        return
    view = Table(title=plain(f"differences from a full refresh on {report.engine}"))
    for col in ("table", "month / rule", "rows live", "rows rebuilt", "revenue live",
                "revenue rebuilt", "rows equal"):  # fmt: skip
        view.add_column(col, justify="right" if col.startswith(("rows", "revenue")) else "left")
    for d in report.differences:
        view.add_row(
            plain(d.table), plain(_value(d.part)), f"{d.live_rows:,}", f"{d.rebuilt_rows:,}",
            _value(d.live_revenue), _value(d.rebuilt_revenue), "yes" if d.same_rows else "no",
        )  # fmt: skip
    show_table(view)
    console.print(markup("[red]differing months:[/] {}", ", ".join(months) or "(quarantine only)"))
    if report.scratch:
        console.print(markup("scratch lake: {}", report.scratch))


# -- quality --manifest ----------------------------------------------------------------------
def show_manifest_score(settings: Settings, manifest: Path | None, json_out: bool) -> None:
    """`medallion quality --manifest`: rules scored against the generator's injected defects."""
    from medallion_lakehouse.look import manifest_score

    with Lake(settings) as lake:
        result = manifest_score.score(lake, manifest)
    if json_out:
        emit_json(result.as_dict())
        return
    view = Table(title=plain(f"rules against {result.manifest}"))
    # Flagged (= caught + false alarms) is in --json; without it the table fits 80 columns.
    view.add_column("defect kind", no_wrap=True)
    view.add_column("caught by", min_width=14, overflow="fold")
    for col in ("injected", "caught", "missed", "false alarms"):
        view.add_column(col, justify="right")
    for k in result.kinds:
        view.add_row(
            plain(k.kind), plain(k.caught_by), f"{k.injected:,}",
            f"{k.caught:,}", plain(f"{k.missed:,}", "red" if k.missed else ""),
            plain(f"{k.false_alarms:,}", "yellow" if k.false_alarms else ""),
        )  # fmt: skip
    show_table(view)
    if result.missing_files:
        console.print(markup("not in bronze yet (not scored): {}", ", ".join(result.missing_files)))
