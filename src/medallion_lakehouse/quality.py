"""Evaluating quality declarations and recording the outcomes in `_meta/quality` (one place).

Every step that checks data hands its outcomes to `write`: silver's row rules (counted on the
batch), the contract checks of the tables each step writes. One row per (run, table, rule).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pyarrow as pa

from medallion_lakehouse.checks import CheckInputs, Severity
from medallion_lakehouse.contracts import TableContract
from medallion_lakehouse.engines.base import Engine
from medallion_lakehouse.errors import QualityGateError
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.meta import QUALITY
from medallion_lakehouse.storage.delta import CommitInfo

if TYPE_CHECKING:
    import ibis.expr.types as ir


@dataclass(frozen=True)
class Outcome:
    table: str
    rule: str
    severity: Severity
    rows_checked: int
    rows_failed: int
    description: str
    threshold: float | None = None  # fail_share of a rule that gates batches (None: none)

    @property
    def passed(self) -> bool:
        return self.rows_failed == 0

    @property
    def stops(self) -> bool:
        """A broken `fail` check: the step must not commit (or must not go on)."""
        return not self.passed and self.severity == "fail"


def evaluate(
    engine: Engine,
    contract: TableContract,
    data: ir.Table,
    upstream: Mapping[str, ir.Table] | None = None,
) -> list[Outcome]:
    """Evaluate every check the contract declares on `data` (rows_checked: its row count)."""
    inputs = CheckInputs(contract, upstream or {})
    rows = engine.count(data)
    outcomes = []
    for check in contract.checks:
        rule, description = check.named(contract)
        failed = int(engine.scalar(check.failing(data, inputs)) or 0)
        outcomes.append(Outcome(contract.name, rule, check.severity, rows, failed, description))
    return outcomes


def raise_if_broken(outcomes: Sequence[Outcome], table: str, *, committed: bool = False) -> None:
    """QualityGateError naming every broken `fail` check of `table`."""
    broken = [o for o in outcomes if o.table == table and o.stops]
    if not broken:
        return
    rules = ", ".join(f"{o.rule} ({o.rows_failed:,} rows)" for o in broken)
    done = (
        f"{table} was committed before the check (see `medallion history {table}`)"
        if committed
        else f"nothing was committed to {table}"
    )
    raise QualityGateError(
        f"{table}: quality rule(s) failed: {rules}; {done}. See `medallion quality`, fix the "
        "upstream data, then rerun."
    )


def rows(outcomes: Sequence[Outcome], run_id: str, now: datetime | None = None) -> pa.Table:
    """Outcomes as `_meta/quality` rows."""
    checked_at = now or datetime.now(UTC)
    return pa.Table.from_pylist(
        [
            {
                "run_id": run_id,
                "table": o.table,
                "rule": o.rule,
                "severity": o.severity,
                "rows_checked": o.rows_checked,
                "rows_failed": o.rows_failed,
                "checked_at": checked_at,
                "description": o.description,
                "threshold": o.threshold,
            }
            for o in outcomes
        ],
        schema=QUALITY.schema,
    )


def write(
    lake: Lake, outcomes: Sequence[Outcome], commit: CommitInfo, now: datetime | None = None
) -> int | None:
    """Append the outcomes to `_meta/quality` in one commit; the version (None if nothing)."""
    if not outcomes:
        return None
    return lake.write_arrow(QUALITY.name, rows(outcomes, commit.run_id, now), commit=commit).version
