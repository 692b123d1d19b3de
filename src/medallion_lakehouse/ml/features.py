"""Point-in-time customer features (gold/customer_features) as pure Ibis expressions.

Every feature of a customer at cutoff T is a function of silver sales with `sale_date <= T`
only; the first thing `customer_features` does is drop everything after T, so nothing after the
cutoff can leak in (tests/test_ml_features.py proves it by changing the future).
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from medallion_lakehouse.lazy_imports import ibis
from medallion_lakehouse.ml.contract import CUSTOMER_FEATURES, MONEY

if TYPE_CHECKING:
    import ibis.expr.types as ir

COMPLETED = "completed"
RETURNED = "returned"
CANCELLED = "cancelled"

# Silver columns the features read; anything silver-shaped with these columns will do.
INPUT_COLUMNS: tuple[str, ...] = ("sale_date", "customer_id", "product", "total", "status")

# The numeric columns a model may use (everything but the key and the cutoff).
FEATURE_COLUMNS: tuple[str, ...] = tuple(
    c for c in CUSTOMER_FEATURES.column_names if c not in ("customer_id", "as_of")
)


def history_until(silver: ir.Table, as_of: date) -> ir.Table:
    """Sales on or before the cutoff: the only rows a feature at `as_of` may see."""
    return silver.filter(silver.sale_date <= ibis.date(as_of))


def customer_features(silver: ir.Table, as_of: date) -> ir.Table:
    """One row per customer with a completed purchase by `as_of`, features from sales up to it."""
    cutoff = ibis.date(as_of)
    past = history_until(silver, as_of).select(*INPUT_COLUMNS)
    # Days before the cutoff: 0 = a sale on as_of itself; windows are (as_of - n, as_of].
    sales = past.mutate(
        days_before=cutoff.delta(past.sale_date, unit="day"),
        is_completed=past.status == COMPLETED,
        is_returned=past.status == RETURNED,
        is_cancelled=past.status == CANCELLED,
    )
    done = sales.is_completed
    zero = ibis.literal(0).cast(MONEY)

    # count(where=...) rather than sum(bool): DuckDB sums to HUGEINT, which Arrow sees as decimal.
    def orders(condition: ir.BooleanValue) -> ir.IntegerScalar:
        return sales.sale_date.count(where=condition)

    def spend(condition: ir.BooleanValue) -> ir.DecimalScalar:
        return sales.total.sum(where=condition).cast(MONEY).fill_null(zero)

    in_30 = done & (sales.days_before < 30)
    in_90 = done & (sales.days_before < 90)
    in_prev_90 = done & (sales.days_before >= 90) & (sales.days_before < 180)
    recent = sales.days_before < 90
    agg = sales.group_by("customer_id").aggregate(
        frequency=orders(done),
        monetary=spend(done),
        first_days_before=sales.days_before.max(where=done),
        last_days_before=sales.days_before.min(where=done),
        distinct_products=sales.product.nunique(where=done).cast("int64"),
        n_returned=orders(sales.is_returned),
        n_cancelled=orders(sales.is_cancelled),
        n_orders=sales.count(),
        orders_30d=orders(in_30),
        orders_90d=orders(in_90),
        orders_prev_90d=orders(in_prev_90),
        spend_30d=spend(in_30),
        spend_90d=spend(in_90),
        spend_prev_90d=spend(in_prev_90),
        returns_90d=orders(sales.is_returned & recent),
        cancels_90d=orders(sales.is_cancelled & recent),
    )
    # Active customers only: someone who never completed a purchase cannot churn.
    agg = agg.filter(agg.frequency > 0)
    settled = agg.frequency + agg.n_returned
    return agg.select(
        customer_id=agg.customer_id,
        as_of=cutoff,
        recency_days=agg.last_days_before.cast("int64"),
        frequency=agg.frequency,
        monetary=agg.monetary,
        avg_ticket=(agg.monetary.cast("float64") / agg.frequency).round(2).cast(MONEY),
        tenure_days=agg.first_days_before.cast("int64"),
        distinct_products=agg.distinct_products,
        return_rate=agg.n_returned.cast("float64") / settled.cast("float64"),
        cancel_rate=agg.n_cancelled.cast("float64") / agg.n_orders.cast("float64"),
        orders_30d=agg.orders_30d,
        orders_90d=agg.orders_90d,
        orders_prev_90d=agg.orders_prev_90d,
        spend_30d=agg.spend_30d,
        spend_90d=agg.spend_90d,
        spend_prev_90d=agg.spend_prev_90d,
        order_trend=agg.orders_90d - agg.orders_prev_90d,
        returns_90d=agg.returns_90d,
        cancels_90d=agg.cancels_90d,
        # Declining customers trade down: recent ticket against their lifetime ticket.
        ticket_ratio_90d=ibis.ifelse(
            agg.orders_90d > 0,
            (agg.spend_90d.cast("float64") / agg.orders_90d.cast("float64"))
            / (agg.monetary.cast("float64") / agg.frequency.cast("float64")),
            ibis.null("float64"),
        ),
        mean_gap_days=ibis.ifelse(
            agg.frequency > 1,
            (agg.first_days_before - agg.last_days_before).cast("float64")
            / (agg.frequency - 1).cast("float64"),
            ibis.null("float64"),
        ),
    )


def sale_date_range(silver: ir.Table) -> ir.Table:
    """One row: the oldest and newest sale dates (the data window a model can use)."""
    return silver.aggregate(first_sale=silver.sale_date.min(), last_sale=silver.sale_date.max())
