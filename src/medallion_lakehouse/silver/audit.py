"""Conservation audit: every processed bronze record is in exactly one place.

A bronze record of a batch the silver ledger lists is either the current silver row of its
sale_id (same lineage), a superseded version (silver holds a later version of its sale_id), or a
quarantine row (same lineage). Records of batches not yet processed are *pending*, reported
apart. The audit recomputes each record's sale_id with the same transform silver uses, so a
silver row that does not match its bronze record is caught too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from medallion_lakehouse.bronze.contract import BRONZE_SALES
from medallion_lakehouse.engines.cache import StepCache
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.lazy_imports import ibis
from medallion_lakehouse.meta import INGESTED_FILES
from medallion_lakehouse.silver import held, reference, transform
from medallion_lakehouse.silver.contract import SILVER_BATCHES, SILVER_QUARANTINE, SILVER_SALES
from medallion_lakehouse.silver.rules import RuleSet

if TYPE_CHECKING:
    import ibis.expr.types as ir


@dataclass
class AuditReport:
    bronze_rows: int = 0  # rows of processed batches
    current: int = 0
    superseded: int = 0
    quarantined: int = 0
    pending_batches: list[str] = field(default_factory=list)
    pending_rows: int = 0
    # Held by the quality gate (awaiting a decision, or dropped by an operator): accounted for,
    # not pending, and not silver's to place.
    held_batches: list[str] = field(default_factory=list)
    dropped_batches: list[str] = field(default_factory=list)
    silver_rows: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


KEYS = ("_batch_id", "_source_line")


def records(bronze: ir.Table, rules: RuleSet) -> ir.Table:
    """One row per bronze record: its keys, version order and the sale_id silver's transform
    gives it (NULL for a record a drop rule sends to the quarantine).

    Only these five columns leave the parse: the audit joins 10M-row tables on them, and every
    other parsed column would ride along through each join (or sit in a cache).
    """
    parsed = transform.parse(bronze, rules)
    ids = transform.typed(parsed).select(*KEYS, "sale_id")
    rows = parsed.select(*KEYS, "_batch_seq", "_ingested_at")
    return rows.left_join(ids, list(KEYS)).select(*rows.columns, "sale_id")


def classify(records: ir.Table, silver: ir.Table, quarantine: ir.Table) -> ir.Table:
    """One row per record (see `records`) with flags in_silver / superseded / in_quarantine
    (0/1 counts)."""
    cur = silver.select(
        c_sale_id="sale_id",
        c_batch="_batch_id",
        c_seq="_batch_seq",
        c_line="_source_line",
        c_at="_ingested_at",
    )
    quar = quarantine.group_by(*KEYS).aggregate(q_count=quarantine.count())
    quar = quar.select(q_batch="_batch_id", q_line="_source_line", q_count="q_count")
    first = records.left_join(cur, records.sale_id == cur.c_sale_id).select(
        *records.columns, *cur.columns
    )
    joined = first.left_join(
        quar, [first._batch_id == quar.q_batch, first._source_line == quar.q_line]
    ).select(*first.columns, "q_count")
    same = (joined.c_batch == joined._batch_id) & (joined.c_line == joined._source_line)
    # The current row is a later version in silver's own order (transform.VERSION_ORDER).
    later = _after(
        [joined.c_seq.fill_null(-1), joined.c_at, joined.c_line, joined.c_batch],
        [
            joined._batch_seq.fill_null(-1),
            joined._ingested_at,
            joined._source_line,
            joined._batch_id,
        ],
    )
    return joined.select(
        *KEYS,
        "sale_id",
        in_silver=same.fill_null(False).cast("int64"),
        superseded=(~same & later).fill_null(False).cast("int64"),
        in_quarantine=joined.q_count.fill_null(0).cast("int64"),
    )


def _after(left: list[ir.Value], right: list[ir.Value]) -> ir.BooleanValue:
    """Whether `left` sorts after `right`, compared column by column."""
    head_l, head_r = left[0], right[0]
    if len(left) == 1:
        return head_l > head_r
    return (head_l > head_r) | ((head_l == head_r) & _after(left[1:], right[1:]))


def audit(lake: Lake) -> AuditReport:
    """Check conservation and uniqueness; the report lists every violation in words."""
    # Nothing the audit computes depends on row order: its counts are aggregates and its
    # samples are sorted.
    with lake.engine.unordered(), StepCache(lake.engine) as cache:
        return _audit(lake, cache)


def _audit(lake: Lake, cache: StepCache) -> AuditReport:
    engine = lake.engine
    report = AuditReport()
    processed = sorted(
        set(lake.read_arrow(SILVER_BATCHES.name, columns=["batch_id"]).column(0).to_pylist())
    )
    complete = lake.read_arrow(INGESTED_FILES.name, columns=["batch_id"]).column(0).to_pylist()
    holds = held.current(lake)
    unprocessed = set(complete) - set(processed)
    state = {b: holds[b].state for b in unprocessed if b in holds}
    report.held_batches = sorted(b for b, st in state.items() if st == "held")
    report.dropped_batches = sorted(b for b, st in state.items() if st == "dropped")
    report.pending_batches = sorted(
        unprocessed - set(report.held_batches) - set(report.dropped_batches)
    )
    bronze = lake.read(BRONZE_SALES.name)
    silver = lake.read(SILVER_SALES.name)
    quarantine = lake.read(SILVER_QUARANTINE.name)
    if report.pending_batches:
        report.pending_rows = engine.count(
            bronze.filter(bronze._batch_id.isin(report.pending_batches))
        )
    done = bronze.filter(bronze._batch_id.isin(processed or [""]))

    # Two materialisations, each holding one big hash table: the records (bronze joined with
    # its own sale_ids on the keys; the parse, regexes and a sha256 per record, is paid here
    # once), then their flags (the records joined with silver and the quarantine), which every
    # count and check below reads. Doing both joins in one query ran out of memory at 10M rows.
    rows = cache(records(done, reference.for_lake(lake)))
    flags = cache(classify(rows, silver, quarantine))
    cache.drop(rows)
    places = flags.in_silver + flags.superseded + flags.in_quarantine
    summary = engine.to_arrow(
        flags.aggregate(
            bronze_rows=flags.count(),
            current=flags.in_silver.sum(),
            superseded=flags.superseded.sum(),
            quarantined=(flags.in_quarantine > 0).cast("int64").sum(),
            nowhere=(places == 0).cast("int64").sum(),
            twice=(places > 1).cast("int64").sum(),
        )
    ).to_pylist()[0]
    summary = {k: int(v or 0) for k, v in summary.items()}
    report.bronze_rows = summary["bronze_rows"]
    report.current = summary["current"]
    report.superseded = summary["superseded"]
    report.quarantined = summary["quarantined"]
    report.silver_rows = engine.count(silver)
    v = report.violations
    if summary["nowhere"]:
        sample = _sample(engine, flags.filter(places == 0))
        v.append(
            f"{summary['nowhere']:,} processed bronze record(s) are neither in silver, superseded "
            f"nor quarantined, e.g. {sample}"
        )
    if summary["twice"]:
        sample = _sample(engine, flags.filter(places > 1))
        v.append(f"{summary['twice']:,} bronze record(s) are in more than one place, e.g. {sample}")

    dup = silver.group_by("sale_id").aggregate(n=silver.count()).filter(lambda t: t.n > 1)
    if n := engine.count(dup):
        v.append(
            f"{n:,} sale_id(s) appear more than once in silver/sales, e.g. {_sample(engine, dup)}"
        )

    # Every silver row must be the current version of a bronze record it was built from.
    keys = list(KEYS)
    built = flags.filter(flags.in_silver == 1).select(*keys)
    pending = bronze.filter(bronze._batch_id.isin(report.pending_batches or [""])).select(*keys)
    orphans = silver.anti_join(built, keys).anti_join(pending, keys)
    if n := engine.count(orphans):
        v.append(
            f"{n:,} silver row(s) do not match a processed bronze record with the same sale_id, "
            f"e.g. {_sample(engine, orphans.select('sale_id', *keys))}"
        )
    unexplained = quarantine.filter(
        quarantine.rule.isnull()
        | (quarantine.rule.strip() == "")
        | quarantine.reason.isnull()
        | (quarantine.reason.strip() == "")
    )
    if n := engine.count(unexplained):
        v.append(f"{n:,} quarantine row(s) have no rule or no reason")
    stray = quarantine.anti_join(done.select(*keys), keys).anti_join(pending, keys)
    if n := engine.count(stray):
        v.append(f"{n:,} quarantine row(s) do not come from a bronze record")
    return report


def _sample(engine: Any, expr: ir.Table, n: int = 3) -> str:
    rows = engine.to_arrow(expr.order_by(*[ibis.asc(c) for c in expr.columns]).limit(n))
    return "; ".join(", ".join(f"{k}={val}" for k, val in row.items()) for row in rows.to_pylist())
