"""`medallion ingest`: landing files -> bronze."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from medallion_lakehouse.bronze.ingest import FileOutcome, IngestResult, discover
from medallion_lakehouse.bronze.readers import ReaderOptions
from medallion_lakehouse.cli.app import (
    OUTPUT,
    EngineOpt,
    JsonOpt,
    WaitOpt,
    WorkspaceOpt,
    app,
    emit_json,
    err_console,
    handle_errors,
    log,
    plain,
    say,
    settings_from,
    show_table,
    write_step,
)
from medallion_lakehouse.config import require_landing
from medallion_lakehouse.pipeline.steps import bronze_step


def ingest_summary(result: IngestResult) -> dict[str, object]:
    return {
        "ingested": result.ingested,
        "skipped": result.skipped,
        "failed": result.failed,
        "waiting": result.waiting,
        "rows": result.rows,
        "rejects": result.rejects,
        "repairs": result.repairs,
        "files": [vars(f) for f in result.files],
    }


def files_table(files: list[FileOutcome]) -> Table:
    table = Table(title="bronze ingest", show_lines=False)
    for col in ("file", "status", "rows", "rejects", "parser", "note"):
        table.add_column(col, justify="right" if col in ("rows", "rejects") else "left")
    colours = {"ingested": "green", "skipped": "yellow", "waiting": "cyan", "failed": "bold red"}
    for f in files:
        table.add_row(
            plain(f.source_file),
            plain(f.status, colours.get(f.status, "")),
            f"{f.rows:,}",
            f"{f.rejects:,}",
            plain(f.parser or ""),
            plain(
                f.reason
                or ("rescued: " + ", ".join(f.rescued_columns) if f.rescued_columns else "")
            ),
        )
    return table


@app.command("ingest")
def ingest_command(
    workspace: WorkspaceOpt = None,
    engine: EngineOpt = None,
    landing: Annotated[
        Path | None,
        typer.Option("--landing", help="Folder to ingest (default: the landing folder)."),
    ] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Hash every file again (default: a file with the path, size and mtime it had "
            "when it was ingested is skipped without being read).",
        ),
    ] = False,
    wait: WaitOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Ingest new landing files into bronze/sales (already-ingested files are skipped).

    A file still being written is left for a later run (status `waiting`). Exit codes: 0 ok;
    1 a file could not be read at all (every other file still lands); 2 a missing landing
    folder, bad option or not a workspace; 75 another writer holds the lake.
    """
    with handle_errors():
        given = str(landing.expanduser().resolve()) if landing else None
        settings = settings_from(
            workspace, engine, landing_dir=given, landing_verify=verify or None
        )
        root = require_landing(settings)  # a missing folder is an error, not "no files"
        paths = discover(root, options=ReaderOptions.from_settings(settings))
        total = sum(p.stat().st_size for p in paths if p.exists())
        with Progress(
            TextColumn("[bold]bronze[/]"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=err_console,
            disable=json_out or OUTPUT.plain or OUTPUT.quiet,
            transient=True,
        ) as progress:
            task = progress.add_task("ingest", total=total or None)
            step = write_step(
                settings,
                "bronze",
                bronze_step,
                command="medallion ingest",
                wait=wait,
                on_progress=lambda _s, done, _t, _d: progress.update(task, completed=done),
            )
        result = IngestResult(
            files=[FileOutcome(**f) for f in step.metrics["files"]],
            repairs=list(step.metrics["repairs"]),
        )
        if json_out:
            emit_json(ingest_summary(result))
        else:
            for note in result.repairs:
                log("note", f"recovered: {note}")
            if not paths:
                say(
                    plain(
                        f"No landing files in {root}: copy files there or run `medallion generate`."
                    )
                )
            else:
                show_table(files_table(result.files))
            say(
                f"{result.ingested} ingested, {result.skipped} skipped, {result.waiting} waiting, "
                f"{result.failed} failed; {result.rows:,} rows, {result.rejects:,} rejected lines."
            )
        if result.failed:
            raise typer.Exit(1)
