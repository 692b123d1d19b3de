"""What every step receives and returns.

A step is `run(lake: Lake, ctx: StepContext) -> StepResult`: it reads and writes tables through
the lake, returns counts and the versions it wrote, and never prints (the CLI and the run summary
do that from the result).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

from medallion_lakehouse.storage.delta import CommitInfo

# interrupted: Ctrl-C stopped the step; what it committed before stays, the next run finishes.
StepStatus = Literal["ok", "failed", "skipped", "interrupted"]


def new_run_id() -> str:
    """Time-ordered and unique enough for one lake (one writer at a time)."""
    import secrets

    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class StepContext:
    run_id: str
    full_refresh: bool = False
    date_from: date | None = None  # --from: reprocess sale dates from here (inclusive)
    date_to: date | None = None  # --to: ... up to here (inclusive)
    # Called with (completed, total, description) for progress bars; may be ignored.
    progress: Callable[[float, float | None, str], None] | None = None
    # Tables earlier steps of this run committed to: the report keeps a dated copy only when
    # something changed (an unchanged lake needs no second 300 KB page).
    tables_written: frozenset[str] = frozenset()

    def commit(self, step: str, **extra: str) -> CommitInfo:
        return CommitInfo(run_id=self.run_id, step=step, extra=extra or None)

    def report(self, completed: float, total: float | None = None, description: str = "") -> None:
        if self.progress is not None:
            self.progress(completed, total, description)


@dataclass
class StepResult:
    step: str
    status: StepStatus = "ok"
    rows_in: int = 0
    rows_out: int = 0
    rows_quarantined: int = 0
    tables: dict[str, int | None] = field(default_factory=dict)  # table -> version written
    metrics: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    seconds: float = 0.0
