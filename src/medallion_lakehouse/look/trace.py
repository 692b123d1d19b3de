"""Every version of one sale from landing to gold, from the lineage every row carries.

A bronze record's sale_id is recomputed with silver's own transform (as the audit does), so
records of sources without an id column are found by their content hash too. Each version's
outcome follows the conservation rule: the current silver row of its sale_id (same batch and
line), a superseded version (silver holds a later one), quarantined (its rule and reason), or
pending (its batch is not processed by silver yet, or is held by the quality gate).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from medallion_lakehouse.bronze.contract import BRONZE_SALES, SOURCE_COLUMNS
from medallion_lakehouse.errors import MedallionError
from medallion_lakehouse.gold.tables import GOLD_TABLES
from medallion_lakehouse.gold.tables.daily_sales import DAILY_SALES
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.lazy_imports import ibis
from medallion_lakehouse.look import versions as dv
from medallion_lakehouse.silver import held, reference, transform
from medallion_lakehouse.silver import standardise as std
from medallion_lakehouse.silver.contract import SILVER_BATCHES, SILVER_QUARANTINE, SILVER_SALES
from medallion_lakehouse.silver.rules import RuleSet

if TYPE_CHECKING:
    import ibis.expr.types as ir

Outcome = Literal["current", "superseded", "quarantined", "pending"]
KEYS = ("_batch_id", "_source_line")
HASH_PREFIX = "h-"  # silver's id for a record without a source id (standardise.content_hash)


class TraceError(MedallionError):
    """The trace request itself is wrong (no key given, an ambiguous file name)."""

    exit_code = 2


@dataclass(frozen=True)
class Version:
    """One bronze record of the sale: where it came from and what silver made of it."""

    source_file: str
    source_line: int
    batch_id: str
    batch_seq: int | None
    ingested_at: str
    bronze_version: int | None  # the bronze/sales version that added its batch
    outcome: Outcome
    rule: str | None = None
    reason: str | None = None
    superseded_by: dict[str, Any] | None = None  # lineage of the current row
    raw: dict[str, Any] = field(default_factory=dict)  # the source columns as received


@dataclass(frozen=True)
class GoldRow:
    table: str
    key: dict[str, Any]
    version: int | None  # the table version that last rewrote the row's partition
    row: dict[str, Any]


@dataclass(frozen=True)
class Trace:
    sale_id: str | None
    versions: list[Version]
    silver: dict[str, Any] | None
    silver_version: int | None  # the silver/sales version that last rewrote the row's month
    gold: list[GoldRow]

    @property
    def found(self) -> bool:
        return bool(self.versions) or self.silver is not None

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON shape (docs/cli.md): JSON-ready values only."""
        return _jsonable(
            {
                "sale_id": self.sale_id,
                "versions": [v.__dict__ for v in self.versions],
                "silver": self.silver,
                "silver_version": self.silver_version,
                "gold": [g.__dict__ for g in self.gold],
            }
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def records(bronze: ir.Table, rules: RuleSet) -> ir.Table:
    """Bronze records with the sale_id silver gives them (`_sale_id`, null when a drop rule
    breaks them) and the cleaned source id (`p_sale_id`: a quarantined record is found by it)."""
    parsed = transform.parse(bronze, rules)
    ids = transform.typed(parsed).select(*KEYS, _sale_id="sale_id")
    kept = parsed.select("p_sale_id", *SOURCE_COLUMNS, *transform.LINEAGE)
    return kept.left_join(ids, list(KEYS)).select(*kept.columns, "_sale_id")


def candidates(bronze: ir.Table, sale_id: str, rules: RuleSet) -> ir.Table:
    """The bronze rows that can have this sale_id, found before the (costly) parse.

    A row with a source id gets exactly that id (trimmed); only a row without one gets a content
    hash, and every hash id starts with `h-`.
    """
    source_id = std.clean_text(transform.with_aliases(bronze, rules).sale_id)
    if sale_id.startswith(HASH_PREFIX):
        return bronze.filter((source_id == sale_id) | source_id.isnull())
    return bronze.filter(source_id == sale_id)


def file_matches(column: ir.StringValue, name: str, landing: str) -> ir.BooleanValue:
    """`name` as the landing file's path under landing, its bare name, or a path to it."""
    wanted = name.replace("\\", "/").strip()
    path = Path(wanted)
    if path.is_absolute():
        with contextlib.suppress(ValueError):  # a path outside landing is matched as given
            wanted = path.resolve().relative_to(Path(landing).resolve()).as_posix()
    wanted = wanted.removeprefix("./")
    return (column == wanted) | column.endswith("/" + wanted)


def trace(
    lake: Lake,
    *,
    sale_id: str | None = None,
    file: str | None = None,
    line: int | None = None,
) -> Trace:
    """The trace of a sale, given its id or a landing file and data line (1-based)."""
    if (sale_id is None) == (file is None) or (file is not None and line is None):
        raise TraceError("Give a SALE_ID, or --file NAME with --line N.")
    engine = lake.engine
    rules = reference.for_lake(lake)
    bronze = lake.read(BRONZE_SALES.name)
    wanted: str | None = sale_id
    seed: list[dict[str, Any]] = []
    if file is not None:
        assert line is not None
        # Filter before parsing: the standardisation runs on this one line, not on all of bronze.
        hit = records(
            bronze.filter(
                file_matches(bronze._source_file, file, lake.settings.landing_path)
                & (bronze._source_line == line)
            ),
            rules,
        )
        seed = engine.to_arrow(hit).to_pylist()
        if not seed:
            return Trace(None, [], None, None, [])
        files = sorted({r["_source_file"] for r in seed})
        if len(files) > 1:
            raise TraceError(
                f"--file {file!r} matches several landing files ({', '.join(files)}): give its "
                "path under the landing folder."
            )
        # A file changed under the same name is a new batch: its newest batch's record counts.
        newest = max(seed, key=_order)
        wanted = newest["_sale_id"] or newest["p_sale_id"]
    if wanted is not None:
        recs = records(candidates(bronze, wanted, rules), rules)
        found = engine.to_arrow(
            recs.filter((recs._sale_id == wanted) | (recs.p_sale_id == wanted))
        ).to_pylist()
    else:  # a quarantined record without any id: it is its own only version
        found = [max(seed, key=_order)]
    found.sort(key=_order)

    silver_rows = (
        engine.to_arrow(
            lake.read(SILVER_SALES.name).filter(lambda t: t.sale_id == wanted)
        ).to_pylist()
        if wanted is not None
        else []
    )
    current = silver_rows[0] if silver_rows else None
    quarantined = _quarantine_rows(lake, found)
    processed = set(
        lake.read_arrow(SILVER_BATCHES.name, columns=["batch_id"]).column(0).to_pylist()
    )
    holds = held.current(lake)
    bronze_versions: dict[str, int | None] = {}
    out: list[Version] = []
    for r in found:
        batch = r["_batch_id"]
        if batch not in bronze_versions:
            bronze_versions[batch] = _bronze_version(lake, batch)
        out.append(_version(r, current, quarantined, processed, holds, bronze_versions[batch]))

    silver_version = None
    gold: list[GoldRow] = []
    if current is not None:
        month = current["sale_month"]
        silver_version = dv.last_rewrite(
            lake.uri(SILVER_SALES.name), "sale_month", month, storage_options=lake.storage_options
        )
        gold = _gold_rows(lake, current)
    return Trace(
        sale_id=wanted if (current is not None or found) else None,
        versions=out,
        silver=current,
        silver_version=silver_version,
        gold=gold,
    )


def _order(r: dict[str, Any]) -> tuple[Any, ...]:
    """transform.VERSION_ORDER, oldest first (a null batch sequence sorts first, as in silver)."""
    seq = r["_batch_seq"]
    return (-1 if seq is None else seq, r["_ingested_at"], r["_source_line"], r["_batch_id"])


def _quarantine_rows(
    lake: Lake, found: list[dict[str, Any]]
) -> dict[tuple[str, int], dict[str, Any]]:
    if not found:
        return {}
    q = lake.read(SILVER_QUARANTINE.name)
    batches = sorted({r["_batch_id"] for r in found})
    lines = sorted({r["_source_line"] for r in found})
    rows = lake.engine.to_arrow(
        q.filter(q._batch_id.isin(batches) & q._source_line.isin(lines)).select(
            *KEYS, "rule", "reason"
        )
    ).to_pylist()
    return {(r["_batch_id"], r["_source_line"]): r for r in rows}


def _bronze_version(lake: Lake, batch_id: str) -> int | None:
    try:
        return dv.first_version(
            lake.uri(BRONZE_SALES.name),
            dv.holds_batch(batch_id),
            storage_options=lake.storage_options,
        )
    except KeyError:  # files written without column statistics: the version is unknown
        return None


def _version(
    r: dict[str, Any],
    current: dict[str, Any] | None,
    quarantined: dict[tuple[str, int], dict[str, Any]],
    processed: set[str],
    holds: dict[str, held.HeldBatch],
    bronze_version: int | None,
) -> Version:
    key = (r["_batch_id"], r["_source_line"])
    outcome: Outcome
    rule = reason = None
    by = None
    if key in quarantined:
        outcome, rule, reason = "quarantined", quarantined[key]["rule"], quarantined[key]["reason"]
    elif r["_batch_id"] not in processed:
        outcome = "pending"
        hold = holds.get(r["_batch_id"])
        reason = (
            f"batch {hold.state} by the quality gate: {hold.reason}"
            if hold is not None
            else "batch not processed by silver yet (`medallion run`)"
        )
    elif current is not None and (current["_batch_id"], current["_source_line"]) == key:
        outcome = "current"
    else:
        outcome = "superseded"
        if current is not None:
            by = {
                c: current[c] for c in ("_batch_id", "_batch_seq", "_source_file", "_source_line")
            }
    return Version(
        source_file=r["_source_file"],
        source_line=r["_source_line"],
        batch_id=r["_batch_id"],
        batch_seq=r["_batch_seq"],
        ingested_at=r["_ingested_at"].isoformat() if r["_ingested_at"] else "",
        bronze_version=bronze_version,
        outcome=outcome,
        rule=rule,
        reason=reason,
        superseded_by=by,
        raw={c: r[c] for c in SOURCE_COLUMNS},
    )


def feeds(table: str, sale: dict[str, Any]) -> bool:
    """Whether a silver row counts in a gold table's row: daily_sales counts every status (orders
    and per-status amounts); the other gold tables count completed sales only."""
    return table == DAILY_SALES.name or sale["status"] == "completed"


def _gold_rows(lake: Lake, sale: dict[str, Any]) -> list[GoldRow]:
    rows = []
    for gold in GOLD_TABLES:
        contract = gold.contract
        if not feeds(contract.name, sale) or not lake.exists(contract.name):
            continue
        key = {c: sale[c] for c in contract.key}
        t = lake.read(contract.name)
        match = t.filter(
            t.sale_month == sale["sale_month"],
            *[t[c] == ibis.literal(v) for c, v in key.items()],
        )
        found = lake.engine.to_arrow(match).to_pylist()
        if not found:
            continue
        version = dv.last_rewrite(
            lake.uri(contract.name), "sale_month", sale["sale_month"],
            storage_options=lake.storage_options,
        )  # fmt: skip
        rows.append(GoldRow(contract.name, key, version, found[0]))
    return rows + _customer_rows(lake, sale)


# Gold tables per customer (the churn model's): overwritten whole, as of a cutoff date.
CUSTOMER_TABLES = ("gold/customer_features", "gold/churn_scores")


def _customer_rows(lake: Lake, sale: dict[str, Any]) -> list[GoldRow]:
    """The customer's rows built from a cutoff on or after the sale (every status counts in
    some feature: return and cancel rates). Their version is the table's: each write replaces
    the whole table."""
    rows = []
    for name in CUSTOMER_TABLES:
        try:
            contract = lake.contract(name)
        except MedallionError:  # the ml extra's contracts are not installed
            continue
        if not lake.exists(name):
            continue
        t = lake.read(name)
        match = t.filter(t.customer_id == sale["customer_id"], t.as_of >= sale["sale_date"])
        for row in lake.engine.to_arrow(match).to_pylist():
            key = {c: row[c] for c in contract.key}
            rows.append(GoldRow(name, key, lake.version(name), row))
    return rows
