"""Bronze rows -> parsed rows -> (silver candidates, quarantine rows); latest version wins.

Pure functions from Ibis tables to Ibis tables (no IO), so the same code runs on DuckDB and
Spark. `step.py` wires them to the lake.
"""

from __future__ import annotations

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from medallion_lakehouse.silver import standardise as std
from medallion_lakehouse.silver.contract import SILVER_QUARANTINE, SILVER_SALES
from medallion_lakehouse.silver.rules import (
    BATCH_QUARANTINED_RULE,
    ROW_RULES,
    first_failed,
    reason_of,
)

PRIORITY = "_priority"  # on equal lineage, a freshly computed row (1) beats a stored one (0)
# Columns that order the versions of one sale_id, latest first.
LINEAGE: tuple[str, ...] = (
    "_batch_id",
    "_batch_seq",
    "_source_file",
    "_source_line",
    "_ingested_at",
)
# Columns that order the versions of one sale_id, latest first. The lake's batch sequence comes
# first so that no wall clock decides; `_ingested_at` only orders batches of lakes written before
# the sequence existed (their `_batch_seq` is null, and nulls sort last).
VERSION_ORDER: tuple[str, ...] = (
    "_batch_seq",
    "_ingested_at",
    "_source_line",
    "_batch_id",
    PRIORITY,
)


def parse(bronze: ir.Table) -> ir.Table:
    """Bronze rows plus typed `p_*` columns and the first drop rule each row breaks (or NULL)."""
    # The store number is a column of its own first, so its regex runs once per row (an
    # inlined expression would run it in both the test and the value of the CASE).
    numbered = bronze.mutate(_store_number=std.store_number(bronze.store_id))
    parsed = numbered.mutate(
        p_sale_id=std.clean_text(numbered.sale_id),
        p_store_id=std.canonical_store(numbered._store_number),
        p_sale_date=std.sale_date(numbered.sale_date),
        p_quantity=std.quantity(numbered.quantity),
        p_customer_id=std.clean_text(numbered.customer_id),
        p_product=std.product(numbered.product),
        p_status=std.status(numbered.status),
        p_price=std.amount(numbered.price, std.PRICE_TYPE),
        p_total=std.amount(numbered.total, std.TOTAL_TYPE),
    )
    return parsed.mutate(_drop_rule=first_failed(parsed)).drop("_store_number")


def quarantine_whole(parsed: ir.Table, batch_ids: list[str]) -> ir.Table:
    """Send every row of these batches to the quarantine (an operator's decision about a batch
    the gate held), whatever its row rules say."""
    if not batch_ids:
        return parsed
    return parsed.mutate(
        _drop_rule=parsed._batch_id.isin(batch_ids).ifelse(
            ibis.literal(BATCH_QUARANTINED_RULE), parsed._drop_rule
        )
    )


def rule_failures(parsed: ir.Table) -> dict[str, ir.IntegerValue]:
    """One aggregate per row rule: how many rows break it."""
    return {f"failed__{r.name}": r.failed(parsed).cast("int64").sum() for r in ROW_RULES}


def batch_stats(parsed: ir.Table) -> ir.Table:
    """Per bronze batch: rows, dropped rows, newest valid sale_date, failures per rule."""
    valid = parsed._drop_rule.isnull()
    return parsed.group_by("_batch_id", "_batch_seq", "_ingested_at").aggregate(
        rows=parsed.count(),
        dropped=(~valid).cast("int64").sum(),
        max_sale_date=parsed.p_sale_date.max(where=valid),
        **rule_failures(parsed),
    )


def narrow(parsed: ir.Table) -> ir.Table:
    """Only what silver needs from parsed rows: typed values, lineage and the drop rule.

    Materialising this instead of every raw column halves the cost of caching a big batch;
    the few quarantined rows get their raw columns back from bronze (see `quarantine`).
    """
    typed_columns = [c for c in parsed.columns if c.startswith("p_")]
    return parsed.select(*typed_columns, *LINEAGE, "_drop_rule")


def quarantine(bronze: ir.Table, parsed: ir.Table, run_id: str) -> ir.Table:
    """Bronze rows that broke a drop rule (per `parsed`), as received, with rule and reason."""
    bad = parsed.filter(parsed._drop_rule.notnull()).select(
        q_batch="_batch_id", q_line="_source_line", rule="_drop_rule"
    )
    joined = bronze.inner_join(
        bad, [bronze._batch_id == bad.q_batch, bronze._source_line == bad.q_line]
    )
    return joined.mutate(reason=reason_of(joined.rule), run_id=ibis.literal(run_id)).select(
        *SILVER_QUARANTINE.column_names
    )


def typed(parsed: ir.Table) -> ir.Table:
    """Valid rows as silver columns (without is_late): repairs applied and flagged, sale_id set."""
    t = parsed.filter(parsed._drop_rule.isnull())
    price_imputed = t.p_price.isnull()
    unit_price = ibis.coalesce(t.p_price, std.imputed_price(t.p_total, t.p_quantity))
    # An imputed price was derived from the total, so the total stays the source of truth.
    total_recomputed = ~price_imputed & (
        t.p_total.isnull()
        | ((t.p_total - std.line_total(t.p_price, t.p_quantity)).abs() > std.TOTAL_TOLERANCE)
    )
    t = t.mutate(
        unit_price=unit_price.cast(std.PRICE_TYPE),
        price_imputed=price_imputed,
        total_recomputed=total_recomputed,
    )
    t = t.mutate(
        total=t.total_recomputed.ifelse(std.line_total(t.unit_price, t.p_quantity), t.p_total).cast(
            std.TOTAL_TYPE
        )
    )
    # Status is left out of the hash: a status update of an id-less sale is a new version of it.
    content = std.content_hash(
        t.p_sale_date,
        t.p_store_id,
        t.p_customer_id,
        t.p_product,
        t.p_quantity,
        t.unit_price,
        t.total,
    )
    return t.select(
        sale_id=ibis.coalesce(t.p_sale_id, content),
        sale_date=t.p_sale_date,
        sale_month=std.sale_month(t.p_sale_date),
        store_id=t.p_store_id,
        customer_id=t.p_customer_id,
        product=t.p_product,
        quantity=t.p_quantity,
        unit_price=t.unit_price,
        total=t.total,
        status=t.p_status,
        price_imputed=t.price_imputed,
        total_recomputed=t.total_recomputed,
        _batch_id=t._batch_id,
        _batch_seq=t._batch_seq,
        _source_file=t._source_file,
        _source_line=t._source_line,
        _ingested_at=t._ingested_at,
    )


def with_lateness(rows: ir.Table, watermarks: ir.Table) -> ir.Table:
    """Add is_late from a (batch_id, watermark) table: sale_date older than the watermark."""
    wm = watermarks.select(wm_batch_id="batch_id", wm_date="watermark")
    joined = rows.left_join(wm, rows._batch_id == wm.wm_batch_id)
    late = (joined.sale_date < joined.wm_date).fill_null(False)
    return conform(joined.mutate(is_late=late))


def conform(rows: ir.Table) -> ir.Table:
    """Silver columns cast to the contract's types (plus _priority), so unions line up.

    Engines infer different precisions for the same decimal arithmetic (Spark: decimal(22,2)).
    """
    columns = [
        rows[f.name].cast(dt.DataType.from_pyarrow(f.type)).name(f.name)
        for f in SILVER_SALES.schema
    ]
    if PRIORITY in rows.columns:
        columns.append(rows[PRIORITY].cast("int8").name(PRIORITY))
    return rows.select(*columns)


def latest(rows: ir.Table) -> ir.Table:
    """One row per sale_id: the latest by VERSION_ORDER (batch sequence first)."""
    rank = ibis.row_number().over(
        group_by=rows.sale_id,
        order_by=[ibis.desc(rows[c], nulls_first=False) for c in VERSION_ORDER],
    )
    ranked = rows.mutate(_rank=rank)
    return ranked.filter(ranked._rank == 0).select(*SILVER_SALES.column_names)
