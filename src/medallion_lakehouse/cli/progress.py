"""Progress of a run: live bars on a terminal, one line per event in logs and pipes.

A step's row appears when it starts (a run refused because the lake is busy draws nothing),
and ends in its real state: a failed, skipped or interrupted step is never a full green bar.
"""

from __future__ import annotations

import json
import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress_bar import ProgressBar
from rich.table import Column
from rich.text import Text

from medallion_lakehouse.cli.app import OUTPUT, plain
from medallion_lakehouse.pipeline.context import StepResult

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.progress import (
        Task,
        TaskID,
    )

STATE_STYLE = {"ok": "green", "failed": "bold red", "skipped": "yellow", "interrupted": "red"}
_MARK = {"ok": "✓", "failed": "✗", "skipped": "-", "interrupted": "!"}


class _StateColumn(ProgressColumn):
    """A spinner while the step runs, then a mark in the colour of how it ended."""

    def __init__(self) -> None:
        super().__init__(table_column=Column(no_wrap=True, width=1))
        self._spinner = SpinnerColumn()

    def render(self, task: Task) -> RenderableType:
        state = task.fields.get("state", "running")
        if state == "running":
            return self._spinner.render(task)
        return Text(_MARK.get(state, "?"), style=STATE_STYLE.get(state, ""))


class _StateBar(BarColumn):
    """The bar, drawn in the step's end colour when it did not end ok."""

    def render(self, task: Task) -> ProgressBar:
        state = task.fields.get("state", "running")
        if state in ("running", "ok"):
            return super().render(task)
        colour = STATE_STYLE[state]
        return ProgressBar(
            total=1,
            completed=1 if state == "failed" else 0,
            width=self.bar_width,
            pulse=False,
            style=colour,
            complete_style=colour,
            finished_style=colour,
        )


def _outcome_text(result: StepResult) -> str:
    details = [f"{result.rows_out:,} rows out"] if result.rows_in or result.rows_out else []
    details += [result.message] if result.message else []
    return result.status + (": " + "; ".join(details) if details else "")


class RunProgress:
    """Receives `run_pipeline`'s callbacks (on_step, on_progress) and shows them."""

    def __init__(self, console: Console, *, enabled: bool = True) -> None:
        self._console = console
        self._enabled = enabled and not OUTPUT.quiet
        # Lines when that console is no terminal (a log, a pipe) or when asked for.
        self._lines = OUTPUT.force_plain or OUTPUT.log_json or not console.is_terminal
        self._tasks: dict[str, TaskID] = {}
        self._last_text: dict[str, str] = {}
        self._started: dict[str, float] = {}
        self._progress: Progress | None = None
        if self._enabled and not self._lines:
            self._progress = Progress(
                _StateColumn(),
                # Steps are at most 6 letters: the name never gives way to the description.
                TextColumn("[bold]{task.fields[step]}", table_column=Column(no_wrap=True, width=6)),
                _StateBar(bar_width=16),
                TextColumn(
                    "{task.description}",
                    table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis"),
                ),
                TimeElapsedColumn(),
                console=console,
                transient=False,
                expand=True,
            )

    def __enter__(self) -> RunProgress:
        if self._progress is not None:
            self._progress.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)

    # -- line mode -----------------------------------------------------------------------
    def _line(self, step: str, event: str, text: str, **fields: Any) -> None:
        if OUTPUT.log_json:
            record = {"event": event, "step": step, "message": text, **fields}
            sys.stderr.write(json.dumps(record, default=str) + "\n")
            sys.stderr.flush()
        else:
            self._console.print(plain(f"{step}: {text}"), soft_wrap=True)

    # -- callbacks -----------------------------------------------------------------------
    def on_step(self, name: str, result: StepResult | None) -> None:
        if not self._enabled:
            return
        if result is None:
            self._started[name] = time.perf_counter()
            if self._progress is None:
                self._line(name, "step_started", "running")
            else:
                self._tasks[name] = self._progress.add_task(
                    "running", total=None, step=name, state="running"
                )
            return
        text = _outcome_text(result)
        if self._progress is None:
            self._line(
                name,
                "step_finished",
                f"{text} ({result.seconds:.1f} s)",
                status=result.status,
                seconds=round(result.seconds, 3),
                rows_out=result.rows_out,
            )
            return
        task = self._tasks[name]
        done = result.status == "ok"
        self._progress.update(
            task,
            total=1,
            completed=1 if done else 0,
            # Messages come from data (file names, reasons): escaped, never read as markup.
            description=escape(text)
            if done
            else f"[{STATE_STYLE[result.status]}]{escape(text)}[/]",
            state=result.status,
        )
        self._progress.stop_task(task)

    def on_progress(self, name: str, done: float, total: float | None, text: str) -> None:
        if not self._enabled:
            return
        if self._progress is None:
            # Logs get a line when the phase changes, and only with --verbose.
            if OUTPUT.verbose and text and self._last_text.get(name) != text:
                self._last_text[name] = text
                self._line(name, "step_progress", text)
            return
        if name in self._tasks:
            self._progress.update(
                self._tasks[name], completed=done, total=total, description=escape(text)
            )
