"""The churn label: no completed purchase in (T, T + horizon] — decided only by the future.

Features come from sales up to T (`features.customer_features`); the label from sales after T.
Neither sees the other's side of the cutoff, so "days since last purchase" can be a feature
without being the label (the original's ROC AUC 1.0 came from exactly that overlap).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

from medallion_lakehouse.lazy_imports import ibis
from medallion_lakehouse.ml.features import COMPLETED, customer_features

if TYPE_CHECKING:
    import ibis.expr.types as ir


def returning_customers(silver: ir.Table, as_of: date, horizon_days: int) -> ir.Table:
    """Distinct customers with a completed purchase in (as_of, as_of + horizon_days]."""
    end = as_of + timedelta(days=horizon_days)
    window = silver.filter(
        (silver.sale_date > ibis.date(as_of))
        & (silver.sale_date <= ibis.date(end))
        & (silver.status == COMPLETED)
    )
    return window.select("customer_id").distinct()


def labelled_snapshot(silver: ir.Table, as_of: date, horizon_days: int) -> ir.Table:
    """Features at `as_of` plus `churned` (1 = no completed purchase in the horizon, else 0)."""
    features = customer_features(silver, as_of)
    back = returning_customers(silver, as_of, horizon_days).mutate(came_back=ibis.literal(1))
    joined = features.left_join(back, "customer_id")
    return joined.select(
        *[joined[c] for c in features.columns],
        churned=ibis.ifelse(joined.came_back.isnull(), 1, 0).cast("int64"),
    )
