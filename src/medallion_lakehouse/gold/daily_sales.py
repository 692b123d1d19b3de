"""gold/daily_sales: one row per sale_date from current silver sales (pure Ibis, any engine)."""

from __future__ import annotations

import ibis.expr.types as ir

from medallion_lakehouse.gold.money import average_cents, money_sum


def build_daily_sales(silver: ir.Table) -> ir.Table:
    """Daily KPIs; revenue, units, orders and customers count completed sales only."""
    completed = silver.status == "completed"
    per_day = silver.group_by(["sale_date", "sale_month"]).aggregate(
        orders=silver.count(),
        completed_orders=silver.count(where=completed),
        units=silver.quantity.cast("int64").sum(where=completed).fill_null(0),
        revenue=money_sum(silver.total, completed),
        pending_amount=money_sum(silver.total, silver.status == "pending"),
        cancelled_amount=money_sum(silver.total, silver.status == "cancelled"),
        returned_amount=money_sum(silver.total, silver.status == "returned"),
        unknown_amount=money_sum(silver.total, silver.status == "unknown"),
        distinct_customers=silver.customer_id.nunique(where=completed),
    )
    return per_day.mutate(
        average_ticket=average_cents(per_day.revenue, per_day.completed_orders)
    ).select(
        "sale_date",
        "orders",
        "completed_orders",
        "units",
        "revenue",
        "pending_amount",
        "cancelled_amount",
        "returned_amount",
        "unknown_amount",
        "average_ticket",
        "distinct_customers",
        "sale_month",
    )
