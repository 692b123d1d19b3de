"""The writing session: every command that writes runs its step(s) through `run_pipeline`.

That gives each of them the same guarantees: the lake's writer lock for the whole command, one
run id, a Lake whose writes are refused once the lock is lost, and one `_meta/runs` row per step
(`medallion ingest` and `medallion silver` leave the same record as `medallion run`).

Steps run in pipeline order; the first failing step stops the run (later steps are recorded as
skipped, naming it). Ctrl-C stops the run too: the step it hit is recorded as `interrupted`
(what it committed before stays; commits are atomic), later steps as skipped, and the report
says so with exit code 130. A step may also report non-fatal errors in `metrics["errors"]`
(bronze does for unreadable files): the run goes on and exits 1 at the end. Printing is the
caller's job: `run_pipeline` reports progress through callbacks and returns a `RunReport`.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa

from medallion_lakehouse import native_memory
from medallion_lakehouse.config import Settings
from medallion_lakehouse.errors import MedallionError
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.meta import RUNS
from medallion_lakehouse.pipeline.context import StepContext, StepResult, new_run_id
from medallion_lakehouse.pipeline.lock import lake_lock
from medallion_lakehouse.pipeline.steps import STEP_ORDER, StepFn, resolve
from medallion_lakehouse.storage.delta import CommitInfo

ProgressFn = Callable[[str, float, float | None, str], None]  # step, completed, total, text
StepEventFn = Callable[[str, StepResult | None], None]  # step started (None) / finished


@dataclass
class RunReport:
    """What a run did: one StepResult per selected step, and how the process should exit."""

    run_id: str
    engine: str
    steps: list[StepResult] = field(default_factory=list)
    exit_code: int = 0
    failed_step: str | None = None
    interrupted_step: str | None = None
    error: str | None = None
    lock_note: str | None = None
    seconds: float = 0.0
    freshness: list[dict[str, Any]] = field(default_factory=list)  # [freshness] checks

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "engine": self.engine,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "failed_step": self.failed_step,
            "interrupted_step": self.interrupted_step,
            "error": self.error,
            "lock_note": self.lock_note,
            "freshness": self.freshness,
            "seconds": round(self.seconds, 3),
            "steps": [
                {
                    "step": r.step,
                    "status": r.status,
                    "rows_in": r.rows_in,
                    "rows_out": r.rows_out,
                    "rows_quarantined": r.rows_quarantined,
                    "seconds": round(r.seconds, 3),
                    "tables": r.tables,
                    "message": r.message,
                    "metrics": r.metrics,
                }
                for r in self.steps
            ],
        }


def _run_row(
    report: RunReport, result: StepResult, started: datetime, finished: datetime
) -> dict[str, Any]:
    return {
        "run_id": report.run_id,
        "step": result.step,
        "engine": report.engine,
        "status": result.status,
        "started_at": started,
        "finished_at": finished,
        "seconds": result.seconds,
        "rows_in": result.rows_in,
        "rows_out": result.rows_out,
        "rows_quarantined": result.rows_quarantined,
        "tables": json.dumps(result.tables, sort_keys=True),
        "message": result.message,
        "metrics": json.dumps(result.metrics, sort_keys=True, default=str),
    }


def _record(lake: Lake, rows: list[dict[str, Any]], run_id: str) -> None:
    lake.write_arrow(
        RUNS.name,
        pa.Table.from_pylist(rows, schema=RUNS.schema),
        commit=CommitInfo(run_id=run_id, step="run"),
    )


def _record_shielded(lake: Lake, rows: list[dict[str, Any]], run_id: str) -> None:
    """Record after a Ctrl-C: a second Ctrl-C must not lose the record of the first."""
    if threading.current_thread() is not threading.main_thread():
        _record(lake, rows, run_id)
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _record(lake, rows, run_id)
    finally:
        signal.signal(signal.SIGINT, previous)


# A skipped step whose input comes from a step left out of --steps says which one to add.
_UPSTREAM = {"silver": "bronze", "gold": "silver", "ml": "gold"}


def _skip_hint(name: str, steps: Sequence[str], result: StepResult) -> None:
    upstream = _UPSTREAM.get(name)
    if result.status != "skipped" or upstream is None or upstream in steps:
        return
    if name == "silver" and "bronze" not in (result.message or ""):
        return
    hint = (
        f"{upstream} was not part of this run: new input reaches {name} after "
        f"`medallion run --steps {upstream},{name}`"
    )
    if hint not in (result.message or ""):
        result.message = f"{result.message}; {hint}" if result.message else hint


def _interrupted(name: str) -> StepResult:
    return StepResult(
        step=name,
        status="interrupted",
        message="interrupted (Ctrl-C): its commits so far stay; the next run finishes the rest",
    )


def run_pipeline(
    settings: Settings,
    *,
    steps: Sequence[str] = STEP_ORDER,
    full_refresh: bool = False,
    date_from: date | None = None,
    date_to: date | None = None,
    wait_seconds: float | None = None,
    run_id: str | None = None,
    registry: Mapping[str, StepFn] | None = None,
    on_progress: ProgressFn | None = None,
    on_step: StepEventFn | None = None,
    command: str = "medallion run",
) -> RunReport:
    """Run `steps` in order under the lake lock; never raises for a step failure (see report).

    `registry` maps step names to functions (default: the pipeline's); a command that is not
    `medallion run` passes its own one-step registry. Raises LockHeldError when another writer
    holds the lake.
    """
    run_id = run_id or new_run_id()
    report = RunReport(run_id=run_id, engine=settings.engine)
    started_run = time.perf_counter()
    with lake_lock(settings, wait_seconds, run_id=run_id, command=command) as lock:
        if lock.took_over is not None:
            report.lock_note = (
                f"took over the lock left by a crashed run: {lock.took_over.describe()}"
            )
        with Lake(settings, guard=lock.check) as lake:
            written: set[str] = set()
            for name, fn in resolve(list(steps), registry):
                if on_step:
                    on_step(name, None)
                started = datetime.now(UTC)
                t0 = time.perf_counter()
                stopped_by = report.failed_step or report.interrupted_step
                if stopped_by is not None:
                    why = "failed" if report.failed_step else "was interrupted"
                    result = StepResult(
                        step=name, status="skipped", message=f"not run: step {stopped_by} {why}"
                    )
                else:
                    try:
                        result = _run_step(lake, name, fn, report, full_refresh, date_from,
                                           date_to, on_progress, frozenset(written))  # fmt: skip
                    except KeyboardInterrupt:
                        result = _interrupted(name)
                        report.interrupted_step, report.exit_code = name, 130
                        report.error = f"step {name} interrupted (Ctrl-C); run again to finish"
                # What the step freed in Arrow's pool is of no use to the next step's engine.
                native_memory.release_unused()
                _skip_hint(name, list(steps), result)
                written.update(t for t, v in result.tables.items() if v is not None)
                result.seconds = result.seconds or (time.perf_counter() - t0)
                report.steps.append(result)
                row = _run_row(report, result, started, datetime.now(UTC))
                if report.interrupted_step is not None:
                    _record_shielded(lake, [row], run_id)
                else:
                    _record(lake, [row], run_id)
                if result.metrics.get("errors") and report.exit_code == 0:
                    report.exit_code = int(result.metrics.get("exit_code", 1))
                    report.error = report.error or f"{name}: {result.message}"
                if on_step:
                    on_step(name, result)
            if report.interrupted_step is None:
                _check_freshness(lake, report)
    if report.failed_step is not None and report.exit_code == 0:
        report.exit_code = 1
    report.seconds = time.perf_counter() - started_run
    return report


def _run_step(
    lake: Lake,
    name: str,
    fn: StepFn,
    report: RunReport,
    full_refresh: bool,
    date_from: date | None,
    date_to: date | None,
    on_progress: ProgressFn | None,
    tables_written: frozenset[str] = frozenset(),
) -> StepResult:
    """Run one step; a raised error becomes a failed StepResult and marks the run failed."""

    def progress(completed: float, total: float | None, text: str) -> None:
        if on_progress:
            on_progress(name, completed, total, text)

    ctx = StepContext(
        run_id=report.run_id,
        full_refresh=full_refresh,
        date_from=date_from,
        date_to=date_to,
        progress=progress,
        tables_written=tables_written,
    )
    try:
        return fn(lake, ctx)
    except MedallionError as exc:
        report.failed_step, report.error, report.exit_code = name, str(exc), exc.exit_code
        return StepResult(step=name, status="failed", message=str(exc))
    except Exception as exc:  # any bug or IO error: record it, name the step, exit non-zero
        message = f"{type(exc).__name__}: {exc}"
        report.failed_step, report.error, report.exit_code = name, message, 1
        return StepResult(step=name, status="failed", message=message)


def _check_freshness(lake: Lake, report: RunReport) -> None:
    """[freshness]: recorded in _meta/quality; too old for error_after fails the run (exit 3)."""
    from medallion_lakehouse import freshness
    from medallion_lakehouse import quality as qo

    found = freshness.check(lake)
    if not found:
        return
    qo.write(lake, [f.outcome() for f in found], CommitInfo(report.run_id, "freshness"))
    report.freshness = [{"rule": f.rule, "level": f.level, "message": f.message} for f in found]
    errors = [f for f in found if f.level == "error"]
    if errors and report.exit_code == 0:
        report.exit_code = 3
        report.error = (
            "data is stale: " + "; ".join(f.message for f in errors) + ". Check the feeds "
            "(`medallion status`), or raise [freshness] error_after in medallion.toml."
        )
