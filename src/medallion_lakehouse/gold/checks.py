"""Gold's own check: revenue reconciles with silver (the generic kinds are in `checks.py`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medallion_lakehouse.checks import (
    Check,
    CheckInputs,
    non_negative,
    not_null,
    unique_key,
)
from medallion_lakehouse.gold.money import money_sum
from medallion_lakehouse.lazy_imports import ibis

if TYPE_CHECKING:
    import ibis.expr.types as ir

SILVER = "silver/sales"


def revenue_reconciles(revenue_column: str = "revenue") -> Check:
    """Gold revenue per sale_date equals the sum of completed silver totals that day, to the cent.

    The upstream silver/sales handed to the check must cover the same months as the gold rows
    checked; the count is of days that disagree (a day present on one side only counts when its
    amount is not zero).
    """

    def failing(t: ir.Table, inputs: CheckInputs) -> ir.IntegerScalar:
        silver = inputs.upstream[SILVER]
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


def standard_checks() -> tuple[Check, ...]:
    """What every gold aggregate of silver promises: a unique, non-null key and required columns,
    no negative amount or count, and revenue that reconciles with silver to the cent."""
    return (unique_key(), not_null(), non_negative(), revenue_reconciles())
