"""gold/product_store_daily: completed sales per (sale_date, product, store_id) (pure Ibis)."""

from __future__ import annotations

import ibis.expr.types as ir

from medallion_lakehouse.gold.money import money_sum


def build_product_store_daily(silver: ir.Table) -> ir.Table:
    """Revenue, units and orders of completed sales per day, product and store."""
    completed = silver.filter(silver.status == "completed")
    return (
        completed.group_by(["sale_date", "product", "store_id", "sale_month"])
        .aggregate(
            revenue=money_sum(completed.total),
            units=completed.quantity.cast("int64").sum(),
            orders=completed.count(),
        )
        .select("sale_date", "product", "store_id", "revenue", "units", "orders", "sale_month")
    )
