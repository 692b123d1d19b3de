"""`medallion report`: write the self-contained HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medallion_lakehouse.cli.app import (
    EngineOpt,
    JsonOpt,
    WorkspaceOpt,
    app,
    emit_json,
    handle_errors,
    markup,
    say,
    settings_from,
    show_table,
)
from medallion_lakehouse.lake import Lake


@app.command("report")
def report_command(
    workspace: WorkspaceOpt = None,
    engine: EngineOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="HTML file to write (default: <reports>/report.html)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write the HTML report (one file, opens from disk, works offline).

    Sections whose tables are not written yet show a placeholder. Exit codes: 0 ok; 1 a
    section failed to render (the page is still written, with the error in place of that
    section); 2 bad option or not a workspace.
    """
    with handle_errors():
        # matplotlib is imported here, not at start-up: every other command stays quick to start.
        from medallion_lakehouse.report.step import write_report

        settings = settings_from(workspace, engine)
        with Lake(settings) as lake:
            output = write_report(lake, out=out, keep_copy=out is None)
        if json_out:
            emit_json(output)
        else:
            table = Table(title="report sections")
            table.add_column("section")
            table.add_column("state")
            colours = {"ok": "green", "empty": "yellow", "error": "bold red"}
            for section, state in output.sections.items():
                note = f" {output.errors[section]}" if section in output.errors else ""
                table.add_row(section, f"[{colours[state]}]{state}[/]{note}")
            show_table(table)
            say(markup("Wrote [bold]{}[/] in {:.2f} s", output.path, output.seconds))
            if output.copy:
                say(markup("Copy: {}", output.copy))
        if output.errors:
            raise typer.Exit(1)
