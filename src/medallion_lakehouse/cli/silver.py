"""`medallion silver`, `medallion audit`, `medallion quality`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import pyarrow.compute as pc
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
    error_line,
    handle_errors,
    plain,
    say,
    settings_from,
    show_table,
    write_step,
)
from medallion_lakehouse.cli.args import check_range, parse_day
from medallion_lakehouse.cli.run import FromOpt, ToOpt
from medallion_lakehouse.errors import AuditError, ConfigError
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.meta import QUALITY
from medallion_lakehouse.pipeline.context import StepContext, StepResult, new_run_id
from medallion_lakehouse.pipeline.steps import REGISTRY
from medallion_lakehouse.silver import audit as audit_mod
from medallion_lakehouse.silver import held


@app.command("silver")
def silver_cmd(
    workspace: WorkspaceOpt = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
    spark_conf: SparkConfOpt = None,
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Rebuild silver and quarantine from all bronze.")
    ] = False,
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    wait: WaitOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the silver step alone: new bronze batches -> silver/sales + quarantine.

    Exit codes: 0 ok or nothing to do; 1 the step failed; 2 bad option or not a workspace;
    3 a batch was held by the quality gate; 75 another writer holds the lake.
    """
    with handle_errors():
        day_from, day_to = parse_day(date_from, "--from"), parse_day(date_to, "--to")
        check_range(day_from, day_to, steps=["silver"], full_refresh=full_refresh)
        settings = settings_from(workspace, engine, spark_master, spark_conf)
        run_id = new_run_id()
        result = write_step(
            settings,
            "silver",
            REGISTRY["silver"],
            command="medallion silver",
            wait=wait,
            run_id=run_id,
            full_refresh=full_refresh,
            date_from=day_from,
            date_to=day_to,
        )
        if json_out:
            emit_json({"run_id": run_id, **result.__dict__})
        elif result.status == "skipped":
            say(plain(f"silver: nothing to do ({result.message})."))
            if "no new bronze batches" in (result.message or ""):
                say("New landing files reach silver after `medallion ingest` (or `medallion run`).")
        else:
            months = result.metrics.get("affected_months", [])
            console.print(
                f"silver [{result.metrics.get('mode')}] run {run_id}: {result.rows_in:,} bronze "
                f"rows in, {result.rows_quarantined:,} quarantined, {result.rows_out:,} rows "
                f"written to {len(months)} month(s) {', '.join(months)} in {result.seconds:.1f}s "
                f"(silver/sales version {result.metrics.get('silver_version')})."
            )
        for problem in result.metrics.get("errors", []):
            error_line(problem)
        if result.metrics.get("errors"):
            raise typer.Exit(int(result.metrics.get("exit_code", 1)))


@app.command("audit")
def audit_cmd(
    workspace: WorkspaceOpt = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
    spark_conf: SparkConfOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Prove conservation: each bronze record is current in silver, superseded, or quarantined.

    Exit codes: 0 audit passed; 1 a record is unaccounted for; 2 not a workspace.
    """
    with handle_errors():
        settings = settings_from(workspace, engine, spark_master, spark_conf)
        with Lake(settings) as lake:
            report = audit_mod.audit(lake)
        if json_out:
            emit_json(report.as_dict())
        else:
            console.print(
                f"bronze records processed: {report.bronze_rows:,} = current {report.current:,} "
                f"+ superseded {report.superseded:,} + quarantined {report.quarantined:,}; "
                f"silver rows {report.silver_rows:,}"
            )
            if report.held_batches or report.dropped_batches:
                console.print(
                    f"held by the quality gate: {len(report.held_batches)} batch(es); dropped by "
                    f"an operator: {len(report.dropped_batches)} (see `medallion held`)"
                )
            if report.pending_batches:
                console.print(
                    f"pending (not yet processed by silver): {len(report.pending_batches)} "
                    f"batch(es), {report.pending_rows:,} rows"
                )
            if report.ok:
                console.print("[green]audit passed[/]")
        if not report.ok:
            raise AuditError("audit failed: " + " | ".join(report.violations))


# A rule's severity ranks how bad its failed rows are; --fail-on LEVEL gates on it.
SEVERITY_RANK = {"warn": 1, "drop": 2, "fail": 3}


def rule_result(row: dict[str, object]) -> str:
    """pass when no row failed the rule, else its severity (warn, drop, fail)."""
    return "pass" if not row["rows_failed"] else str(row["severity"])


def tripped(rows: list[dict[str, object]], level: str) -> list[dict[str, object]]:
    """Rules that failed rows at severity `level` or worse."""
    floor = SEVERITY_RANK[level]
    return [
        r for r in rows if r["rows_failed"] and SEVERITY_RANK.get(str(r["severity"]), 3) >= floor
    ]


@app.command("quality")
def quality_cmd(
    workspace: WorkspaceOpt = None,
    run: Annotated[
        str | None, typer.Option("--run", help="Run id (default: the latest run with results).")
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option(
            "--fail-on",
            help="Exit 3 if a rule of this severity or worse failed any row: warn, drop or fail "
            "(for schedules; default: always exit 0 when results exist).",
        ),
    ] = None,
    manifest: Annotated[
        bool,
        typer.Option(
            "--manifest",
            help="Score the rules against the generator's _manifest.json in the landing folder: "
            "caught, missed and false alarms per defect kind.",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Show data-quality rule results of a run (one row per rule, with pass or its severity).

    Exit codes: 0 ok; 1 no results yet; 2 bad option, unknown run or not a workspace;
    3 --fail-on tripped.
    """
    with handle_errors():
        if fail_on is not None and fail_on not in SEVERITY_RANK:
            raise ConfigError(f"--fail-on {fail_on!r}: choose warn, drop or fail.")
        settings = settings_from(workspace)
        if manifest:  # issue 18: cli/look.py renders it
            from medallion_lakehouse.cli.look import show_manifest_score

            show_manifest_score(settings, None, json_out)
            return
        with Lake(settings) as lake:
            table = lake.read_arrow(QUALITY.name)
        if table.num_rows == 0:
            error_line("no data-quality results yet: run `medallion run` (or `medallion silver`).")
            raise typer.Exit(1)
        runs = sorted(set(table.column("run_id").to_pylist()))
        wanted = run or runs[-1]
        if wanted not in runs:
            raise ConfigError(
                f"No quality results for run {wanted!r}. Known runs: {', '.join(runs[-5:])}."
            )
        rows = table.filter(pc.equal(table.column("run_id"), wanted)).to_pylist()
        for r in rows:
            r["result"] = rule_result(r)
        bad = tripped(rows, fail_on) if fail_on else []
        if json_out:
            emit_json(rows)
        else:
            out = Table(title=plain(f"Data quality, run {wanted}"))
            out.add_column("table / rule", overflow="fold")
            out.add_column("severity", no_wrap=True)
            out.add_column("result", no_wrap=True)
            for col in ("checked", "failed", "share"):
                out.add_column(col, justify="right", no_wrap=True)
            out.add_column("description", ratio=1, overflow="fold")
            colours = {"pass": "green", "warn": "yellow", "drop": "yellow", "fail": "bold red"}
            for r in rows:
                share = r["rows_failed"] / r["rows_checked"] if r["rows_checked"] else 0.0
                out.add_row(
                    plain(f"{r['table']}: {r['rule']}"),
                    plain(r["severity"]),
                    plain(r["result"], colours.get(r["result"], "")),
                    f"{r['rows_checked']:,}",
                    f"{r['rows_failed']:,}",
                    f"{share:.2%}",
                    plain(r["description"] or ""),
                )
            show_table(out)
            checked_at = rows[0]["checked_at"]
            if isinstance(checked_at, datetime):
                say(f"checked at {checked_at:%Y-%m-%d %H:%M:%S} UTC")
        if bad:
            names = ", ".join(f"{r['table']}: {r['rule']}" for r in bad)
            error_line(f"--fail-on {fail_on}: {len(bad)} rule(s) failed rows: {names}.")
            raise typer.Exit(3)


@app.command("held")
def held_cmd(
    workspace: WorkspaceOpt = None,
    accept: Annotated[
        str | None, typer.Option("--accept", help="Process this held batch whatever its share.")
    ] = None,
    quarantine: Annotated[
        str | None,
        typer.Option("--quarantine", help="Send every row of this held batch to the quarantine."),
    ] = None,
    drop: Annotated[
        str | None,
        typer.Option("--drop", help="Never process this held batch (it stays in bronze)."),
    ] = None,
    note: Annotated[
        str | None, typer.Option("--note", help="Why (kept with the decision in _meta).")
    ] = None,
    wait: WaitOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List the batches the quality gate held back, or decide about one (final; the next
    silver run applies it).

    Exit codes: 0 ok; 2 unknown batch, several decisions at once, or not a workspace; 75
    another writer holds the lake.
    """
    with handle_errors():
        settings = settings_from(workspace)
        chosen = [
            (d, b) for d, b in zip(held.DECISIONS, (accept, quarantine, drop), strict=True) if b
        ]
        if len(chosen) > 1:
            raise ConfigError("Give one of --accept, --quarantine or --drop at a time.")
        if chosen:
            decision, batch_id = chosen[0]

            def decide(lake: Lake, ctx: StepContext) -> StepResult:
                made = held.decide(lake, batch_id, decision, note=note, commit=ctx.commit("held"))
                return StepResult(step="held", metrics={"batch_id": made.batch_id,
                                                        "decision": made.state})  # fmt: skip

            write_step(settings, "held", decide, command="medallion held", wait=wait)
        with Lake(settings) as lake:
            batches = sorted(held.current(lake).values(), key=lambda b: (b.seq or 0, b.batch_id))
        if json_out:
            emit_json([b.__dict__ | {"share": b.share} for b in batches])
            return
        if chosen:
            console.print(
                f"batch {chosen[0][1]}: {chosen[0][0]}; the next silver run applies it "
                "(`medallion run`)."
            )
        if not batches:
            say("No batch has been held by the quality gate.")
            return
        out = Table(title="batches held by the quality gate")
        for col in ("batch", "file", "state", "rows", "failed", "share", "reason"):
            out.add_column(col, justify="right" if col in ("rows", "failed", "share") else "left")
        for b in batches:
            out.add_row(
                b.batch_id, b.source_file or "", b.state, f"{b.rows:,}", f"{b.rows_failed:,}",
                f"{b.share:.1%}", b.reason or "",
            )  # fmt: skip
        show_table(out)
