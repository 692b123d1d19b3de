"""The report's queries: one function per section, each returning a small pandas frame.

Aggregation happens on the engine (Ibis over `lake.read`), so only a few hundred rows ever reach
pandas whatever the table sizes. A function returns None when the table it needs has not been
written yet; the report then shows a "no data yet" placeholder instead of failing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from medallion_lakehouse.bronze.contract import BRONZE_REJECTS, BRONZE_SALES
from medallion_lakehouse.contracts import TableContract, all_contracts
from medallion_lakehouse.errors import TableNotFoundError
from medallion_lakehouse.gold.tables.daily_sales import DAILY_SALES
from medallion_lakehouse.gold.tables.product_store_daily import PRODUCT_STORE_DAILY
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.lazy_imports import ibis
from medallion_lakehouse.meta import INGESTED_FILES, QUALITY, RUNS
from medallion_lakehouse.ml import card as cards
from medallion_lakehouse.ml.contract import MODEL_METRICS
from medallion_lakehouse.silver import reference
from medallion_lakehouse.silver.contract import SILVER_BATCHES, SILVER_QUARANTINE, SILVER_SALES
from medallion_lakehouse.status import TableStatus, table_status

if TYPE_CHECKING:
    import ibis.expr.types as ir


def lineage_columns(
    contracts: Sequence[TableContract] | None = None,
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The data tables as columns of the lineage graph, left to right, from the contracts'
    `upstream`: a table sits one column right of the furthest table it is built from. A column
    is labelled by its tables' layer, or by the step that writes them when an earlier column
    already has that layer (gold/churn_scores is gold written by ml)."""
    tables = [c for c in (contracts or all_contracts()) if c.layer != "_meta"]
    by_name = {c.name: c for c in tables}
    depth: dict[str, int] = {}

    def depth_of(name: str) -> int:
        if name not in depth:
            ups = [u for u in by_name[name].upstream if u in by_name]
            depth[name] = 1 + max((depth_of(u) for u in ups), default=-1)
        return depth[name]

    # A table built from no table (silver/products, from a reference file) sits with the
    # first column of its own layer, not with bronze.
    built = {c.name: depth_of(c.name) for c in tables if c.upstream or c.layer == "bronze"}
    for c in tables:
        if c.name not in built:
            peers = [d for n, d in built.items() if by_name[n].layer == c.layer]
            depth[c.name] = min(peers, default=depth_of(c.name))
    columns: dict[int, list[str]] = {}
    for c in tables:
        columns.setdefault(depth_of(c.name), []).append(c.name)
    labelled: list[tuple[str, tuple[str, ...]]] = []
    for _, names in sorted(columns.items()):
        layers = {by_name[n].layer for n in names}
        label = layers.pop() if len(layers) == 1 else "/".join(sorted(layers))
        if any(label == used for used, _ in labelled):
            steps = {by_name[n].step for n in names}
            label = steps.pop() if len(steps) == 1 else label
        labelled.append((label, tuple(names)))
    return tuple(labelled)


def lineage_edges(
    contracts: Sequence[TableContract] | None = None,
) -> tuple[tuple[str, str], ...]:
    """(upstream, downstream) pairs of the lineage graph, from the contracts."""
    return tuple(
        (u, c.name)
        for c in (contracts or all_contracts())
        if c.layer != "_meta"
        for u in c.upstream
    )


# Operational tables shown in the overview beside the data tables.
META_TABLES: tuple[str, ...] = (
    INGESTED_FILES.name,
    RUNS.name,
    QUALITY.name,
    MODEL_METRICS.name,
)
# gold/daily_sales amounts drawn beside revenue (unknown-status sales are rare and left out).
OTHER_AMOUNTS: tuple[str, ...] = ("pending_amount", "cancelled_amount", "returned_amount")


def read(lake: Lake, name: str) -> ir.Table | None:
    """The table as Ibis, or None if it has not been written yet."""
    if lake.version(name) is None:
        return None
    try:
        return lake.read(name)
    except TableNotFoundError:
        # A table on disk whose contract is not registered (yet): its Delta schema is enough.
        return lake.engine.read_delta(lake.uri(name), schema=pa.schema([]))


def to_pandas(lake: Lake, expr: ir.Table) -> pd.DataFrame:
    """Evaluate a small expression on the engine and bring it to pandas."""
    return lake.engine.to_arrow(expr).to_pandas()


# -- overview ------------------------------------------------------------------------------
def overview(lake: Lake) -> list[TableStatus]:
    """Version, rows and last commit of every table in the lineage graph and of _meta."""
    names = [n for _, tables in lineage_columns() for n in tables] + list(META_TABLES)
    return [table_status(lake, n) for n in names]


# -- bronze -> silver -> quarantine funnel -----------------------------------------------------
def _count_by_batch(lake: Lake, name: str, alias: str) -> pd.DataFrame:
    table = read(lake, name)
    if table is None:
        return pd.DataFrame(
            {"_batch_id": pd.Series(dtype="string"), alias: pd.Series(dtype="int64")}
        )
    return to_pandas(lake, table.group_by("_batch_id").agg(**{alias: table.count()}))


def funnel(lake: Lake, *, runs: int = 12) -> pd.DataFrame | None:
    """Per ingest run: bronze records and where they ended up (silver, superseded, quarantine).

    Conservation (DESIGN.md section 4) makes `superseded = bronze - silver - quarantined`: the
    older versions and exact re-sends of a sale that a later record replaced.
    """
    bronze = _count_by_batch(lake, BRONZE_SALES.name, "bronze")
    if bronze.empty:
        return None
    frame = bronze
    for name, alias in (
        (SILVER_SALES.name, "silver"),
        (SILVER_QUARANTINE.name, "quarantined"),
        (BRONZE_REJECTS.name, "rejected_lines"),
    ):
        frame = frame.merge(_count_by_batch(lake, name, alias), on="_batch_id", how="outer")
    files = read(lake, INGESTED_FILES.name)
    if files is not None:
        runs_of = to_pandas(lake, files.select("batch_id", "run_id")).rename(
            columns={"batch_id": "_batch_id"}
        )
        frame = frame.merge(runs_of, on="_batch_id", how="left")
    else:
        frame["run_id"] = frame["_batch_id"]
    frame["run_id"] = frame["run_id"].fillna(frame["_batch_id"])
    counts = ["bronze", "silver", "quarantined", "rejected_lines"]
    frame[counts] = frame[counts].fillna(0).astype("int64")
    # A batch silver has not processed yet is "not processed", not "superseded".
    ledger = read(lake, SILVER_BATCHES.name)
    if ledger is not None and "batch_id" in ledger.columns:
        done = set(to_pandas(lake, ledger.select("batch_id")).batch_id)
        processed = frame["_batch_id"].isin(done)
    else:
        processed = pd.Series(lake.version(SILVER_SALES.name) is not None, index=frame.index)
    frame["not_processed"] = frame["bronze"].where(~processed, 0)
    frame["superseded"] = (frame["bronze"] - frame["silver"] - frame["quarantined"]).where(
        processed, 0
    )
    totals = [*counts, "superseded", "not_processed"]
    per_run = frame.groupby("run_id", as_index=False).agg(
        files=("_batch_id", "nunique"), **{c: (c, "sum") for c in totals}
    )
    return per_run.sort_values("run_id").tail(runs).reset_index(drop=True)


# -- quarantine ---------------------------------------------------------------------------------
def quarantine_reasons(lake: Lake, *, top: int = 12) -> pd.DataFrame | None:
    """Quarantined rows per rule and reason, most frequent first."""
    table = read(lake, SILVER_QUARANTINE.name)
    if table is None:
        return None
    keys = [c for c in ("rule", "reason") if c in table.columns]
    if not keys:
        return None
    expr = table.group_by(keys).agg(rows=table.count()).order_by(ibis.desc("rows")).limit(top)
    return to_pandas(lake, expr)


# -- data quality -------------------------------------------------------------------------------
def quality(lake: Lake, *, runs: int = 10) -> pd.DataFrame | None:
    """Rule results of the most recent runs (one row per run, table, rule)."""
    table = read(lake, QUALITY.name)
    if table is None:
        return None
    recent = table.select("run_id").distinct().order_by(ibis.desc("run_id")).limit(runs)
    expr = table.semi_join(recent, "run_id").order_by("run_id", "table", "rule")
    frame = to_pandas(lake, expr)
    frame["failed_share"] = (
        frame["rows_failed"] / frame["rows_checked"].where(frame["rows_checked"] > 0)
    ).fillna(0.0)
    return frame


# -- gold ---------------------------------------------------------------------------------------
def daily_revenue(lake: Lake) -> pd.DataFrame | None:
    """Completed revenue per day with the pending, cancelled and returned amounts."""
    table = read(lake, DAILY_SALES.name)
    if table is None:
        return None
    expr = table.select(
        sale_date=table.sale_date.cast("date"),
        revenue=table.revenue.cast("float64"),
        **{c.removesuffix("_amount"): table[c].cast("float64") for c in OTHER_AMOUNTS},
    ).order_by("sale_date")
    return to_pandas(lake, expr)


def _psd(lake: Lake) -> tuple[ir.Table, str] | None:
    table = read(lake, PRODUCT_STORE_DAILY.name)
    return None if table is None else (table, "revenue")


def revenue_by_product(lake: Lake) -> pd.DataFrame | None:
    """Total revenue per product, largest first."""
    found = _psd(lake)
    if found is None:
        return None
    table, revenue = found
    expr = (
        table.group_by("product")
        .agg(revenue=table[revenue].cast("float64").sum())
        .order_by(ibis.desc("revenue"))
    )
    return to_pandas(lake, expr)


def revenue_by_store(lake: Lake, *, n: int = 10) -> pd.DataFrame | None:
    """The `n` stores with the most and the `n` with the least revenue (`rank_group` top|bottom)."""
    found = _psd(lake)
    if found is None:
        return None
    table, revenue = found
    per_store = table.group_by("store_id").agg(revenue=table[revenue].cast("float64").sum())
    top = to_pandas(lake, per_store.order_by(ibis.desc("revenue"), "store_id").limit(n))
    bottom = to_pandas(lake, per_store.order_by("revenue", "store_id").limit(n))
    top["rank_group"] = "top"
    bottom["rank_group"] = "bottom"
    # With fewer than 2n stores the two lists overlap; show each store once, in the top list.
    bottom = bottom[~bottom["store_id"].isin(top["store_id"])]
    return pd.concat([top, bottom], ignore_index=True)


@dataclass(frozen=True)
class Coverage:
    """How much of a reference table (silver/products, silver/stores) has sales in gold."""

    what: str  # products | stores
    source: str  # the reference file, or `default`
    known: int
    sold: int
    unsold: list[str]  # a sample, sorted


def reference_coverage(lake: Lake, *, sample: int = 10) -> list[Coverage]:
    """Catalogue products and known stores with no completed sale in gold/product_store_daily:
    a reference file that lists what the feed never sells (or spells differently)."""
    gold = read(lake, PRODUCT_STORE_DAILY.name)
    if gold is None:
        return []
    out = []
    for name, key in ((reference.PRODUCTS.name, "product"), (reference.STORES.name, "store_id")):
        ref = read(lake, name)
        if ref is None:
            continue
        sold = gold.filter(gold.orders > 0).select(key).distinct()
        unsold = ref.anti_join(sold, key).select(key)
        known = int(lake.engine.scalar(ref.count()))
        missing = int(lake.engine.scalar(unsold.count()))
        names = to_pandas(lake, unsold.order_by(key).limit(sample))[key].tolist()
        src = lake.engine.to_arrow(ref.select("source").limit(1)).column(0).to_pylist()
        out.append(
            Coverage(
                key.removesuffix("_id") + "s", (src or ["?"])[0], known, known - missing, names
            )
        )
    return out


# -- late arrivals ------------------------------------------------------------------------------
def late_arrivals(lake: Lake, *, batches: int = 30) -> pd.DataFrame | None:
    """Silver rows per ingested batch, split into on-time and late (`is_late`)."""
    table = read(lake, SILVER_SALES.name)
    if table is None:
        return None
    aggs: dict[str, ir.Value] = {
        "ingested_at": table._ingested_at.min(),
        "rows": table.count(),
        "late": table.is_late.cast("int64").sum(),
    }
    if "_source_file" in table.columns:
        aggs["source_file"] = table._source_file.min()
    expr = table.group_by("_batch_id").agg(**aggs).order_by(ibis.desc("ingested_at")).limit(batches)
    frame = to_pandas(lake, expr).sort_values("ingested_at").reset_index(drop=True)
    frame["late"] = frame["late"].fillna(0).astype("int64")
    frame["on_time"] = frame["rows"] - frame["late"]
    return frame


# -- runs ---------------------------------------------------------------------------------------
def run_durations(lake: Lake, *, runs: int = 15) -> pd.DataFrame | None:
    """Seconds per step of the most recent runs (one row per run, one column per step)."""
    table = read(lake, RUNS.name)
    if table is None:
        return None
    recent = table.select("run_id").distinct().order_by(ibis.desc("run_id")).limit(runs)
    expr = table.semi_join(recent, "run_id").select("run_id", "step", "status", "seconds")
    return to_pandas(lake, expr).sort_values(["run_id", "step"]).reset_index(drop=True)


# -- churn ---------------------------------------------------------------------------------------
@dataclass
class Curve:
    """One ROC or PR curve: x and y points and its area."""

    name: str
    x: list[float]
    y: list[float]
    area: float | None = None


@dataclass
class ChurnCurves:
    roc: list[Curve]
    pr: list[Curve]
    prevalence: float | None  # positive share: the PR curve of a random guess
    source: str  # file the curves came from
    metrics: dict[str, Any] = field(default_factory=dict)


def churn_curves(lake: Lake) -> ChurnCurves | None:
    """ROC and PR curves of the model in use and its baseline (`<latest>/curves.json`).

    Only the folder `latest` names (the ml step moves it after the model's metrics are
    committed): a folder left by an interrupted training is never shown as the model.
    """
    try:
        path = cards.latest_model_dir(lake.settings.models_path) / "curves.json"
    except cards.ModelNotFoundError:
        return None
    if not path.is_file():
        return None
    try:
        parsed = parse_curves(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError):
        return None
    if parsed is not None:
        parsed.source = path.parent.name
        parsed.prevalence = _test_churn_rate(lake, parsed.source) or parsed.prevalence
    return parsed


def parse_curves(doc: dict[str, Any]) -> ChurnCurves | None:
    """Curves from the ML step's curves.json: `{model: {roc: {fpr, tpr}, pr: {...}, roc_auc}}`."""
    roc: list[Curve] = []
    pr: list[Curve] = []
    for name, entry in doc.items():
        if not isinstance(entry, dict):
            continue
        points = entry.get("roc") or {}
        if "fpr" in points and "tpr" in points:
            roc.append(
                Curve(name, _floats(points["fpr"]), _floats(points["tpr"]), _area(entry, "roc_auc"))
            )
        points = entry.get("pr") or {}
        if "recall" in points and "precision" in points:
            pr.append(
                Curve(
                    name,
                    _floats(points["recall"]),
                    _floats(points["precision"]),
                    _area(entry, "pr_auc"),
                )
            )
    if not roc and not pr:
        return None
    metrics = {k: v for k, v in doc.items() if isinstance(v, int | float | str)}
    return ChurnCurves(roc, pr, _prevalence(pr), "", metrics)


def _floats(values: Any) -> list[float]:
    return [float(v) for v in values]


def _area(entry: dict[str, Any], key: str) -> float | None:
    value = entry.get(key)
    return float(value) if isinstance(value, int | float) else None


def _prevalence(pr: list[Curve]) -> float | None:
    # A PR curve's point at recall 1 (threshold below every score) has precision = positive share.
    for curve in pr:
        full = [p for r, p in zip(curve.x, curve.y, strict=True) if r >= 1.0]
        if full:
            return min(full)
    return None


def _test_churn_rate(lake: Lake, model_version: str) -> float | None:
    table = read(lake, MODEL_METRICS.name)
    if table is None:
        return None
    expr = table.filter(table.model_version == model_version).test_churn_rate.max()
    value = lake.engine.scalar(expr)
    return None if value is None or pd.isna(value) else float(value)


def model_metrics(lake: Lake, *, rows: int = 10) -> pd.DataFrame | None:
    """The newest rows of _meta/model_metrics, as the ML step wrote them."""
    table = read(lake, MODEL_METRICS.name)
    if table is None:
        return None
    return to_pandas(lake, table.order_by(ibis.desc("trained_at")).limit(rows))
