"""The silver step: new bronze batches -> silver/sales (+ quarantine), incrementally, one commit.

Algorithm (DESIGN.md section 5), the same on every engine:
1. The pending batches are those in `_meta/ingested_files` (complete bronze batches) that are
   not in the ledger `_meta/silver_batches`.
2. Parse them; evaluate the rules; a batch whose dropped share is above
   `settings.quarantine_fail_share` is held back (`silver/held.py`): nothing of it is committed,
   the other batches go on, and the step reports it (the run exits 3).
3. Affected months = months of the new valid rows plus months where silver holds a version of
   one of their sale_ids (so a sale that moves month leaves its old month too).
4. Rebuild those months from (silver rows in them ∪ new rows), latest version per sale_id, and
   replace exactly those partitions in one commit.
Commit order: quarantine -> silver replace -> `_meta/silver_changes` -> `_meta/quality` -> ledger.
The ledger row is the commit marker. Every write is idempotent, so a crash anywhere only makes the
next run do the same work again: the quarantine rows of the processed batches are *replaced* (one
predicate overwrite on their batch ids, never an append), and re-running a batch rebuilds the same
silver rows. Nothing is ever deleted to recover. A full refresh, which overwrites the quarantine
before silver, records an intent first (`_meta/intents`); a run that finds it unfinished resumes
the full refresh instead of taking an inconsistent quarantine for done.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.compute as pc

from medallion_lakehouse import intents
from medallion_lakehouse.bronze.contract import BRONZE_SALES
from medallion_lakehouse.faults import checkpoint
from medallion_lakehouse.meta import INGESTED_FILES, QUALITY
from medallion_lakehouse.pipeline.context import StepContext, StepResult
from medallion_lakehouse.silver import held, transform
from medallion_lakehouse.silver import standardise as std
from medallion_lakehouse.silver.contract import (
    SILVER_BATCHES,
    SILVER_CHANGES,
    SILVER_QUARANTINE,
    SILVER_SALES,
)
from medallion_lakehouse.silver.rules import (
    BATCH_QUARANTINED_RULE,
    DROP_RULES,
    QUARANTINE_SHARE_RULE,
    ROW_RULES,
    RULES,
    BatchShare,
    gate,
)
from medallion_lakehouse.storage.lake import Lake

STEP = "silver"
FULL_REFRESH = "full_refresh"
_DROP_NAMES = frozenset(r.name for r in DROP_RULES)


@dataclass(frozen=True)
class Batch:
    batch_id: str
    seq: int | None
    ingested_at: datetime
    source_file: str

    @property
    def order(self) -> tuple[int, datetime, str]:
        """The lake's batch order: the sequence, then (for older lakes without one) the time."""
        return (-1 if self.seq is None else self.seq, self.ingested_at, self.batch_id)


def month_bounds(date_from: date | None, date_to: date | None) -> tuple[date, date]:
    """First day of date_from's month, last day of date_to's month (open ends unbounded)."""
    lo = (date_from or date.min).replace(day=1)
    hi = date_to or date.max
    if hi != date.max:
        hi = (hi.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    return lo, hi


def watermarks(
    batches: list[tuple[str, int | None, datetime, date | None]],
) -> dict[str, date | None]:
    """Per batch (id, seq, ingested_at, newest sale_date), the newest valid sale_date of all
    batches before it in the lake's batch order."""
    result: dict[str, date | None] = {}
    newest: date | None = None
    ordered = sorted(batches, key=lambda b: (-1 if b[1] is None else b[1], b[2], b[0]))
    for batch_id, _, _, max_date in ordered:
        result[batch_id] = newest
        if max_date is not None and (newest is None or max_date > newest):
            newest = max_date
    return result


def _pending(lake: Lake, processed: set[str]) -> list[Batch]:
    markers = lake.read_arrow(
        INGESTED_FILES.name, columns=["batch_id", "seq", "ingested_at", "source_file"]
    ).to_pylist()
    batches = [Batch(m["batch_id"], m["seq"], m["ingested_at"], m["source_file"]) for m in markers]
    return sorted((b for b in batches if b.batch_id not in processed), key=lambda b: b.order)


def _distinct(lake: Lake, column: ir.Column) -> list[Any]:
    table = lake.engine.to_arrow(column.as_table().distinct())
    return sorted(v for v in table.column(0).to_pylist() if v is not None)


def _stored_months(lake: Lake) -> list[str]:
    """Months silver/sales holds now (the partition column, read on the driver)."""
    months = lake.read_arrow(SILVER_SALES.name, columns=["sale_month"]).column(0)
    return sorted(m for m in pc.unique(months).to_pylist() if m is not None)


def _batch_stats(lake: Lake, parsed: ir.Table) -> list[dict[str, Any]]:
    """Per-batch counts on the driver, sums as Python ints (DuckDB sums int64 into HUGEINT)."""
    rows = lake.engine.to_arrow(transform.batch_stats(parsed)).to_pylist()
    for row in rows:
        for key in ("rows", "dropped", *(k for k in row if k.startswith("failed__"))):
            row[key] = int(row[key] or 0)
    return rows


def _quality_rows(
    run_id: str,
    stats: list[dict[str, Any]],
    failing: list[BatchShare],
    whole: list[BatchShare],
    now: datetime,
) -> pa.Table:
    """One row per rule; the batch-level ones count the rows of the batches they apply to."""
    checked = sum(s["rows"] for s in stats)
    batch_level = {QUARANTINE_SHARE_RULE: failing, BATCH_QUARANTINED_RULE: whole}
    rows = []
    for rule in RULES:
        if rule in ROW_RULES:
            failed = sum(s[f"failed__{rule.name}"] or 0 for s in stats)
        else:
            failed = sum(b.rows for b in batch_level[rule.name])
        rows.append(
            {
                "run_id": run_id,
                "table": SILVER_SALES.name,
                "rule": rule.name,
                "severity": rule.severity,
                "rows_checked": checked,
                "rows_failed": failed,
                "checked_at": now,
                "description": rule.description,
            }
        )
    return pa.Table.from_pylist(rows, schema=QUALITY.schema)


def _gate_message(
    failing: list[BatchShare], files: dict[str, str], threshold: float, run_id: str
) -> str:
    worst = max(failing, key=lambda b: b.share)
    others = f" (and {len(failing) - 1} more batch(es))" if len(failing) > 1 else ""
    return (
        f"Held back: {worst.dropped:,} of {worst.rows:,} rows ({worst.share:.1%}) of bronze "
        f"batch {worst.batch_id} ({files.get(worst.batch_id, '?')}) failed drop rules{others}, "
        f"above quarantine_fail_share={threshold:.0%}. Nothing of it was committed; other "
        f"batches went on. See `medallion quality --run {run_id}` for the rules, then decide with "
        "`medallion held` (--accept, --quarantine or --drop), or land a corrected file."
    )


def _hold_reason(share: BatchShare, stats: dict[str, Any]) -> str:
    broken = {
        k.removeprefix("failed__"): int(v or 0)
        for k, v in stats.items()
        if k.startswith("failed__") and v and k.removeprefix("failed__") in _DROP_NAMES
    }
    rules = ", ".join(f"{name} {n:,}" for name, n in sorted(broken.items()))
    return (
        f"{share.dropped:,} of {share.rows:,} rows ({share.share:.1%}) failed drop rules: {rules}"
    )


def _full_refresh_intent(
    intent_id: str, state: intents.State, run_id: str | None = None
) -> intents.Intent:
    return intents.Intent(
        intent_id=intent_id,
        step=STEP,
        kind=FULL_REFRESH,
        state=state,
        seq=None,
        payload={},
        run_id=run_id or intent_id,
    )


class EngineCache:
    """Tables materialised on the engine for the length of a run, released at its end."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.tables: list[ir.Table] = []

    def __call__(self, expr: ir.Table) -> ir.Table:
        cached = expr.cache()
        self.tables.append(cached)
        return cached

    def release(self) -> None:
        for table in self.tables:
            name = table.op().name
            try:
                table.release()
            except Exception:
                # ibis 12 with sqlglot 30 renders DuckDB's DROP without the table name; the
                # failed release has already detached ibis' finalizer, so drop it by hand.
                self.lake.engine.backend.raw_sql(f'DROP TABLE IF EXISTS "{name}"')
        self.tables.clear()


def run(lake: Lake, ctx: StepContext) -> StepResult:
    """Process the pending bronze batches (or all of bronze, or a sale-date range) into silver."""
    caches = EngineCache(lake)
    try:
        return _run(lake, ctx, caches)
    finally:
        caches.release()


def _run(lake: Lake, ctx: StepContext, cache: EngineCache) -> StepResult:
    started = time.perf_counter()
    now = datetime.now(UTC)
    commit = ctx.commit(STEP)
    engine = lake.engine
    interrupted = intents.unfinished(lake, STEP, FULL_REFRESH)
    full = ctx.full_refresh or bool(interrupted)
    ranged = not full and (ctx.date_from is not None or ctx.date_to is not None)
    mode = "full_refresh" if full else ("range" if ranged else "incremental")

    ledger = (SILVER_BATCHES.empty() if full else lake.read_arrow(SILVER_BATCHES.name)).to_pylist()
    processed = {r["batch_id"] for r in ledger}
    holds = held.current(lake)
    decided = {s: {b for b, h in holds.items() if h.state == s} for s in held.DECISIONS}
    pending = [b for b in _pending(lake, processed) if b.batch_id not in decided["dropped"]]
    files = {b.batch_id: b.source_file for b in pending}
    arrived = {b.batch_id: b for b in pending}
    result = StepResult(step=STEP, metrics={"mode": mode, "affected_months": []})
    if interrupted and not ctx.full_refresh:
        result.metrics["resumed_full_refresh"] = [i.intent_id for i in interrupted]
    if not pending and not ranged:
        result.status = "skipped"
        result.message = "no new bronze batches"
        result.seconds = time.perf_counter() - started
        return result

    ctx.report(0, 4, "silver: checking rules")
    bronze = lake.read(BRONZE_SALES.name)
    new_ids = [b.batch_id for b in pending]
    new_bronze = bronze.filter(bronze._batch_id.isin(new_ids)) if new_ids else None
    # Materialised once: the rules, the quarantine and the rebuild all read it (and compiling
    # the parse expression again for each of them costs seconds).
    new_parsed = (
        cache(
            transform.narrow(
                transform.quarantine_whole(
                    transform.parse(new_bronze), sorted(decided["quarantined"] & set(new_ids))
                )
            )
        )
        if new_bronze is not None
        else None
    )

    # -- rules and the quality gate, before anything is committed ---------------------------
    stats = _batch_stats(lake, new_parsed) if new_parsed is not None else []
    by_batch = {s["_batch_id"]: s for s in stats}
    shares = [
        BatchShare(b, by_batch[b]["rows"], by_batch[b]["dropped"] or 0)
        for b in new_ids
        if b in by_batch
    ]
    threshold = lake.settings.quarantine_fail_share
    exempt = decided["accepted"] | decided["quarantined"]
    failing = gate([b for b in shares if b.batch_id not in exempt], threshold)
    whole = [b for b in shares if b.batch_id in decided["quarantined"]]
    quality = _quality_rows(ctx.run_id, stats, failing, whole, now) if new_ids else None
    if failing:
        # Hold these batches back; everything else goes on.
        fresh_holds = [
            held.HeldBatch(
                b.batch_id,
                arrived[b.batch_id].seq,
                files.get(b.batch_id),
                "held",
                b.rows,
                b.dropped,
                threshold,
                _hold_reason(b, by_batch[b.batch_id]),
                ctx.run_id,
            )
            for b in failing
            if b.batch_id not in holds
        ]
        held.record(lake, fresh_holds, run_id=ctx.run_id, commit=commit)
        message = _gate_message(failing, files, threshold, ctx.run_id)
        result.metrics.update(
            held_batches=[b.batch_id for b in failing], errors=[message], exit_code=3
        )
        result.message = message
        held_ids = {b.batch_id for b in failing}
        new_ids = [b for b in new_ids if b not in held_ids]
        stats = [st for st in stats if st["_batch_id"] not in held_ids]
        shares = [b for b in shares if b.batch_id not in held_ids]
        if not new_ids and not ranged:
            assert quality is not None
            lake.write_arrow(QUALITY.name, quality, commit=commit)
            result.seconds = time.perf_counter() - started
            return result
        assert new_bronze is not None and new_parsed is not None
        keep = sorted(held_ids)
        new_bronze = new_bronze.filter(~new_bronze._batch_id.isin(keep))
        new_parsed = new_parsed.filter(~new_parsed._batch_id.isin(keep))

    # -- is_late watermarks: newest valid sale_date of every batch ingested earlier -----------
    known = [(r["batch_id"], r["seq"], r["ingested_at"], r["max_sale_date"]) for r in ledger]
    known += [
        (s["_batch_id"], s["_batch_seq"], s["_ingested_at"], s["max_sale_date"]) for s in stats
    ]
    marks = watermarks(known)
    wm_table = engine.from_arrow(
        pa.table(
            {"batch_id": list(marks), "watermark": list(marks.values())},
            schema=pa.schema([("batch_id", pa.string()), ("watermark", pa.date32())]),
        )
    )

    # -- the fresh rows: new batches, plus (for --from/--to) every version of sales in range --
    if ranged:
        lo, hi = month_bounds(ctx.date_from, ctx.date_to)
        scope = bronze.filter(bronze._batch_id.isin(sorted(processed | set(new_ids))))
        every = transform.typed(transform.parse(scope))
        in_range = every.filter(every.sale_date.between(lo, hi))
        fresh = every.filter(every.sale_id.isin(in_range.sale_id) | every._batch_id.isin(new_ids))
    else:
        assert new_parsed is not None
        fresh = transform.typed(new_parsed)
    fresh = transform.with_lateness(fresh, wm_table).mutate(_priority=1)
    # An incremental run reads `fresh` three times below, so it is materialised once. A first
    # load (silver has no commit yet) has nothing to merge with: like a full refresh, its months
    # come from the cached parse and `fresh` is evaluated once, in the write (caching it held a
    # second copy of the batch, 8.2 GiB peak at 10M; not caching it evaluated the content hash
    # twice, once only to find the months: 0.8-1.5 s of 5.7 s at 1M rows).
    first_load = not full and not ranged and lake.version(SILVER_SALES.name) is None
    if not full and not first_load:
        fresh = cache(fresh)

    # -- affected months and the rebuild --------------------------------------------------------
    ctx.report(1, 4, "silver: finding affected months")
    existing = lake.read(SILVER_SALES.name)
    months_before = _stored_months(lake) if full else []
    if full or first_load:
        rebuild = transform.latest(fresh)
        assert new_parsed is not None
        valid = new_parsed.filter(new_parsed._drop_rule.isnull())
        months = _distinct(lake, std.sale_month(valid.p_sale_date).name("sale_month"))
    else:
        touched = fresh.select("sale_month").union(
            existing.filter(existing.sale_id.isin(fresh.sale_id)).select("sale_month")
        )
        if ranged:
            in_range = existing.filter(existing.sale_date.between(lo, hi))
            touched = touched.union(in_range.select("sale_month"))
        months = _distinct(lake, touched.sale_month)
        kept = transform.conform(
            existing.filter(existing.sale_month.isin(months)).mutate(_priority=0)
        )
        rebuild = transform.latest(kept.union(transform.conform(fresh)))

    # -- commits: quarantine, silver, changes, quality, ledger ----------------------------------
    ctx.report(2, 4, "silver: writing")
    dropped = sum(b.dropped for b in shares)
    tables: dict[str, int | None] = {}
    if full:
        intents.record(lake, [_full_refresh_intent(ctx.run_id, "started")], commit=commit)
    if full or dropped:
        assert new_parsed is not None and new_bronze is not None
        # Replacing the rows of exactly these batches (not appending) makes a retry after a
        # crash rewrite the same rows instead of adding them twice; the quarantine is small, so
        # it is written from Arrow on the driver, the same way on every engine.
        q = lake.write_arrow(
            SILVER_QUARANTINE.name,
            engine.to_arrow(transform.quarantine(new_bronze, new_parsed, ctx.run_id)),
            commit=commit,
            mode="overwrite" if full else "append",
            replace=None if full else {"_batch_id": new_ids},
        )
        tables[SILVER_QUARANTINE.name] = q.version
        checkpoint("silver.after_quarantine")
    checkpoint("silver.before_commit")
    silver_version = lake.version(SILVER_SALES.name)
    written = 0
    if full:
        w = lake.write(SILVER_SALES.name, rebuild, commit=commit, mode="overwrite")
        silver_version, written = w.version, w.rows
    elif months:
        w = lake.write(SILVER_SALES.name, rebuild, commit=commit, replace={"sale_month": months})
        silver_version, written = w.version, w.rows
    tables[SILVER_SALES.name] = silver_version
    changed = sorted(set(months) | set(months_before))
    if changed:
        lake.write_arrow(
            SILVER_CHANGES.name,
            pa.Table.from_pylist(
                [
                    {
                        "run_id": ctx.run_id,
                        "silver_version": silver_version,
                        "sale_month": m,
                        "mode": mode,
                        "changed_at": now,
                    }
                    for m in changed
                ],
                schema=SILVER_CHANGES.schema,
            ),
            commit=commit,
        )
    if quality is not None:
        lake.write_arrow(QUALITY.name, quality, commit=commit)
    checkpoint("silver.before_ledger")
    if new_ids or full:
        entries = [
            {
                "batch_id": b,
                "seq": arrived[b].seq,
                "ingested_at": arrived[b].ingested_at,
                "rows": by_batch[b]["rows"] if b in by_batch else 0,
                "rows_valid": (by_batch[b]["rows"] - (by_batch[b]["dropped"] or 0))
                if b in by_batch
                else 0,
                "rows_quarantined": (by_batch[b]["dropped"] or 0) if b in by_batch else 0,
                "max_sale_date": by_batch[b]["max_sale_date"] if b in by_batch else None,
                "watermark": marks.get(b),
                "affected_months": json.dumps(changed),
                "silver_version": silver_version,
                "run_id": ctx.run_id,
                "processed_at": now,
            }
            for b in new_ids
        ]
        ledger_table = pa.Table.from_pylist(entries, schema=SILVER_BATCHES.schema)
        lake.write_arrow(
            SILVER_BATCHES.name, ledger_table, commit=commit, mode="overwrite" if full else "append"
        )
    if full:
        closed = [_full_refresh_intent(i.intent_id, "done", ctx.run_id) for i in interrupted]
        closed.append(_full_refresh_intent(ctx.run_id, "done"))
        intents.record(lake, closed, commit=commit)
    ctx.report(4, 4, "silver: done")

    rows_in = sum(b.rows for b in shares)
    failures = {
        s: sum(x[f"failed__{s}"] or 0 for x in stats)
        for s in ("price_present", "total_consistent", "product_in_catalogue")
    }
    result.rows_in = rows_in
    result.rows_out = written
    result.rows_quarantined = dropped
    result.tables = tables
    result.metrics.update(
        affected_months=changed,
        batches=new_ids,
        silver_version=silver_version,
        price_imputed=failures["price_present"],
        total_checked_failed=failures["total_consistent"],
        unknown_products=failures["product_in_catalogue"],
    )
    result.seconds = time.perf_counter() - started
    return result
