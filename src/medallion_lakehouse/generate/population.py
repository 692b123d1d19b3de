"""The world the sales come from: a product catalogue, stores, a calendar and a customer pool.

Everything here is small (one entry per product, store, day or customer) and drawn once per run
from the seed; sales are then drawn by indexing into these arrays, which is what makes
generation vectorised. The customer pool carries the hidden churn process (see `Customers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pyarrow as pa

from medallion_lakehouse.generate.options import GenerateOptions

# -- products ----------------------------------------------------------------------------
PRODUCTS: tuple[str, ...] = ("Laptop", "Smartphone", "Tablet", "Monitor", "Headphones")
# Plausible shelf-price ranges per product (unit price, currency units).
PRICE_LOW = np.array([399.0, 199.0, 129.0, 99.0, 19.0])
PRICE_HIGH = np.array([2499.0, 1399.0, 1099.0, 899.0, 449.0])
# Share of purchases per product when a customer is not buying their favourite.
PRODUCT_MIX = np.array([0.15, 0.22, 0.15, 0.18, 0.30])

# -- calendar ----------------------------------------------------------------------------
# Month multipliers: January lull, summer dip, the run-up to Christmas.
MONTH_FACTOR = np.array([0.85, 0.85, 0.95, 1.0, 1.0, 0.95, 0.92, 1.0, 1.0, 1.05, 1.25, 1.45])
# Monday..Sunday: shoppers buy more on Fridays and weekends.
WEEKDAY_FACTOR = np.array([0.88, 0.9, 0.95, 1.0, 1.1, 1.25, 1.12])
BLACK_FRIDAY_FACTOR = 1.7  # Black Friday to Cyber Monday


@dataclass(frozen=True)
class Calendar:
    """One entry per day of the run: its date string and its relative shopping intensity."""

    start: date
    days: int
    intensity: np.ndarray  # float64[days], relative purchase intensity (max 1)
    cum: np.ndarray  # float64[days + 1], cumulative intensity (for window masses)
    cum_t: np.ndarray  # float64[days + 1], cumulative day * intensity (for decay ramps)
    date_strings: tuple[str, ...]


def _black_friday(year: int) -> date:
    nov1 = date(year, 11, 1)
    first_friday = nov1 + timedelta(days=(4 - nov1.weekday()) % 7)
    return first_friday + timedelta(weeks=3)


def build_calendar(start: date, days: int) -> Calendar:
    """Seasonality and weekly pattern for each day from `start`."""
    dates = [start + timedelta(days=i) for i in range(days)]
    month = np.array([d.month - 1 for d in dates])
    weekday = np.array([d.weekday() for d in dates])
    intensity = MONTH_FACTOR[month] * WEEKDAY_FACTOR[weekday]
    promo = {
        _black_friday(y) + timedelta(days=k)
        for y in range(start.year, dates[-1].year + 1)
        for k in range(4)
    }
    intensity = intensity * np.array([BLACK_FRIDAY_FACTOR if d in promo else 1.0 for d in dates])
    intensity = intensity / intensity.max()
    t = np.arange(days, dtype=np.float64)
    cum = np.concatenate([[0.0], np.cumsum(intensity)])
    cum_t = np.concatenate([[0.0], np.cumsum(t * intensity)])
    return Calendar(start, days, intensity, cum, cum_t, tuple(d.isoformat() for d in dates))


# -- stores ------------------------------------------------------------------------------
# Shapes a store id arrives in, with their shares. The first four are the original data's
# (NW-58, NW-166, NW-09, NW017, 078-NW); the last two are rarer legacy feeds.
STORE_SHAPES: tuple[str, ...] = (
    "NW-{n:02d}",
    "NW{n:03d}",
    "{n:03d}-NW",
    "NW-{n:03d}",
    "nw {n}",
    "{n}",
)
STORE_SHAPE_P = np.array([0.31, 0.31, 0.31, 0.04, 0.015, 0.015])


@dataclass(frozen=True)
class Stores:
    """Store popularity and the string of every (store, shape) pair."""

    count: int
    weights: np.ndarray  # float64[count], sums to 1
    id_strings: tuple[str, ...]  # index: store * len(STORE_SHAPES) + shape


def build_stores(rng: np.random.Generator, count: int) -> Stores:
    """Stores 1..count with lognormal popularity (a few big stores, many small)."""
    weights = rng.lognormal(0.0, 0.5, count)
    weights = weights / weights.sum()
    ids = tuple(shape.format(n=n) for n in range(1, count + 1) for shape in STORE_SHAPES)
    return Stores(count, weights, ids)


# -- customers ---------------------------------------------------------------------------
CHURN_NEVER = np.iinfo(np.int32).max // 2
BREAK_SHARE = 0.4  # share of customers who pause for a while and come back


@dataclass(frozen=True)
class Customers:
    """The customer pool and its hidden behaviour.

    Each customer buys at a base rate from `join_day` until `churn_day`. During the `decay_days`
    before churning their rate ramps down linearly to zero, and (see `sales.py`) they buy
    cheaper items, fewer units and return more. Some healthy customers also take a break
    (`break_start`..`break_end`: holidays, a move) and come back. So a long silence alone is
    ambiguous: falling frequency, falling spend and returns before it tell churners from
    customers on a break. Churn is learnable beyond recency, with noise from heterogeneous
    rates, decay lengths and breaks.
    """

    ids: pa.StringArray  # UUID-like strings
    rate: np.ndarray  # float64, relative purchase rate
    join_day: np.ndarray  # int64, first day they can buy (day index, 0 = start)
    churn_day: np.ndarray  # int64, day their rate reaches zero (may be after the end)
    decay_days: np.ndarray  # int64, length of the decline before churn_day
    home_store: np.ndarray  # int64 store index
    favourite: np.ndarray  # int64 product index
    spend: np.ndarray  # float64 in (0, 1): where in the price range they usually buy
    break_start: np.ndarray  # int64 day a pause starts (== break_end: no pause)
    break_end: np.ndarray  # int64 day it ends; always before the decline

    @property
    def count(self) -> int:
        return len(self.rate)

    def window_mass(self, cal: Calendar, lo: int, hi: int) -> np.ndarray:
        """Expected purchases (up to a constant) of every customer on days [lo, hi)."""
        a = np.clip(self.join_day, lo, hi)
        e = np.clip(self.churn_day, lo, hi)
        ramp_start = np.clip(self.churn_day - self.decay_days, lo, hi)
        flat_end = np.maximum(np.minimum(ramp_start, e), a)
        flat = cal.cum[flat_end] - cal.cum[a]
        b0 = np.clip(self.break_start, a, flat_end)
        b1 = np.clip(self.break_end, b0, flat_end)
        flat -= cal.cum[b1] - cal.cum[b0]
        r0 = np.maximum(ramp_start, a)
        r1 = np.maximum(e, r0)
        # sum over t in [r0, r1) of (churn_day - t) / decay_days * intensity[t]
        ramp = (self.churn_day * (cal.cum[r1] - cal.cum[r0]) - (cal.cum_t[r1] - cal.cum_t[r0])) / (
            self.decay_days
        )
        return self.rate * (flat + np.maximum(ramp, 0.0))

    def health(self, customer: np.ndarray, day: np.ndarray) -> np.ndarray:
        """1.0 for a healthy customer, falling to 0.0 as they approach their churn day."""
        remaining = self.churn_day[customer] - day
        return np.clip(remaining / self.decay_days[customer], 0.0, 1.0)

    def activity(self, customer: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Relative purchase rate on `day`: health, and zero during a break."""
        paused = (day >= self.break_start[customer]) & (day < self.break_end[customer])
        return np.where(paused, 0.0, self.health(customer, day))


def uuid_strings(rng: np.random.Generator, count: int) -> pa.StringArray:
    """Random version-4 UUID strings, vectorised (bytes -> hex digits -> 36-char layout)."""
    raw = rng.integers(0, 256, size=(count, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    hexdigits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    nibbles = np.empty((count, 32), dtype=np.uint8)
    nibbles[:, 0::2] = hexdigits[raw >> 4]
    nibbles[:, 1::2] = hexdigits[raw & 0x0F]
    out = np.full((count, 36), ord("-"), dtype=np.uint8)
    for src, dst, width in ((0, 0, 8), (8, 9, 4), (12, 14, 4), (16, 19, 4), (20, 24, 12)):
        out[:, dst : dst + width] = nibbles[:, src : src + width]
    offsets = np.arange(0, 36 * count + 1, 36, dtype=np.int32)
    return pa.StringArray.from_buffers(
        count, pa.py_buffer(offsets.tobytes()), pa.py_buffer(out.tobytes())
    )


def build_customers(rng: np.random.Generator, count: int, stores: Stores, days: int) -> Customers:
    """Draw the customer pool: who joins when, how often they buy, when they churn."""
    ids = uuid_strings(rng, count)
    rate = rng.lognormal(0.0, 1.0, count)
    # 55 % are customers already at the start; the rest join during the period.
    existing = rng.random(count) < 0.55
    join_day = np.where(existing, 0, rng.integers(0, max(days - 14, 1), count)).astype(np.int64)
    # Lifetimes: a loyal minority rarely churns; the rest churn on a scale of months.
    loyal = rng.random(count) < 0.3
    life = rng.exponential(np.where(loyal, 2000.0, 300.0))
    decay_days = rng.integers(60, 240, count).astype(np.int64)
    # At least a month of healthy buying, then a decline of `decay_days`.
    churn_day = join_day + 30 + decay_days + life.astype(np.int64)
    churn_day = np.minimum(churn_day, CHURN_NEVER)
    home_store = rng.choice(stores.count, size=count, p=stores.weights).astype(np.int64)
    favourite = rng.choice(len(PRODUCTS), size=count, p=PRODUCT_MIX).astype(np.int64)
    spend = rng.beta(2.0, 3.0, count)
    # A pause of one to five months for some, placed in the healthy part of their life.
    pause = rng.integers(30, 150, count).astype(np.int64)
    room = churn_day - decay_days - pause - join_day
    takes_break = (rng.random(count) < BREAK_SHARE) & (room > 0)
    break_start = join_day + (rng.random(count) * np.maximum(room, 0)).astype(np.int64)
    break_end = np.where(takes_break, break_start + pause, break_start)
    return Customers(
        ids,
        rate,
        join_day,
        churn_day,
        decay_days,
        home_store,
        favourite,
        spend,
        break_start,
        break_end,
    )


@dataclass(frozen=True)
class Population:
    """Everything sales are drawn from, built once per run."""

    calendar: Calendar
    stores: Stores
    customers: Customers


def build_population(opts: GenerateOptions) -> Population:
    """Build the world for resolved options; the same seed gives the same world."""
    assert opts.start is not None and opts.customers is not None, "resolve() the options first"
    rng = np.random.default_rng([opts.seed, 0])
    cal = build_calendar(opts.start, opts.days)
    stores = build_stores(rng, opts.stores)
    customers = build_customers(rng, opts.customers, stores, opts.days)
    return Population(cal, stores, customers)
