"""A small data-quality check runner: each check counts the rows that break it, as an Ibis scalar.

Checks are pure (Table -> scalar expression), so they run on either engine; `run_checks`
evaluates them and `quality_rows` turns the outcomes into `_meta/quality` rows (one per rule, as
silver's rules do), which `write_quality` appends in one commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from medallion_lakehouse.engines.base import Engine
from medallion_lakehouse.gold.money import money_sum
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.meta import QUALITY
from medallion_lakehouse.storage.delta import CommitInfo

Severity = Literal["warn", "fail"]


@dataclass(frozen=True)
class Check:
    """A rule over one table: `failing(table)` counts the rows (or groups) that break it."""

    rule: str
    description: str
    failing: Callable[[ir.Table], ir.IntegerScalar]
    severity: Severity = "fail"


@dataclass(frozen=True)
class CheckOutcome:
    table: str
    rule: str
    severity: Severity
    rows_checked: int
    rows_failed: int
    description: str

    @property
    def passed(self) -> bool:
        return self.rows_failed == 0


def unique_key(key: Sequence[str]) -> Check:
    """No two rows share the key: counts rows whose key value occurs more than once."""
    cols = list(key)

    def failing(t: ir.Table) -> ir.IntegerScalar:
        groups = t.group_by(cols).aggregate(n=t.count())
        return groups.filter(groups.n > 1).n.sum().fill_null(0)

    return Check(f"unique_key({', '.join(cols)})", f"({', '.join(cols)}) is unique", failing)


def not_null(columns: Sequence[str]) -> Check:
    """None of `columns` is null."""
    cols = list(columns)

    def failing(t: ir.Table) -> ir.IntegerScalar:
        return t.count(where=ibis.or_(*(t[c].isnull() for c in cols)))

    return Check("not_null", f"{', '.join(cols)} are never null", failing)


def non_negative(columns: Sequence[str]) -> Check:
    """No amount or count is negative (null is not checked here)."""
    cols = list(columns)

    def failing(t: ir.Table) -> ir.IntegerScalar:
        return t.count(where=ibis.or_(*(t[c] < 0 for c in cols)))

    return Check("non_negative", f"{', '.join(cols)} are >= 0", failing)


def revenue_reconciles(silver: ir.Table, revenue_column: str = "revenue") -> Check:
    """Gold revenue per sale_date equals the sum of completed silver totals that day, to the cent.

    `silver` must cover the same months as the gold rows checked; the count is of days that
    disagree (a day present on one side only counts when its amount is not zero).
    """

    def failing(t: ir.Table) -> ir.IntegerScalar:
        done = silver.filter(silver.status == "completed")
        expected = done.group_by("sale_date").aggregate(expected=money_sum(done.total))
        actual = t.group_by("sale_date").aggregate(actual=money_sum(t[revenue_column]))
        joined = expected.outer_join(actual, expected.sale_date == actual.sale_date)
        zero = ibis.literal(0, "decimal(14, 2)")
        bad = joined.expected.fill_null(zero) != joined.actual.fill_null(zero)
        return joined.count(where=bad)

    return Check(
        "revenue_reconciles_with_silver",
        f"sum({revenue_column}) per sale_date == sum(silver total) of completed sales that day",
        failing,
    )


def run_checks(
    engine: Engine, table_name: str, data: ir.Table, checks: Sequence[Check]
) -> list[CheckOutcome]:
    """Evaluate every check on `data` (rows_checked is the table's row count)."""
    rows = engine.count(data)
    return [
        CheckOutcome(
            table=table_name,
            rule=check.rule,
            severity=check.severity,
            rows_checked=rows,
            rows_failed=int(engine.scalar(check.failing(data)) or 0),
            description=check.description,
        )
        for check in checks
    ]


def quality_rows(outcomes: Sequence[CheckOutcome], run_id: str) -> pa.Table:
    """Outcomes as `_meta/quality` rows."""
    now = datetime.now(UTC)
    return pa.Table.from_pylist(
        [
            {
                "run_id": run_id,
                "table": o.table,
                "rule": o.rule,
                "severity": o.severity,
                "rows_checked": o.rows_checked,
                "rows_failed": o.rows_failed,
                "checked_at": now,
                "description": o.description,
            }
            for o in outcomes
        ],
        schema=QUALITY.schema,
    )


def write_quality(lake: Lake, outcomes: Sequence[CheckOutcome], commit: CommitInfo) -> int | None:
    """Append the outcomes to `_meta/quality` in one commit; returns the version (None if none)."""
    if not outcomes:
        return None
    return lake.write_arrow(
        QUALITY.name, quality_rows(outcomes, commit.run_id), commit=commit
    ).version
