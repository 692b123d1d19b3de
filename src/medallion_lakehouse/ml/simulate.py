"""A small, transparent churn world in silver shape, for tests and docs.

Independent of `medallion generate` on purpose: its signal is known by construction, so a test
can prove the model code finds what is there (and nothing that is not). Each customer buys as a
Poisson process from joining until churning; in the `warning_days` before churning they buy
somewhat less often, spend about half as much per order and return far more. Recency alone
therefore sees only part of the decline; tickets and returns see the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pyarrow as pa

PRODUCTS = ("Laptop", "Smartphone", "Tablet", "Monitor", "Headphones")


@dataclass(frozen=True)
class SimulationOptions:
    customers: int = 1500
    days: int = 365
    start: date = date(2025, 1, 1)
    mean_gap_days: float = 12.0  # median days between purchases of a healthy customer
    lifetime_days: float = 250.0  # mean time from joining to the start of the decline
    warning_days: int = 90
    warning_rate: float = 0.9  # purchase rate multiplier while declining
    warning_ticket: float = 0.5  # ticket multiplier while declining
    return_rate: float = 0.04
    warning_return_rate: float = 0.35
    seed: int = 0


def _segment_sales(
    rng: np.random.Generator, rate: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson purchases of each customer on days [lo, hi): (customer index, day) arrays."""
    length = np.clip(hi - lo, 0, None)
    counts = rng.poisson(rate * length)
    customer = np.repeat(np.arange(len(rate)), counts)
    day = lo[customer] + np.floor(rng.random(len(customer)) * length[customer]).astype(np.int64)
    return customer, day


def simulate_silver(opts: SimulationOptions | None = None) -> pa.Table:
    """Silver-shaped sales (sale_id, sale_date, customer_id, product, quantity, unit_price,
    total, status) from the world described in the module docstring."""
    o = opts or SimulationOptions()
    rng = np.random.default_rng(o.seed)
    n = o.customers
    rate = rng.lognormal(np.log(1.0 / o.mean_gap_days), 0.6, n)
    joined_late = rng.random(n) < 0.5
    join = np.where(joined_late, rng.integers(0, max(o.days - 60, 1), n), 0).astype(np.int64)
    decline = join + 30 + rng.exponential(o.lifetime_days, n).astype(np.int64)
    churn = decline + o.warning_days
    ticket = rng.lognormal(np.log(200.0), 0.5, n)

    healthy_c, healthy_d = _segment_sales(
        rng, rate, join, np.minimum(decline, o.days).astype(np.int64)
    )
    warn_c, warn_d = _segment_sales(
        rng,
        rate * o.warning_rate,
        np.minimum(decline, o.days).astype(np.int64),
        np.minimum(churn, o.days).astype(np.int64),
    )
    customer = np.concatenate([healthy_c, warn_c])
    day = np.concatenate([healthy_d, warn_d])
    warning = np.concatenate([np.zeros(len(healthy_c), bool), np.ones(len(warn_c), bool)])
    m = len(customer)

    amount = ticket[customer] * rng.lognormal(0.0, 0.2, m)
    amount = np.round(np.where(warning, amount * o.warning_ticket, amount), 2).clip(0.01)
    u = rng.random(m)
    p_return = np.where(warning, o.warning_return_rate, o.return_rate)
    status = np.full(m, "completed", dtype=object)
    status[u < p_return + 0.05] = "pending"
    status[u < p_return + 0.03] = "cancelled"
    status[u < p_return] = "returned"

    order = np.lexsort((customer, day))
    customer, day, amount, status = customer[order], day[order], amount[order], status[order]
    ids = np.array([f"C{i:06d}" for i in range(n)], dtype=object)
    dates = np.array([o.start + timedelta(days=int(d)) for d in range(o.days)], dtype=object)
    totals = pa.array([f"{a:.2f}" for a in amount]).cast(pa.decimal128(12, 2))
    return pa.table(
        {
            "sale_id": pa.array([f"SIM-{i:08d}" for i in range(m)], pa.string()),
            "sale_date": pa.array(dates[day], pa.date32()),
            "customer_id": pa.array(ids[customer], pa.string()),
            "product": pa.array(np.array(PRODUCTS, dtype=object)[rng.integers(0, 5, m)]),
            "quantity": pa.array(np.ones(m, dtype=np.int32)),
            "unit_price": totals.cast(pa.decimal128(10, 2)),
            "total": totals,
            "status": pa.array(status, pa.string()),
        }
    )
