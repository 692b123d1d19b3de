"""`medallion runs`: the runs recorded in _meta/runs, and one run's steps."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Annotated, Any

import typer
from rich.table import Table

from medallion_lakehouse.cli.app import (
    JsonOpt,
    WorkspaceOpt,
    app,
    emit_json,
    handle_errors,
    plain,
    say,
    settings_from,
    show_table,
)
from medallion_lakehouse.cli.progress import STATE_STYLE
from medallion_lakehouse.errors import ConfigError
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.meta import RUNS

# The worst state of its steps is a run's state.
_RANK = {"ok": 0, "skipped": 1, "interrupted": 2, "failed": 3}


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per run, newest first: when, how long, its steps and overall status."""
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_run[r["run_id"]].append(r)
    out = []
    for run_id in sorted(by_run, reverse=True):
        steps = sorted(by_run[run_id], key=lambda r: r["started_at"])
        status = max((s["status"] for s in steps), key=lambda s: _RANK.get(s, 3))
        out.append(
            {
                "run_id": run_id,
                "engine": steps[0]["engine"],
                "started_at": steps[0]["started_at"],
                "seconds": round(sum(s["seconds"] or 0.0 for s in steps), 3),
                "status": status,
                "steps": [
                    {
                        "step": s["step"],
                        "status": s["status"],
                        "rows_in": s["rows_in"],
                        "rows_out": s["rows_out"],
                        "rows_quarantined": s["rows_quarantined"],
                        "seconds": s["seconds"],
                        "tables": json.loads(s["tables"] or "{}"),
                        "message": s["message"],
                        "errors": json.loads(s["metrics"] or "{}").get("errors"),
                    }
                    for s in steps
                ],
            }
        )
    return out


@app.command("runs", epilog="Exit codes: 0 ok; 2 unknown run id or not a workspace.")
def runs_cmd(
    run_id: Annotated[
        str | None, typer.Argument(help="A run id: show its steps (default: list runs).")
    ] = None,
    workspace: WorkspaceOpt = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="Newest N runs (N >= 1).")
    ] = 10,
    json_out: JsonOpt = False,
) -> None:
    """List recorded runs (newest first), or one run's steps: rows, seconds, errors."""
    with handle_errors():
        settings = settings_from(workspace)
        with Lake(settings) as lake:
            rows = lake.read_arrow(RUNS.name).to_pylist()
        runs = summarise(rows)
        if run_id is not None:
            chosen = [r for r in runs if r["run_id"] == run_id or r["run_id"].startswith(run_id)]
            if len(chosen) != 1:
                known = ", ".join(r["run_id"] for r in runs[:5]) or "none yet"
                what = "matches several runs" if chosen else "is not a recorded run"
                raise ConfigError(f"run {run_id!r} {what}; newest runs: {known}.")
            _show_run(chosen[0], json_out)
            return
        runs = runs[:limit]
        if json_out:
            emit_json(runs)
            return
        if not runs:
            say("No run recorded yet: try `medallion run`.")
            return
        out = Table(title="runs, newest first")
        for col in ("run", "started (UTC)", "status", "secs", "steps"):
            out.add_column(
                col, no_wrap=col != "steps", justify="right" if col == "secs" else "left"
            )
        for r in runs:
            steps = ", ".join(f"{s['step']}={s['status']}" for s in r["steps"])
            out.add_row(
                plain(r["run_id"]),
                f"{r['started_at']:%Y-%m-%d %H:%M:%S}",
                plain(r["status"], STATE_STYLE.get(r["status"], "")),
                f"{r['seconds']:.1f}",
                plain(steps),
            )
        show_table(out)


def _show_run(run: dict[str, Any], json_out: bool) -> None:
    if json_out:
        emit_json(run)
        return
    out = Table(title=plain(f"run {run['run_id']} ({run['engine']}): {run['status']}"))
    for col in ("step", "status", "rows in", "rows out", "quar.", "secs", "message / errors"):
        text = col == "message / errors"
        numeric = col in ("rows in", "rows out", "quar.", "secs")
        out.add_column(
            col, no_wrap=not text, overflow="fold", justify="right" if numeric else "left"
        )
    for s in run["steps"]:
        notes = "; ".join([*([s["message"]] if s["message"] else []), *(s["errors"] or [])])
        out.add_row(
            plain(s["step"]),
            plain(s["status"], STATE_STYLE.get(s["status"], "")),
            f"{s['rows_in']:,}",
            f"{s['rows_out']:,}",
            f"{s['rows_quarantined']:,}",
            f"{s['seconds']:.1f}",
            plain(notes or "-"),
        )
    show_table(out)
