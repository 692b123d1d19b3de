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
   replace exactly those partitions in one commit. When no new sale_id is stored yet (and no
   --from/--to range is asked), that rebuild would rewrite the stored rows unchanged, so the
   new rows' latest versions are appended in one commit instead (same table contents). A first
   load or a full refresh has only new rows: when every batch has a sequence number, the rows
   a later version replaces are picked from narrow columns of the cached parse (sale key, batch
   code, line) and the write leaves them out, so no window sorts whole silver rows.
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
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from medallion_lakehouse import intents
from medallion_lakehouse import quality as qo
from medallion_lakehouse.bronze.contract import BRONZE_SALES
from medallion_lakehouse.engines.base import Engine
from medallion_lakehouse.engines.cache import StepCache
from medallion_lakehouse.errors import AuditError
from medallion_lakehouse.faults import checkpoint
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.meta import INGESTED_FILES
from medallion_lakehouse.pipeline.context import StepContext, StepResult
from medallion_lakehouse.silver import held, reference, transform
from medallion_lakehouse.silver.contract import (
    SILVER_BATCHES,
    SILVER_CHANGES,
    SILVER_QUARANTINE,
    SILVER_SALES,
)
from medallion_lakehouse.silver.rules import (
    BATCH_QUARANTINED_RULE,
    QUARANTINE_SHARE_RULE,
    BatchShare,
    Breach,
    RuleSet,
    breaches,
)
from medallion_lakehouse.storage.delta import CommitInfo

if TYPE_CHECKING:
    import ibis.expr.types as ir

STEP = "silver"
FULL_REFRESH = "full_refresh"


@dataclass(frozen=True)
class Batch:
    batch_id: str
    seq: int | None
    ingested_at: datetime
    source_file: str
    rows: int | None = None  # written to bronze (None: not recorded)

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
    columns = ["batch_id", "seq", "ingested_at", "source_file", "rows"]
    markers = lake.read_arrow(INGESTED_FILES.name, columns=columns).to_pylist()
    batches = [Batch(*(m[c] for c in columns)) for m in markers]
    return sorted((b for b in batches if b.batch_id not in processed), key=lambda b: b.order)


def batch_codes(engine: Engine, bronze: ir.Table) -> ir.Table:
    """The batches' shared lineage and codes (`transform.batch_lineage`) as a table of its own:
    a handful of rows, through the driver.

    Bronze writes one lineage per file, so there is one row per batch; a batch with two would
    repeat its rows in `transform.narrow`'s join, so silver stops before writing instead.
    """
    table = engine.to_arrow(transform.batch_lineage(bronze))
    counts = Counter(table.column("_batch_id").to_pylist())
    repeated = sorted(b for b, n in counts.items() if n > 1)
    if repeated:
        raise AuditError(
            f"bronze batch {repeated[0]} has rows with different lineage (_batch_seq, "
            "_source_file or _ingested_at): silver wrote nothing. Bronze writes one lineage per "
            "file, so its rows were changed outside the pipeline; restore bronze/sales to a "
            "version before that (`medallion history bronze/sales`, `medallion restore`)."
        )
    return engine.from_arrow(table)


def _distinct(lake: Lake, column: ir.Column) -> list[Any]:
    table = lake.engine.to_arrow(column.as_table().distinct())
    return sorted(v for v in table.column(0).to_pylist() if v is not None)


def _valid_months(stats: list[dict[str, Any]]) -> list[str]:
    """The months of the batches' valid rows, from their statistics (`transform.batch_stats`)."""
    return sorted({m for st in stats for m in st["sale_months"] or ()})


def _stored_months(lake: Lake) -> list[str]:
    """Months silver/sales holds now (the partition column, read on the driver)."""
    months = lake.read_arrow(SILVER_SALES.name, columns=["sale_month"]).column(0)
    return sorted(m for m in pc.unique(months).to_pylist() if m is not None)


def _batch_stats(lake: Lake, parsed: ir.Table, rules: RuleSet) -> list[dict[str, Any]]:
    """Per-batch counts on the driver, sums as Python ints (DuckDB sums int64 into HUGEINT)."""
    rows = lake.engine.to_arrow(transform.batch_stats(parsed, rules)).to_pylist()
    for row in rows:
        for key in (
            "rows",
            "dropped",
            "dropped_ungated",
            *(k for k in row if k.startswith("failed__")),
        ):
            row[key] = int(row[key] or 0)
    return rows


def rule_outcomes(
    rules: RuleSet,
    stats: list[dict[str, Any]],
    failing: list[BatchShare],
    whole: list[BatchShare],
) -> list[qo.Outcome]:
    """One outcome per rule; the batch-level ones count the rows of the batches they apply to."""
    checked = sum(s["rows"] for s in stats)
    batch_level = {QUARANTINE_SHARE_RULE: failing, BATCH_QUARANTINED_RULE: whole}
    outcomes = []
    for resolved in rules.resolved:
        rule = resolved.rule
        if rule.passes is not None:
            failed = sum(s[f"failed__{rule.name}"] or 0 for s in stats)
        else:
            failed = sum(b.rows for b in batch_level[rule.name])
        outcomes.append(
            qo.Outcome(
                SILVER_SALES.name,
                rule.name,
                rule.severity,
                checked,
                failed,
                rule.description,
                threshold=resolved.fail_share,
            )
        )
    return outcomes


def _gate_message(failing: dict[str, list[Breach]], files: dict[str, str], run_id: str) -> str:
    batch, found = max(failing.items(), key=lambda kv: max(b.share for b in kv[1]))
    worst = max(found, key=lambda b: b.share)
    others = f" (and {len(failing) - 1} more batch(es))" if len(failing) > 1 else ""
    what = "failed drop rules" if worst.rule == QUARANTINE_SHARE_RULE else f"broke {worst.rule}"
    setting = (
        "quarantine_fail_share"
        if worst.rule == QUARANTINE_SHARE_RULE
        else f"{worst.rule} fail_share"
    )
    return (
        f"Held back: {worst.failed:,} of {worst.rows:,} rows ({worst.share:.1%}) of bronze "
        f"batch {batch} ({files.get(batch, '?')}) {what}{others}, "
        f"above {setting}={worst.threshold:.0%}. Nothing of it was committed; other "
        f"batches went on. See `medallion quality --run {run_id}` for the rules, then decide with "
        "`medallion held` (--accept, --quarantine or --drop), or land a corrected file."
    )


def _hold_reason(
    share: BatchShare, stats: dict[str, Any], found: list[Breach], rules: RuleSet
) -> str:
    drop_names = {r.name for r in rules.drop_rules}
    broken = {
        k.removeprefix("failed__"): int(v or 0)
        for k, v in stats.items()
        if k.startswith("failed__") and v and k.removeprefix("failed__") in drop_names
    }
    listed = ", ".join(f"{name} {n:,}" for name, n in sorted(broken.items()))
    reason = (
        f"{share.dropped:,} of {share.rows:,} rows ({share.share:.1%}) failed drop rules: {listed}"
    )
    own = [b for b in found if b.rule != QUARANTINE_SHARE_RULE]
    if own:
        reason += "; above their fail_share: " + ", ".join(
            f"{b.rule} {b.share:.1%} > {b.threshold:.0%}" for b in own
        )
    return reason


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


@dataclass(frozen=True)
class SilverPlan:
    """What a silver run will process, read from the lake's records before anything is done."""

    mode: str  # incremental | range | full_refresh
    interrupted: list[intents.Intent]  # unfinished full refreshes this run resumes
    ledger: list[dict[str, Any]]  # `_meta/silver_batches` rows kept (none for a full refresh)
    holds: dict[str, held.HeldBatch]  # the gate's current record per held batch
    decided: dict[held.Decision, set[str]]  # decision -> batch ids
    pending: list[Batch]  # batches to process, in the lake's batch order

    @property
    def full(self) -> bool:
        return self.mode == "full_refresh"

    @property
    def ranged(self) -> bool:
        return self.mode == "range"

    @property
    def processed(self) -> set[str]:
        return {r["batch_id"] for r in self.ledger}

    @property
    def arrived(self) -> dict[str, Batch]:
        return {b.batch_id: b for b in self.pending}

    @property
    def files(self) -> dict[str, str]:
        return {b.batch_id: b.source_file for b in self.pending}


def plan(lake: Lake, ctx: StepContext) -> SilverPlan:
    """The batches and the mode of the next silver run (reads only; takes no lock)."""
    interrupted = intents.unfinished(lake, STEP, FULL_REFRESH)
    full = ctx.full_refresh or bool(interrupted)
    ranged = not full and (ctx.date_from is not None or ctx.date_to is not None)
    mode = "full_refresh" if full else ("range" if ranged else "incremental")
    ledger = (SILVER_BATCHES.empty() if full else lake.read_arrow(SILVER_BATCHES.name)).to_pylist()
    holds = held.current(lake)
    decided = {s: {b for b, h in holds.items() if h.state == s} for s in held.DECISIONS}
    processed = {r["batch_id"] for r in ledger}
    pending = [b for b in _pending(lake, processed) if b.batch_id not in decided["dropped"]]
    return SilverPlan(mode, interrupted, ledger, holds, decided, pending)


@dataclass
class SilverWrite:
    """What the run computed and `_commit` writes."""

    batch_ids: list[str]  # the batches processed (held ones left out)
    new_bronze: ir.Table | None
    new_parsed: ir.Table | None
    rebuild: ir.Table | None  # the rebuilt months (everything on a full refresh)
    months: list[str]  # partitions replaced
    months_before: list[str]  # partitions silver held before a full refresh
    quality: list[qo.Outcome]  # the rules' outcomes on the batches
    stats: dict[str, dict[str, Any]]  # per batch id: rows, dropped, max_sale_date, failed__*
    watermarks: dict[str, date | None]
    dropped: int
    rules: RuleSet
    # The rebuilt rows are appended instead of replacing their months: none of their sale_ids
    # is stored yet, so the months' rebuild would rewrite the stored rows unchanged.
    append: bool = False
    rows: int | None = None  # at most this many rows in `rebuild` (None: not known)


@dataclass(frozen=True)
class Written:
    tables: dict[str, int | None]
    silver_version: int | None
    rows: int
    changed: list[str]


def _commit(
    lake: Lake,
    ctx: StepContext,
    the_plan: SilverPlan,
    w: SilverWrite,
    commit: CommitInfo,
    now: datetime,
) -> Written:
    """Write in the documented order: (full refresh intent) -> quarantine -> silver ->
    `_meta/silver_changes` -> `_meta/quality` -> ledger -> (intent done)."""
    engine = lake.engine
    full, mode = the_plan.full, the_plan.mode
    new_ids, months, stats = w.batch_ids, w.months, w.stats
    tables: dict[str, int | None] = {}
    if full:
        intents.record(lake, [_full_refresh_intent(ctx.run_id, "started")], commit=commit)
    if full or w.dropped:
        assert w.new_parsed is not None and w.new_bronze is not None
        # Replacing the rows of exactly these batches (not appending) makes a retry after a
        # crash rewrite the same rows instead of adding them twice; the quarantine is small, so
        # it is written from Arrow on the driver, the same way on every engine.
        q = lake.write_arrow(
            SILVER_QUARANTINE.name,
            engine.to_arrow(transform.quarantine(w.new_bronze, w.new_parsed, ctx.run_id, w.rules)),
            commit=commit,
            **SILVER_QUARANTINE.write_args(full=full, values=new_ids),
        )
        tables[SILVER_QUARANTINE.name] = q.version
        checkpoint("silver.after_quarantine")
    checkpoint("silver.before_commit")
    silver_version = lake.version(SILVER_SALES.name)
    written = 0
    if full or months:
        assert w.rebuild is not None
        args = {"mode": "append"} if w.append else SILVER_SALES.write_args(full=full, values=months)
        out = lake.write(SILVER_SALES.name, w.rebuild, commit=commit, rows=w.rows, **args)
        silver_version, written = out.version, out.rows
    tables[SILVER_SALES.name] = silver_version
    changed = sorted(set(months) | set(w.months_before))
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
    if months or full:
        # The contract's checks (unique sale_id, required columns) on the partitions just
        # written: read back from the commit, so they see what readers will see.
        written_months = lake.read(SILVER_SALES.name, version=silver_version)
        if not full:
            written_months = written_months.filter(written_months.sale_month.isin(months))
        if w.append:
            # An append adds only these batches' rows, and silver held none of their sale_ids
            # (the plan's lookup found none stored), so the rows it added are what could
            # break a check: reading the whole months again cost 1.7 s of a 1 % late batch.
            written_months = written_months.filter(written_months._batch_id.isin(new_ids))
        contract_checks = qo.evaluate(engine, SILVER_SALES, written_months)
    else:
        contract_checks = []
    tables.update(reference.write(lake, w.rules, commit))
    qo.write(lake, w.quality + contract_checks, commit, now)
    # The rules' `fail` (the share gate) holds batches above; here only the contract's checks.
    qo.raise_if_broken(contract_checks, SILVER_SALES.name, committed=True)
    checkpoint("silver.before_ledger")
    if new_ids or full:
        entries = [
            {
                "batch_id": b,
                "seq": the_plan.arrived[b].seq,
                "ingested_at": the_plan.arrived[b].ingested_at,
                "rows": stats[b]["rows"] if b in stats else 0,
                "rows_valid": (stats[b]["rows"] - (stats[b]["dropped"] or 0)) if b in stats else 0,
                "rows_quarantined": (stats[b]["dropped"] or 0) if b in stats else 0,
                "max_sale_date": stats[b]["max_sale_date"] if b in stats else None,
                "watermark": w.watermarks.get(b),
                "affected_months": json.dumps(changed),
                "silver_version": silver_version,
                "run_id": ctx.run_id,
                "processed_at": now,
            }
            for b in new_ids
        ]
        ledger_table = pa.Table.from_pylist(entries, schema=SILVER_BATCHES.schema)
        lake.write_arrow(
            SILVER_BATCHES.name, ledger_table, commit=commit, **SILVER_BATCHES.write_args(full=full)
        )
    if full:
        closed = [
            _full_refresh_intent(i.intent_id, "done", ctx.run_id) for i in the_plan.interrupted
        ]
        closed.append(_full_refresh_intent(ctx.run_id, "done"))
        intents.record(lake, closed, commit=commit)
    return Written(tables, silver_version, written, changed)


def run(lake: Lake, ctx: StepContext) -> StepResult:
    """Process the pending bronze batches (or all of bronze, or a sale-date range) into silver."""
    with StepCache(lake.engine) as cache:
        return _run(lake, ctx, cache)


def _run(lake: Lake, ctx: StepContext, cache: StepCache) -> StepResult:
    started = time.perf_counter()
    now = datetime.now(UTC)
    commit = ctx.commit(STEP)
    engine = lake.engine
    the_plan = plan(lake, ctx)
    full, ranged, mode = the_plan.full, the_plan.ranged, the_plan.mode
    ledger, processed, holds, decided = (
        the_plan.ledger,
        the_plan.processed,
        the_plan.holds,
        the_plan.decided,
    )
    pending, files, arrived = the_plan.pending, the_plan.files, the_plan.arrived
    result = StepResult(step=STEP, metrics={"mode": mode, "affected_months": []})
    if the_plan.interrupted and not ctx.full_refresh:
        result.metrics["resumed_full_refresh"] = [i.intent_id for i in the_plan.interrupted]
    if not pending and not ranged:
        result.status = "skipped"
        result.message = "no new bronze batches"
        result.seconds = time.perf_counter() - started
        return result

    ctx.report(0, 4, "silver: checking rules")
    rules = reference.for_lake(lake)
    bronze = lake.read(BRONZE_SALES.name)
    new_ids = [b.batch_id for b in pending]
    new_bronze = bronze.filter(bronze._batch_id.isin(new_ids)) if new_ids else None
    # Materialised once: the rules, the quarantine and the rebuild all read it (and compiling
    # the parse expression again for each of them costs seconds).
    new_parsed = narrowed = batches = None
    if new_bronze is not None:
        batches = batch_codes(engine, new_bronze)
        parsed = transform.quarantine_whole(
            transform.parse(new_bronze, rules), sorted(decided["quarantined"] & set(new_ids))
        )
        counts = [b.rows for b in pending]
        size = None if None in counts else sum(c for c in counts if c is not None)
        narrowed = cache(transform.narrow(parsed, batches), rows=size)
        new_parsed = transform.widen(narrowed, batches)

    # -- rules and the quality gate, before anything is committed ---------------------------
    stats = _batch_stats(lake, new_parsed, rules) if new_parsed is not None else []
    by_batch = {s["_batch_id"]: s for s in stats}
    shares = [
        BatchShare(b, by_batch[b]["rows"], by_batch[b]["dropped"] or 0)
        for b in new_ids
        if b in by_batch
    ]
    exempt = decided["accepted"] | decided["quarantined"]
    gates = {
        b.batch_id: found
        for b in shares
        if b.batch_id not in exempt and (found := breaches(by_batch[b.batch_id], rules))
    }
    failing = [b for b in shares if b.batch_id in gates]
    whole = [b for b in shares if b.batch_id in decided["quarantined"]]
    quality = rule_outcomes(rules, stats, failing, whole) if new_ids else []
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
                gates[b.batch_id][0].threshold,
                _hold_reason(b, by_batch[b.batch_id], gates[b.batch_id], rules),
                ctx.run_id,
            )
            for b in failing
            if b.batch_id not in holds
        ]
        held.record(lake, fresh_holds, run_id=ctx.run_id, commit=commit)
        message = _gate_message(gates, files, ctx.run_id)
        result.metrics.update(
            held_batches=[b.batch_id for b in failing], errors=[message], exit_code=3
        )
        result.message = message
        held_ids = {b.batch_id for b in failing}
        new_ids = [b for b in new_ids if b not in held_ids]
        stats = [st for st in stats if st["_batch_id"] not in held_ids]
        shares = [b for b in shares if b.batch_id not in held_ids]
        if not new_ids and not ranged:
            qo.write(lake, quality, commit, now)
            result.seconds = time.perf_counter() - started
            return result
        assert new_bronze is not None and new_parsed is not None
        assert narrowed is not None and batches is not None
        keep = sorted(held_ids)
        new_bronze = new_bronze.filter(~new_bronze._batch_id.isin(keep))
        new_parsed = new_parsed.filter(~new_parsed._batch_id.isin(keep))
        going = batches.filter(~batches._batch_id.isin(keep)).select(transform.BATCH_CODE)
        narrowed = narrowed.semi_join(going, transform.BATCH_CODE)

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
        every = transform.typed(transform.parse(scope, rules))
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
    # Every row the rebuild ranks comes from a pending batch or one the ledger lists.
    sequenced = all(b.seq is not None for b in pending) and all(
        r["seq"] is not None for r in ledger
    )
    order = transform.version_order(sequenced)
    existing = lake.read(SILVER_SALES.name)
    months_before = _stored_months(lake) if full else []
    append = False
    if full or first_load:
        assert new_parsed is not None and narrowed is not None and batches is not None
        if sequenced:
            # The window picks the replaced rows from narrow columns of the cached parse, and
            # the write streams the rest (on 10M rows: no 2 GB of silver rows sorted, spilled).
            replaced = cache(transform.superseded(narrowed))
            latest = transform.widen(transform.without(narrowed, replaced), batches)
            rebuild = transform.with_lateness(transform.typed(latest), wm_table)
        else:
            rebuild = transform.latest(fresh, order)
        # The batches going on (held ones are out of `stats`) rebuild the months of their
        # valid rows; no stored month is read.
        months = _valid_months(stats)
    else:
        # Months of stored versions of the fresh sale_ids: a sale that moves month leaves its
        # old month too.
        stored = _distinct(lake, existing.filter(existing.sale_id.isin(fresh.sale_id)).sale_month)
        if ranged:
            in_range = existing.filter(existing.sale_date.between(lo, hi))
            touched = fresh.select("sale_month").union(in_range.select("sale_month"))
            months = sorted(set(_distinct(lake, touched.sale_month)) | set(stored))
        else:
            # `fresh` is the batches' valid rows, whose months the statistics hold already.
            months = sorted(set(_valid_months(stats)) | set(stored))
        if not ranged and not stored:
            # No fresh sale_id is stored yet (the common late batch: new sales): rebuilding its
            # months would rewrite every stored row of them unchanged (latest(kept ∪ fresh) =
            # kept ∪ latest(fresh)), so the fresh rows' latest versions are appended instead.
            # A retried batch finds its own rows stored and takes the rebuild below.
            append = True
            rebuild = transform.latest(fresh, order)
        else:
            kept = transform.conform(
                existing.filter(existing.sale_month.isin(months)).mutate(_priority=0)
            )
            rebuild = transform.latest(kept.union(transform.conform(fresh)), order)

    # -- commits ---------------------------------------------------------------------------------
    ctx.report(2, 4, "silver: writing")
    dropped = sum(b.dropped for b in shares)
    # The rows the rebuild can hold: the new batches', plus those stored in rebuilt months.
    bound: int | None = sum(b.rows for b in shares)
    if not (full or first_load or append):
        in_months = None if ranged else lake.rows_in(SILVER_SALES.name, {"sale_month": months})
        bound = None if in_months is None else sum(b.rows for b in shares) + in_months
    written = _commit(
        lake,
        ctx,
        the_plan,
        SilverWrite(
            batch_ids=new_ids,
            new_bronze=new_bronze,
            new_parsed=new_parsed,
            rebuild=rebuild,
            months=months,
            months_before=months_before,
            quality=quality,
            stats=by_batch,
            watermarks=marks,
            dropped=dropped,
            rules=rules,
            append=append,
            rows=bound,
        ),
        commit,
        now,
    )
    ctx.report(4, 4, "silver: done")

    result.rows_in = sum(b.rows for b in shares)
    result.rows_out = written.rows
    result.rows_quarantined = dropped
    result.tables = written.tables
    result.metrics.update(
        affected_months=written.changed,
        batches=new_ids,
        silver_version=written.silver_version,
        **{
            rule.metric: sum(x[f"failed__{rule.name}"] or 0 for x in stats)
            for rule in rules.row_rules
            if rule.metric
        },
    )
    result.seconds = time.perf_counter() - started
    return result
