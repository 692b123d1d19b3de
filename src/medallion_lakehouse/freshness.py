"""Freshness: is the newest sale and the newest ingested file recent enough?

`[freshness] warn_after = "2d"`, `error_after = "7d"` in medallion.toml. Every `medallion run`
checks both measures after its steps and records them in `_meta/quality` (rules
`freshness_sale_date` on silver/sales and `freshness_ingested` on _meta/ingested_files); an
age above `error_after` makes the run exit 3, above `warn_after` the run warns.
`medallion status` shows the same check. Without either setting nothing is checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import pyarrow.compute as pc

from medallion_lakehouse import quality as qo
from medallion_lakehouse.checks import Severity
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.meta import INGESTED_FILES
from medallion_lakehouse.silver.contract import SILVER_SALES

SALE_DATE_RULE = "freshness_sale_date"
INGESTED_RULE = "freshness_ingested"


@dataclass(frozen=True)
class Freshness:
    """One measure: how old the newest thing is, against the configured limits."""

    rule: str
    table: str
    newest: datetime | None
    age_seconds: float | None
    warn_after: float | None
    error_after: float | None

    @property
    def level(self) -> str:
        """ok | warn | error (no data counts as too old: nothing has arrived)."""
        age = float("inf") if self.age_seconds is None else self.age_seconds
        if self.error_after is not None and age > self.error_after:
            return "error"
        if self.warn_after is not None and age > self.warn_after:
            return "warn"
        return "ok"

    @property
    def message(self) -> str:
        what = "newest sale_date" if self.rule == SALE_DATE_RULE else "newest ingested file"
        if self.newest is None:
            return f"{what}: none yet"
        age = timedelta(seconds=int(self.age_seconds or 0))
        limits = ", ".join(
            f"{name} {_span(v)}"
            for name, v in (("warn after", self.warn_after), ("error after", self.error_after))
            if v is not None
        )
        return f"{what} {self.newest:%Y-%m-%d %H:%M} UTC is {age} old ({limits})"

    def outcome(self) -> qo.Outcome:
        severity: Severity = "fail" if self.error_after is not None else "warn"
        if self.level == "warn":
            severity = "warn"
        return qo.Outcome(
            self.table, self.rule, severity, 1, 0 if self.level == "ok" else 1, self.message
        )


def _span(seconds: float) -> str:
    """`2d`, `12h`, `15m` or `90s`: the largest unit that divides it."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def configured(lake: Lake) -> bool:
    f = lake.settings.freshness
    return f.warn_after is not None or f.error_after is not None


def _newest_sale(lake: Lake) -> datetime | None:
    if lake.version(SILVER_SALES.name) is None:
        return None
    silver = lake.read(SILVER_SALES.name)
    newest = lake.engine.scalar(silver.sale_date.max())
    if newest is None:
        return None
    day = newest if isinstance(newest, date) else date.fromisoformat(str(newest)[:10])
    # A sale dated D is as fresh as the end of day D.
    return datetime.combine(day, time.max, tzinfo=UTC)


def _newest_ingest(lake: Lake) -> datetime | None:
    column = lake.read_arrow(INGESTED_FILES.name, columns=["ingested_at"]).column(0)
    newest = pc.max(column).as_py() if len(column) else None
    return newest


def check(lake: Lake, now: datetime | None = None) -> list[Freshness]:
    """Both measures (empty when no freshness setting is given)."""
    if not configured(lake):
        return []
    now = now or datetime.now(UTC)
    f = lake.settings.freshness
    out = []
    for rule, table, newest in (
        (SALE_DATE_RULE, "silver/sales", _newest_sale(lake)),
        (INGESTED_RULE, INGESTED_FILES.name, _newest_ingest(lake)),
    ):
        age = None if newest is None else max(0.0, (now - newest).total_seconds())
        out.append(Freshness(rule, table, newest, age, f.warn_seconds, f.error_seconds))
    return out
