"""The gold step: rebuild only the sale_month partitions of gold that silver changed.

How gold learns what changed, robustly: `_meta/gold_watermark` holds, per gold table and silver
month, a fingerprint of silver/sales (rows, completed rows, quantity and total sums, newest
`_ingested_at` and `_batch_seq`) as of the table's last successful build, plus the silver version
it read.

1. Silver's version equals the one every gold table last consumed -> nothing to do, no commit.
2. Otherwise fingerprint silver per month (aggregating only the months whose files changed
   since the oldest version a table consumed; see `_current_fingerprints`) and rebuild, per
   table, the months whose fingerprint differs, appeared or vanished, plus the months covering
   `--from/--to`.
3. Each table (a module of `gold/tables/`: contract + builder) is built for those months, its
   contract's checks run (unique key, not null, non-negative, revenue reconciles with silver),
   then it is written per its contract's write mode (the months replaced in one commit);
   `--full-refresh` overwrites it.
4. The watermark is written last. A crash before it only makes the next run rebuild the same
   months from the same silver snapshot, which gives the same rows (idempotent, crash-safe).

Silver also logs the months each of its commits replaced in `_meta/silver_changes`; months logged
for a silver version newer than the one a table last consumed are rebuilt too (a union, so a
missing or late log entry cannot hide a change the fingerprints see, and vice versa).

Any new silver row carries a higher `_batch_seq` than everything before it (the lake's own
batch order, whatever the clocks say), so inserts and status updates always change their month's
fingerprint; a silver rewrite that changes gold-relevant
values without touching any fingerprint component (e.g. new silver code) needs `--full-refresh`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from medallion_lakehouse import quality as quality
from medallion_lakehouse.errors import TableNotFoundError
from medallion_lakehouse.faults import checkpoint
from medallion_lakehouse.gold.contract import GOLD_WATERMARK
from medallion_lakehouse.gold.tables import GOLD_TABLES
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.pipeline.context import StepContext, StepResult

if TYPE_CHECKING:
    import ibis.expr.types as ir

SILVER = "silver/sales"
SILVER_CHANGES = "_meta/silver_changes"  # silver's change log (optional)
STEP = "gold"

FINGERPRINT_COLUMNS = (
    "rows",
    "completed_rows",
    "quantity_sum",
    "total_sum",
    "completed_total_sum",
    "max_ingested_at",
    "max_batch_seq",
)
Fingerprint = tuple[Any, ...]


# -- pure parts --------------------------------------------------------------------------
def month_fingerprints(silver: ir.Table) -> ir.Table:
    """One row per sale_month with the aggregates that change whenever the month's rows change."""
    completed = silver.status == "completed"
    return silver.group_by("sale_month").aggregate(
        rows=silver.count(),
        completed_rows=silver.count(where=completed),
        quantity_sum=silver.quantity.cast("int64").sum(),
        total_sum=silver.total.sum().cast("decimal(22, 2)"),
        completed_total_sum=silver.total.sum(where=completed).cast("decimal(22, 2)"),
        max_ingested_at=silver._ingested_at.max(),
        max_batch_seq=silver._batch_seq.max(),
    )


def months_between(start: date, end: date) -> list[str]:
    """Every YYYY-MM from start's month to end's month, inclusive."""
    months = []
    year, month = start.year, start.month
    while (year, month) <= (end.year, end.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def range_months(known: Iterable[str], date_from: date | None, date_to: date | None) -> set[str]:
    """Known months that overlap the --from/--to range (an open end reaches every known month)."""
    if date_from is None and date_to is None:
        return set()
    lo = f"{date_from:%Y-%m}" if date_from else ""
    hi = f"{date_to:%Y-%m}" if date_to else "9999-99"
    return {m for m in known if lo <= m <= hi}


def changed_months(current: dict[str, Fingerprint], previous: dict[str, Fingerprint]) -> set[str]:
    """Months whose fingerprint differs, plus months present on one side only."""
    return {m for m in current.keys() | previous.keys() if current.get(m) != previous.get(m)}


# -- IO ----------------------------------------------------------------------------------
def _fingerprint_rows(arrow: pa.Table) -> dict[str, Fingerprint]:
    schema = GOLD_WATERMARK.schema
    # Cast to the watermark's types so freshly computed and stored fingerprints compare equal.
    cols = {c: arrow.column(c).cast(schema.field(c).type).to_pylist() for c in FINGERPRINT_COLUMNS}
    months = arrow.column("sale_month").to_pylist()
    return {m: tuple(cols[c][i] for c in FINGERPRINT_COLUMNS) for i, m in enumerate(months)}


def _watermark(lake: Lake) -> dict[str, dict[str, Any]]:
    """table -> {"silver_version": int|None, "months": {month: fingerprint}}."""
    state: dict[str, dict[str, Any]] = {}
    for row in lake.read_arrow(GOLD_WATERMARK.name).to_pylist():
        entry = state.setdefault(row["table"], {"silver_version": None, "months": {}})
        entry["silver_version"] = row["silver_version"]
        entry["months"][row["sale_month"]] = tuple(row[c] for c in FINGERPRINT_COLUMNS)
    return state


def _watermark_table(
    state: dict[str, dict[str, Fingerprint]], silver_version: int, run_id: str
) -> pa.Table:
    now = datetime.now(UTC)
    rows = [
        {
            "table": table,
            "sale_month": month,
            **dict(zip(FINGERPRINT_COLUMNS, fp, strict=True)),
            "silver_version": silver_version,
            "run_id": run_id,
            "built_at": now,
        }
        for table, months in sorted(state.items())
        for month, fp in sorted(months.items())
    ]
    return pa.Table.from_pylist(rows, schema=GOLD_WATERMARK.schema)


def _logged_changes(lake: Lake, since_version: int | None) -> set[str] | None:
    """Months silver logged as replaced after `since_version`; None when there is no log."""
    try:
        exists = lake.exists(SILVER_CHANGES)
    except TableNotFoundError:
        return None
    if not exists:
        return None
    log = lake.read_arrow(SILVER_CHANGES, columns=["silver_version", "sale_month"])
    return {
        row["sale_month"]
        for row in log.to_pylist()
        if since_version is None or (row["silver_version"] or 0) > since_version
    }


def _current_fingerprints(
    lake: Lake, state: dict[str, dict[str, Any]], silver_version: int
) -> dict[str, Fingerprint]:
    """Silver's month fingerprints at `silver_version`.

    Aggregating all of silver scans every row (0.2 s at 10M rows) on every run after a silver
    change, however small. A month whose live files are the ones it had at the oldest silver
    version a gold table consumed holds the same rows (Delta never changes a file in place), so
    it keeps the fingerprint stored for that version if the log's row count of those files
    agrees with it (a guard against a silver recreated since, whose versions start again at 0;
    a recreated silver with the same files' row counts per month is not caught, as neither is
    one that reached the very version gold consumed); only the other months are aggregated,
    reading their partitions alone. Without a usable stored state (a table never built, a lost
    watermark, a log cleaned up past that version) every month is aggregated.
    """
    entries = [state.get(gold.contract.name) for gold in GOLD_TABLES]
    consumed = [e["silver_version"] for e in entries if e and e["silver_version"] is not None]
    base = min(consumed, default=None)
    diff = (
        lake.partition_diff(SILVER, "sale_month", since=base, version=silver_version)
        if base is not None and len(consumed) == len(GOLD_TABLES)
        else None
    )
    silver = lake.read(SILVER, version=silver_version)
    if diff is None or None in diff.rows:  # no usable diff, or a null month (not filterable)
        return _fingerprint_rows(lake.engine.to_arrow(month_fingerprints(silver)))
    stored = next(e["months"] for e in entries if e and e["silver_version"] == base)
    kept = {
        month: fp
        for month, fp in stored.items()
        if month in diff.rows and month not in diff.changed and fp[0] == diff.rows[month]
    }
    todo = sorted(set(diff.rows) - kept.keys())
    if todo:
        scope = silver.filter(silver.sale_month.isin(todo))
        kept.update(_fingerprint_rows(lake.engine.to_arrow(month_fingerprints(scope))))
    return kept


@dataclass(frozen=True)
class GoldPlan:
    """What a gold run will rebuild, read from silver and the watermark before any write."""

    silver_version: int | None  # None: silver has not been written yet
    up_to_date: bool  # every table consumed this silver version (and nothing forces a build)
    current: dict[str, Fingerprint]  # silver's month fingerprints now (empty when up to date)
    months: dict[str, set[str]]  # per gold table, the months to rebuild
    full: dict[str, bool]  # per gold table, whether it is overwritten


def plan(lake: Lake, ctx: StepContext) -> GoldPlan:
    """The months each gold table would rebuild (reads only; `medallion plan` uses it too)."""
    silver_version = lake.version(SILVER)
    if silver_version is None:
        return GoldPlan(None, False, {}, {}, {})
    state = _watermark(lake)
    forced_range = ctx.date_from is not None or ctx.date_to is not None
    up_to_date = all(
        lake.exists(b.contract.name)
        and state.get(b.contract.name, {}).get("silver_version") == silver_version
        for b in GOLD_TABLES
    )
    if up_to_date and not ctx.full_refresh and not forced_range:
        return GoldPlan(silver_version, True, {}, {t.contract.name: set() for t in GOLD_TABLES}, {})
    current = _current_fingerprints(lake, state, silver_version)
    months: dict[str, set[str]] = {}
    full: dict[str, bool] = {}
    for gold in GOLD_TABLES:
        name = gold.contract.name
        previous: dict[str, Fingerprint] = state.get(name, {}).get("months", {})
        consumed = state.get(name, {}).get("silver_version")
        known = set(current) | set(previous)
        full[name] = ctx.full_refresh or not lake.exists(name)
        if full[name]:
            months[name] = known
            continue
        logged = _logged_changes(lake, consumed) if consumed is not None else None
        months[name] = (
            changed_months(current, previous)
            | range_months(known, ctx.date_from, ctx.date_to)
            | ((logged or set()) & known)
        )
    return GoldPlan(silver_version, False, current, months, full)


def pending_months(lake: Lake) -> dict[str, list[str]]:
    """Per gold table, the months the next incremental gold run would rebuild (no range)."""
    planned = plan(lake, StepContext(run_id="plan"))
    return {name: sorted(months) for name, months in planned.months.items()}


def run(lake: Lake, ctx: StepContext) -> StepResult:
    """Bring every gold table up to date with silver/sales (see the module docstring)."""
    result = StepResult(step=STEP)
    ctx.report(0, len(GOLD_TABLES) + 1, "fingerprinting silver months")
    planned = plan(lake, ctx)
    silver_version = planned.silver_version
    if silver_version is None:
        result.status = "skipped"
        result.message = "silver/sales has not been written yet: run the silver step first"
        return result
    if planned.up_to_date:
        result.message = f"gold is up to date with silver/sales v{silver_version}"
        result.metrics = {"silver_version": silver_version, "rebuilt_months": {}}
        return result

    engine = lake.engine
    silver = lake.read(SILVER, version=silver_version)
    current = planned.current
    commit = ctx.commit(STEP)
    outcomes: list[quality.Outcome] = []
    new_state: dict[str, dict[str, Fingerprint]] = {}
    rebuilt: dict[str, list[str]] = {}
    rows_in = 0
    for i, gold in enumerate(GOLD_TABLES, start=1):
        name = gold.contract.name
        months, full = planned.months[name], planned.full[name]
        new_state[name] = current
        if not months:
            continue
        ctx.report(i, len(GOLD_TABLES) + 1, f"building {name} ({len(months)} months)")
        scope = silver.filter(silver.sale_month.isin(sorted(months)))
        data = engine.to_arrow(gold.build(scope))
        table_outcomes = quality.evaluate(
            engine, gold.contract, engine.from_arrow(data), {SILVER: scope}
        )
        outcomes.extend(table_outcomes)
        if any(o.stops for o in table_outcomes):
            quality.write(lake, outcomes, commit)
            quality.raise_if_broken(table_outcomes, name)
        checkpoint("gold.before_commit")
        written = lake.write_arrow(
            name, data, commit=commit, **gold.contract.write_args(full=full, values=months)
        )
        checkpoint("gold.after_commit")
        result.tables[name] = written.version
        result.rows_out += written.rows
        rebuilt[name] = sorted(months)
        rows_in = max(rows_in, sum(current[m][0] for m in months if m in current))

    quality_version = quality.write(lake, outcomes, commit)
    if quality_version is not None:
        result.tables["_meta/quality"] = quality_version
    checkpoint("gold.before_watermark")
    wm = lake.write_arrow(
        GOLD_WATERMARK.name,
        _watermark_table(new_state, silver_version, ctx.run_id),
        commit=commit,
        mode="overwrite",
    )
    result.tables[GOLD_WATERMARK.name] = wm.version
    ctx.report(len(GOLD_TABLES) + 1, len(GOLD_TABLES) + 1, "gold done")
    result.rows_in = rows_in
    result.metrics = {
        "silver_version": silver_version,
        "rebuilt_months": rebuilt,
        "full_refresh": ctx.full_refresh,
        "checks_failed": sum(1 for o in outcomes if not o.passed),
    }
    if not rebuilt:
        result.message = f"no silver month changed (silver/sales v{silver_version})"
    return result
