"""`medallion ingest`: landing files -> bronze."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from medallion_lakehouse.bronze.ingest import FileOutcome, IngestResult, discover, ingest
from medallion_lakehouse.cli.app import (
    EngineOpt,
    JsonOpt,
    WaitOpt,
    WorkspaceOpt,
    app,
    console,
    emit_json,
    err_console,
    handle_errors,
    plain,
    settings_from,
)
from medallion_lakehouse.pipeline.context import new_run_id
from medallion_lakehouse.pipeline.lock import lake_lock
from medallion_lakehouse.storage.lake import Lake


def ingest_summary(result: IngestResult) -> dict[str, object]:
    return {
        "ingested": result.ingested,
        "skipped": result.skipped,
        "failed": result.failed,
        "rows": result.rows,
        "rejects": result.rejects,
        "recovered_rows": result.recovered_rows,
        "files": [vars(f) for f in result.files],
    }


def files_table(files: list[FileOutcome]) -> Table:
    table = Table(title="bronze ingest", show_lines=False)
    for col in ("file", "status", "rows", "rejects", "parser", "note"):
        table.add_column(col, justify="right" if col in ("rows", "rejects") else "left")
    colours = {"ingested": "green", "skipped": "yellow", "failed": "bold red"}
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
    wait: WaitOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Ingest new landing files into bronze/sales (already-ingested files are skipped).

    Exit code 1 when a file could not be read at all; every other file still lands.
    """
    with handle_errors():
        settings = settings_from(workspace, engine)
        root = Path(landing) if landing else Path(settings.landing_path)
        paths = discover(root)
        total = sum(p.stat().st_size for p in paths if p.exists())
        run_id = new_run_id()
        with (
            lake_lock(settings, wait, run_id=run_id, command="medallion ingest"),
            Lake(settings) as lake,
            Progress(
                TextColumn("[bold]bronze[/]"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=err_console,
                disable=json_out or not err_console.is_terminal,
                transient=True,
            ) as progress,
        ):
            task = progress.add_task("ingest", total=total or None)
            result = ingest(
                lake,
                run_id=run_id,
                landing=root,
                files=paths,
                on_bytes=lambda n: progress.advance(task, n),
            )
        if json_out:
            emit_json(ingest_summary(result))
        else:
            if not paths:
                console.print(f"No landing files in {root}.")
            else:
                console.print(files_table(result.files))
            console.print(
                f"{result.ingested} ingested, {result.skipped} skipped, {result.failed} failed; "
                f"{result.rows:,} rows, {result.rejects:,} rejected lines."
            )
            if result.recovered_rows:
                console.print(
                    f"Removed {result.recovered_rows:,} rows left by an interrupted ingest."
                )
        if result.failed:
            raise typer.Exit(1)
