"""Decimal helpers shared by the gold aggregates: exact sums and half-up averages in cents."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from medallion_lakehouse.lazy_imports import ibis

if TYPE_CHECKING:
    import ibis.expr.types as ir

MONEY_TYPE = "decimal(14, 2)"
_CENT = Decimal("0.01")


def money_sum(values: ir.DecimalColumn, where: ir.BooleanValue | None = None) -> ir.DecimalScalar:
    """Exact sum as decimal(14,2); 0.00 (not null) when no row qualifies."""
    total = values.sum(where=where).cast(MONEY_TYPE)
    return total.fill_null(ibis.literal(Decimal("0.00"), MONEY_TYPE))


def average_cents(amount: ir.DecimalValue, count: ir.IntegerValue) -> ir.DecimalValue:
    """amount / count rounded half-up to the cent, computed on integer cents; null if count is 0.

    Decimal division is a double on DuckDB and a wide decimal on Spark, so dividing integer cents
    keeps both engines identical: floor((2*cents + n) / (2*n)) is half-up rounding for cents >= 0.
    """
    cents = (amount * 100).cast("int64")
    rounded = (cents * 2 + count) // (count * 2)
    value = (rounded.cast("decimal(18, 2)") * ibis.literal(_CENT, "decimal(18, 2)")).cast(
        MONEY_TYPE
    )
    return ibis.ifelse(count > 0, value, ibis.null(MONEY_TYPE))
