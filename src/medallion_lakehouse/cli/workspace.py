"""`medallion init`, `medallion config`, `medallion demo`: making and reading a workspace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

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
    emit_json,
    handle_errors,
    log,
    plain,
    say,
    settings_from,
    show_table,
)
from medallion_lakehouse.cli.args import init_workspace
from medallion_lakehouse.cli.run import RUN_EXIT_CODES, execute, report_path
from medallion_lakehouse.config import Settings, setting_sources
from medallion_lakehouse.pipeline.steps import STEP_ORDER


@app.command(
    "init", epilog="Exit codes: 0 ok (also when the workspace already exists); 2 bad settings."
)
def init_cmd(workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Create a workspace: the folder, a commented medallion.toml and data/landing/.

    Nothing already there is changed. Every other command refuses a folder that is not a
    workspace, so that a typo in --workspace never creates an empty lake.
    """
    with handle_errors():
        settings = settings_from(workspace, require_workspace=False)
        created = init_workspace(settings)
        if json_out:
            emit_json({"workspace": settings.workspace, "created": created})
            return
        for path in created:
            say(plain(f"created {path}"))
        if not created:
            say(plain(f"{settings.workspace} is already a workspace: nothing to create."))
        say(
            plain(
                f"next: put landing files in {settings.landing_path} (or `medallion generate "
                f"-w {settings.workspace}`), then `medallion run -w {settings.workspace}`."
            )
        )


@app.command("config", epilog="Exit codes: 0 ok; 2 invalid settings or not a workspace.")
def config_cmd(
    workspace: WorkspaceOpt = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Every resolved setting, its value and where it came from.

    The source is a flag, a MEDALLION_* environment variable, a medallion.toml line, or the
    default. Credentials in storage_options are masked.
    """
    with handle_errors():
        settings = settings_from(workspace, engine, spark_master)
        flags = {"workspace": workspace, "engine": engine, "spark_master": spark_master}
        rows = setting_sources(settings, flags)
        if json_out:
            emit_json(rows)
            return
        out = Table(title=plain(f"settings of {settings.workspace}"))
        out.add_column("setting", no_wrap=True)
        out.add_column("value", overflow="fold")
        out.add_column("source", overflow="fold")
        for r in rows:
            value = r["value"]
            shown = json.dumps(value) if isinstance(value, dict | list) else str(value)
            out.add_row(plain(r["setting"]), plain(shown), plain(r["source"]))
        show_table(out)


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


@app.command("demo", epilog=RUN_EXIT_CODES)
def demo_cmd(
    workspace: WorkspaceOpt = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
    spark_conf: SparkConfOpt = None,
    rows: Annotated[int, typer.Option("--rows", help="Sales to generate.", min=1)] = 100_000,
    wait: WaitOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Generate a sample, run every step, and say where the report and tables are.

    Creates the workspace if needed; an empty landing folder is filled with generated sales,
    one that holds files is used as it is.
    """
    with handle_errors():
        settings = settings_from(
            workspace, engine, spark_master, spark_conf, require_workspace=False
        )
        # demo makes its own sample: the folder may be new (no medallion.toml is written, so
        # `make demo` leaves nothing but data/ in a checkout).
        settings.workspace.mkdir(parents=True, exist_ok=True)
        landed = _land_sample(settings, rows)
        if not json_out:
            say(plain(landed))
        report = execute(settings, steps=list(STEP_ORDER), wait=wait, json_out=json_out)
        if not json_out:
            say(
                plain(
                    f"tables: {settings.lake_path} (try `medallion status -w {settings.workspace}`)"
                )
            )
            if report_path(report) is None:
                log("warning", "no HTML report was written (see the report step above).")
    if report.exit_code:
        raise typer.Exit(report.exit_code)
