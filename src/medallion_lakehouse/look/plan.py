"""What the next `medallion run` would do, computed without writing anything or taking the lock.

Each part reuses the step's own functions: bronze's discovery, ledger and readers (new files are
parsed in memory with the lineage an ingest would give them), silver's pending batches, rules,
gate and transform, gold's month fingerprints. The replay part answers a different question:
if the rules (or their settings) changed since the last silver run, which processed records
would move between silver and the quarantine if their months were rebuilt from bronze now, and
how gold revenue per month would change.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from medallion_lakehouse import intents
from medallion_lakehouse.bronze import ingest as bronze_ingest
from medallion_lakehouse.bronze import readers
from medallion_lakehouse.bronze.contract import BRONZE_SALES
from medallion_lakehouse.engines import Engine
from medallion_lakehouse.gold import step as gold_step
from medallion_lakehouse.gold.tables import GOLD_TABLES
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.lazy_imports import ibis
from medallion_lakehouse.meta import QUALITY
from medallion_lakehouse.pipeline.context import StepContext
from medallion_lakehouse.silver import held, reference, transform
from medallion_lakehouse.silver import step as silver_step
from medallion_lakehouse.silver.contract import SILVER_BATCHES, SILVER_QUARANTINE, SILVER_SALES
from medallion_lakehouse.silver.rules import RuleSet, breaches

if TYPE_CHECKING:
    import ibis.expr.types as ir

FileAction = Literal["ingest", "skip", "defer", "fail"]
PLANNED = "planned:"  # batch id prefix of a landing file not ingested yet


@dataclass(frozen=True)
class FilePlan:
    source_file: str
    action: FileAction
    reason: str | None = None
    size_bytes: int = 0
    rows: int = 0  # bronze rows it would add
    rejects: int = 0  # lines it would send to bronze/sales_rejects


@dataclass(frozen=True)
class BatchPlan:
    batch_id: str
    source_file: str
    seq: int | None
    rows: int
    quarantined: int
    held: bool  # the quality gate would hold it (nothing of it committed)
    in_bronze: bool  # False: a landing file the bronze step would ingest first


@dataclass(frozen=True)
class Move:
    """Processed records that a rebuild from bronze with today's rules would place elsewhere."""

    direction: Literal["to_quarantine", "to_silver"]
    rule: str  # the rule that now catches them (to_quarantine) or that caught them (to_silver)
    rows: int


@dataclass(frozen=True)
class RevenueChange:
    sale_month: str
    revenue_now: Decimal
    revenue_replayed: Decimal

    @property
    def change(self) -> Decimal:
        return self.revenue_replayed - self.revenue_now


@dataclass
class Replay:
    rules_changed: bool
    changes: list[str] = field(default_factory=list)  # rule added / removed / changed, in words
    computed: bool = False
    moves: list[Move] = field(default_factory=list)
    months: list[str] = field(default_factory=list)  # months a replay would rebuild
    revenue: list[RevenueChange] = field(default_factory=list)


@dataclass
class Plan:
    files: list[FilePlan] = field(default_factory=list)
    # Landing files whose ingest a crash interrupted: bronze finishes them first (their batches
    # then reach silver too; they are not in `batches`, which reads the ledger).
    bronze_recovery: list[str] = field(default_factory=list)
    batches: list[BatchPlan] = field(default_factory=list)
    resumes_full_refresh: bool = False
    quarantined_by_rule: dict[str, int] = field(default_factory=dict)  # first drop rule broken
    rule_failures: dict[str, int] = field(default_factory=dict)  # every row rule, independently
    silver_months: list[str] = field(default_factory=list)
    gold_months: dict[str, list[str]] = field(default_factory=dict)
    replay: Replay | None = None
    seconds: float = 0.0

    @property
    def nothing_to_do(self) -> bool:
        return not (
            any(f.action == "ingest" for f in self.files)
            or self.bronze_recovery
            or self.batches
            or self.resumes_full_refresh
            or any(self.gold_months.values())
        )

    def as_dict(self) -> dict[str, Any]:
        replay = None
        if self.replay is not None:
            replay = {
                **self.replay.__dict__,
                "moves": [m.__dict__ for m in self.replay.moves],
                "revenue": [r.__dict__ | {"change": r.change} for r in self.replay.revenue],
            }
        return {
            "nothing_to_do": self.nothing_to_do,
            "files": [f.__dict__ for f in self.files],
            "bronze_recovery": self.bronze_recovery,
            "silver": {
                "batches": [b.__dict__ for b in self.batches],
                "resumes_full_refresh": self.resumes_full_refresh,
                "months": self.silver_months,
                "quarantined_by_rule": self.quarantined_by_rule,
                "rule_failures": self.rule_failures,
            },
            "gold": {"months": self.gold_months},
            "replay": replay,
            "seconds": round(self.seconds, 3),
        }


# -- bronze ----------------------------------------------------------------------------------
def plan_files(lake: Lake) -> tuple[list[FilePlan], list[pa.Table]]:
    """What the bronze step would do with each landing file, and the bronze rows of the new ones."""
    landing = Path(lake.settings.landing_path)
    options = readers.ReaderOptions.from_settings(lake.settings)
    found = bronze_ingest.discover(landing, options=options)
    known = bronze_ingest.known_files(lake)
    unchanged = {} if lake.settings.landing_verify else bronze_ingest.unchanged_files(lake)
    writing = bronze_ingest.open_for_writing(found)
    next_seq = _next_seq(lake)
    plans: list[FilePlan] = []
    rows: list[pa.Table] = []
    for link, why in found.refused:
        plans.append(FilePlan(_rel(link, landing), "skip", why))
    seen: set[str] = set()
    for path in found:
        name = _rel(path, landing)
        try:
            size, mtime = bronze_ingest.file_state(path)
        except OSError as exc:
            plans.append(FilePlan(name, "fail", f"cannot read file: {exc}"))
            continue
        if (name, size, mtime) in unchanged:
            plans.append(
                FilePlan(name, "skip", "already ingested (same path, size and mtime)", size)
            )
            continue
        if path.resolve() in writing:
            who = writing[path.resolve()]
            plans.append(FilePlan(name, "defer", f"open for writing by {who}", size))
            continue
        info = bronze_ingest.digest(path)
        if info.sha256 in known or info.sha256 in seen:
            plans.append(FilePlan(name, "skip", "already ingested (same sha256)", size))
            continue
        fmt = readers.file_format(path, options=options)
        if info.looks_binary and fmt != "parquet":
            plans.append(FilePlan(name, "fail", "binary content (NUL bytes)", size))
            continue
        try:
            parsed, report = readers.read_table(path, options=options)
        except readers.FileUnreadableError as exc:
            plans.append(FilePlan(name, "fail", str(exc), size))
            continue
        seen.add(info.sha256)
        age = time.time() - mtime / 1e9
        settle = lake.settings.landing_settle_seconds
        reason = (
            f"modified {age:.1f}s ago: the run waits until it is {settle:g}s old"
            if age < settle
            else None
        )
        now = datetime.now(UTC)
        lineage = bronze_ingest.Lineage(
            name, info.sha256, f"{PLANNED}{name}", now, next_seq + len(rows)
        )
        rows.append(bronze_ingest.bronze_rows(parsed, lineage))
        plans.append(FilePlan(name, "ingest", reason, size, parsed.num_rows, len(report.rejects)))
    return plans, rows


def _next_seq(lake: Lake) -> int:
    seqs = lake.read_arrow("_meta/ingested_files", columns=["seq"]).column(0).to_pylist()
    return max((int(s) for s in seqs if s is not None), default=0) + 1


def _rel(path: Path, landing: Path) -> str:
    try:
        return path.relative_to(landing).as_posix()
    except ValueError:
        return str(path)


# -- silver ----------------------------------------------------------------------------------
def _int(value: Any) -> int:
    return int(value or 0)


def plan(lake: Lake, *, replay: bool | None = None) -> Plan:
    """The plan of the next run. `replay`: None computes the replay only when rules changed."""
    started = time.perf_counter()
    engine = lake.engine
    result = Plan()
    result.files, new_rows = plan_files(lake)
    result.bronze_recovery = sorted(
        str(i.payload.get("source_file", i.intent_id))
        for i in intents.unfinished(lake, bronze_ingest.STEP, bronze_ingest.INTENT_KIND)
    )
    # Silver's own reading of what its next run processes (mode, pending batches, decisions).
    silver_plan = silver_step.plan(lake, StepContext(run_id="plan"))
    result.resumes_full_refresh = bool(silver_plan.interrupted)
    pending = silver_plan.pending
    decided = {b: state for state, ids in silver_plan.decided.items() for b in ids}
    bronze = lake.read(BRONZE_SALES.name)
    parts: list[ir.Table] = []
    if pending:
        parts.append(bronze.filter(bronze._batch_id.isin([b.batch_id for b in pending])))
    if new_rows:
        parts.append(engine.from_arrow(pa.concat_tables(new_rows)).select(*bronze.columns))
    files = {b.batch_id: (b.source_file, b.seq, True) for b in pending}
    for t in new_rows:
        if t.num_rows:
            batch = t.column("_batch_id")[0].as_py()
            files[batch] = (
                t.column("_source_file")[0].as_py(),
                t.column("_batch_seq")[0].as_py(),
                False,
            )
    rules = reference.for_lake(lake)
    if parts:
        incoming = parts[0] if len(parts) == 1 else parts[0].union(parts[1])
        whole = sorted(b for b, s in decided.items() if s == "quarantined")
        parsed = transform.quarantine_whole(transform.parse(incoming, rules), whole)
        stats = engine.to_arrow(transform.batch_stats(parsed, rules)).to_pylist()
        exempt = {b for b, s in decided.items() if s in ("accepted", "quarantined")}
        failing = {
            s["_batch_id"] for s in stats if s["_batch_id"] not in exempt and breaches(s, rules)
        }
        for s in sorted(stats, key=lambda s: (files[s["_batch_id"]][1] or -1, s["_batch_id"])):
            source, seq, in_bronze = files[s["_batch_id"]]
            result.batches.append(
                BatchPlan(s["_batch_id"], source, seq, _int(s["rows"]), _int(s["dropped"]),
                          s["_batch_id"] in failing, in_bronze)
            )  # fmt: skip
        go = parsed.filter(~parsed._batch_id.isin(sorted(failing) or [""]))
        result.rule_failures = {
            r.name: sum(
                _int(s[f"failed__{r.name}"]) for s in stats if s["_batch_id"] not in failing
            )
            for r in rules.row_rules
        }
        result.quarantined_by_rule = _count_by(
            engine, go.filter(go._drop_rule.notnull()), "_drop_rule"
        )
        result.silver_months = _affected_months(lake, transform.typed(go))
    silver_now = gold_step.pending_months(lake)
    result.gold_months = {
        table: sorted(set(months) | set(result.silver_months))
        for table, months in (silver_now or {t.contract.name: [] for t in GOLD_TABLES}).items()
    }
    result.replay = replay_plan(lake, force=replay, rules=rules)
    result.seconds = time.perf_counter() - started
    return result


def _count_by(engine: Engine, rows: ir.Table, column: str) -> dict[str, int]:
    counts = engine.to_arrow(rows.group_by(column).aggregate(n=rows.count())).to_pylist()
    return {r[column]: _int(r["n"]) for r in sorted(counts, key=lambda r: r[column])}


def _affected_months(lake: Lake, fresh: ir.Table) -> list[str]:
    """silver/step.py's rule: months of the fresh rows, plus months silver holds their ids in."""
    existing = lake.read(SILVER_SALES.name)
    touched = fresh.select("sale_month").union(
        existing.filter(existing.sale_id.isin(fresh.sale_id)).select("sale_month")
    )
    months = lake.engine.to_arrow(touched.distinct()).column(0).to_pylist()
    return sorted(m for m in months if m is not None)


# -- replay on rule change --------------------------------------------------------------------
def rule_changes(lake: Lake, rules: RuleSet | None = None) -> list[str]:
    """How today's silver rules (with the workspace's settings: severity, fail_share, reference
    data) differ from those the last silver run recorded (_meta/quality)."""
    rules = rules or reference.for_lake(lake)
    quality = lake.read_arrow(
        QUALITY.name, columns=["run_id", "table", "rule", "severity", "description", "threshold"]
    )
    rows = [r for r in quality.to_pylist() if r["table"] == SILVER_SALES.name]
    if not rows:
        return []
    last = max(r["run_id"] for r in rows)
    # The contract's table checks (unique key, not null) are recorded too; they are not rules.
    table_checks = {c.named(SILVER_SALES)[0] for c in SILVER_SALES.checks}
    # Freshness is recorded per run too; it is a check of the lake, not a rule of its rows.
    then = {
        r["rule"]: (r["severity"], r["description"], r["threshold"])
        for r in rows
        if r["run_id"] == last
        and r["rule"] not in table_checks
        and not r["rule"].startswith("freshness_")
    }
    now = {r.name: (r.rule.severity, r.rule.description, r.fail_share) for r in rules.resolved}
    changes = [f"rule {n} is new" for n in sorted(now.keys() - then.keys())]
    changes += [f"rule {n} was removed" for n in sorted(then.keys() - now.keys())]
    for n in sorted(now.keys() & then.keys()):
        if now[n][0] != then[n][0]:
            changes.append(f"rule {n}: severity {then[n][0]} -> {now[n][0]}")
        elif now[n][1] != then[n][1]:
            changes.append(f"rule {n}: its definition changed")
        elif then[n][2] is not None and now[n][2] != then[n][2]:
            # Lakes written before thresholds were recorded have none: not a change.
            changes.append(f"rule {n}: fail_share {then[n][2]:g} -> {now[n][2]}")
    return changes


def replay_plan(lake: Lake, *, force: bool | None = None, rules: RuleSet | None = None) -> Replay:
    """Replay processed bronze through today's rules and compare with live silver (when rules
    changed, or `force`); `force=False` never computes it."""
    rules = rules or reference.for_lake(lake)
    changes = rule_changes(lake, rules)
    out = Replay(rules_changed=bool(changes), changes=changes)
    if force is False or (force is None and not changes):
        return out
    out.computed = True
    engine = lake.engine
    processed = sorted(
        set(lake.read_arrow(SILVER_BATCHES.name, columns=["batch_id"]).column(0).to_pylist())
    )
    if not processed:
        return out
    holds = held.current(lake)
    whole = sorted(b for b, h in holds.items() if h.state == "quarantined")
    bronze = lake.read(BRONZE_SALES.name)
    parsed = transform.quarantine_whole(
        transform.parse(bronze.filter(bronze._batch_id.isin(processed)), rules), whole
    )
    keys = ["_batch_id", "_source_line"]
    quarantine = lake.read(SILVER_QUARANTINE.name).select(*keys, old_rule="rule")
    placed = (
        parsed.select(*keys, "_drop_rule")
        .left_join(quarantine, keys)
        .select(*keys, "_drop_rule", "old_rule")
    )
    to_q = placed.filter(placed._drop_rule.notnull() & placed.old_rule.isnull())
    to_s = placed.filter(placed._drop_rule.isnull() & placed.old_rule.notnull())
    for direction, rows, column in (
        ("to_quarantine", to_q, "_drop_rule"),
        ("to_silver", to_s, "old_rule"),
    ):
        for rule, n in _count_by(engine, rows, column).items():
            out.moves.append(Move(direction, rule, n))  # type: ignore[arg-type]
    replayed = transform.latest(
        transform.conform(
            transform.typed(parsed).mutate(is_late=ibis.literal(False), _priority=ibis.literal(1))
        )
    )
    live = lake.read(SILVER_SALES.name)
    now = _revenue(engine, live)
    then = _revenue(engine, replayed)
    out.revenue = [
        RevenueChange(m, now.get(m, Decimal(0)), then.get(m, Decimal(0)))
        for m in sorted(now.keys() | then.keys())
        if now.get(m, Decimal(0)) != then.get(m, Decimal(0))
    ]
    moved = to_q.union(to_s).select(*keys)
    months = (
        live.inner_join(moved, keys)
        .select("sale_month")
        .union(replayed.inner_join(moved, keys).select("sale_month"))
    )
    out.months = sorted(
        m for m in engine.to_arrow(months.distinct()).column(0).to_pylist() if m is not None
    )
    return out


def _revenue(engine: Engine, silver: ir.Table) -> dict[str, Decimal]:
    """Completed revenue per sale_month, as gold/daily_sales sums it."""
    completed = silver.filter(silver.status == "completed")
    rows = engine.to_arrow(
        completed.group_by("sale_month").aggregate(revenue=completed.total.sum())
    )
    return {r["sale_month"]: Decimal(r["revenue"] or 0) for r in rows.to_pylist()}
