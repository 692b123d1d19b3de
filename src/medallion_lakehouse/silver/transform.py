"""Bronze rows -> parsed rows -> (silver candidates, quarantine rows); latest version wins.

Pure functions from Ibis tables to Ibis tables (no IO), so the same code runs on DuckDB and
Spark. `step.py` wires them to the lake.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from medallion_lakehouse.lazy_imports import ibis
from medallion_lakehouse.silver import standardise as std
from medallion_lakehouse.silver.contract import SILVER_QUARANTINE, SILVER_SALES
from medallion_lakehouse.silver.rules import (
    BATCH_QUARANTINED_RULE,
    RuleSet,
    first_failed,
    reason_of,
)

if TYPE_CHECKING:
    import ibis.expr.types as ir

# Up to this many products, a CASE maps spellings to the catalogue's (cheapest for a handful);
# a bigger catalogue is a small table joined on the case-folded name (a CASE of 4,000 branches
# is tried branch by branch on every row).
CASE_CATALOGUE_LIMIT = 64

PRIORITY = "_priority"  # on equal lineage, a freshly computed row (1) beats a stored one (0)
# Columns that order the versions of one sale_id, latest first.
LINEAGE: tuple[str, ...] = (
    "_batch_id",
    "_batch_seq",
    "_source_file",
    "_source_line",
    "_ingested_at",
)
# The lineage columns every row of a batch shares (`_source_line` is the row's own).
BATCH_LINEAGE: tuple[str, ...] = ("_batch_id", "_batch_seq", "_source_file", "_ingested_at")
BATCH_CODE = "_batch_code"
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
# The same order when every batch has a sequence number: one batch per number, so equal
# numbers mean one batch, whose time and id are equal too. The window that picks the latest
# versions sorts on fewer keys.
SEQUENCED_ORDER: tuple[str, ...] = ("_batch_seq", "_source_line", PRIORITY)


def with_aliases(bronze: ir.Table, rules: RuleSet) -> ir.Table:
    """Bronze rows with each aliased source column filled from `_rescued_data` where the file
    had no such column (bronze keeps the file's own names; the mapping happens here)."""
    filled = {
        column: ibis.coalesce(
            bronze[column], *(std.json_member(bronze._rescued_data, k) for k in keys)
        )
        for column, keys in rules.aliases.items()
        if keys
    }
    return bronze.mutate(**filled) if filled else bronze


def _products(numbered: ir.Table, rules: RuleSet) -> ir.Table:
    """`p_product` (catalogue spelling, else as sent) and `p_product_known` for each row."""
    if len(rules.catalogue) <= CASE_CATALOGUE_LIMIT:
        product = std.product(numbered.product, rules.catalogue)
        return numbered.mutate(
            p_product=product, p_product_known=std.in_catalogue(product, rules.catalogue)
        )
    catalogue = (
        rules.catalogue_table
        if rules.catalogue_table is not None
        else ibis.memtable(rules.catalogue_arrow())
    )
    keyed = numbered.mutate(_cat_lookup=std.clean_text(numbered.product).lower())
    joined = keyed.left_join(catalogue, keyed._cat_lookup == catalogue._cat_key)
    joined = joined.select(*keyed.columns, "_cat_name")
    return joined.mutate(
        p_product=ibis.coalesce(joined._cat_name, std.clean_text(joined.product)),
        p_product_known=joined._cat_name.notnull(),
    ).drop("_cat_lookup", "_cat_name")


def parse(bronze: ir.Table, rules: RuleSet) -> ir.Table:
    """Bronze rows plus typed `p_*` columns and the first drop rule each row breaks (or NULL)."""
    bronze = with_aliases(bronze, rules)
    # The store number is a column of its own first, so its regex runs once per row (an
    # inlined expression would run it in both the test and the value of the CASE).
    numbered = bronze.mutate(_store_number=std.store_number(bronze.store_id))
    numbered = _products(numbered, rules)
    extra = (
        {"p_store_sent": std.store_as_sent(numbered.store_id, numbered._store_number)}
        if rules.store_kept_as_sent
        else {}
    )
    parsed = numbered.mutate(
        p_sale_id=std.clean_text(numbered.sale_id),
        p_store_id=std.canonical_store(numbered._store_number, rules.stores),
        p_sale_date=std.sale_date(numbered.sale_date),
        p_quantity=std.quantity(numbered.quantity),
        p_customer_id=std.clean_text(numbered.customer_id),
        p_status=std.status(numbered.status),
        p_price=std.amount(numbered.price, std.PRICE_TYPE),
        p_total=std.amount(numbered.total, std.TOTAL_TYPE),
        **extra,
    )
    checked = parsed.mutate(_drop_rule=first_failed(parsed, rules)).drop("_store_number")
    return repaired(checked)


def repaired(parsed: ir.Table) -> ir.Table:
    """Parsed rows plus, for each valid row (NULL for a row a drop rule quarantines), the
    silver values that repairs give it: `p_unit_price`, `p_price_imputed`,
    `p_total_recomputed`, `p_line_total` and `p_sale_key`, its sale_id.

    They are computed in the parse so that a cached parse holds them: the sale_id is a sha256
    over seven values for every id-less row, and both the pick of the latest versions and the
    write read it. The guard also keeps the price imputation's division from rows whose
    quantity broke a rule (Spark's ANSI mode raises on a division by zero).
    """
    valid = parsed._drop_rule.isnull()

    def if_valid(value: ir.Value) -> ir.Value:
        return ibis.ifelse(valid, value, ibis.null(value.type()))

    price_imputed = parsed.p_price.isnull()
    unit_price = ibis.coalesce(
        parsed.p_price, std.imputed_price(parsed.p_total, parsed.p_quantity)
    ).cast(std.PRICE_TYPE)
    # An imputed price was derived from the total, so the total stays the source of truth.
    total_recomputed = ~price_imputed & (
        parsed.p_total.isnull()
        | (
            (parsed.p_total - std.line_total(parsed.p_price, parsed.p_quantity)).abs()
            > std.TOTAL_TOLERANCE
        )
    )
    t = parsed.mutate(
        p_unit_price=if_valid(unit_price),
        p_price_imputed=if_valid(price_imputed),
        p_total_recomputed=if_valid(total_recomputed),
    )
    t = t.mutate(
        p_line_total=t.p_total_recomputed.ifelse(
            std.line_total(t.p_unit_price, t.p_quantity), t.p_total
        ).cast(std.TOTAL_TYPE)
    )
    # Status is left out of the hash: a status update of an id-less sale is a new version of it.
    content = std.content_hash(
        t.p_sale_date,
        _store(t),
        t.p_customer_id,
        t.p_product,
        t.p_quantity,
        t.p_unit_price,
        t.p_line_total,
    )
    return t.mutate(p_sale_key=if_valid(ibis.coalesce(t.p_sale_id, content)))


def _store(t: ir.Table) -> ir.StringValue:
    """The store silver keeps: canonical, or (store_id_valid at `warn`) the id as sent."""
    if "p_store_sent" in t.columns:
        return ibis.coalesce(t.p_store_id, t.p_store_sent)
    return t.p_store_id


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


def rule_failures(parsed: ir.Table, rules: RuleSet) -> dict[str, ir.IntegerValue]:
    """One aggregate per row rule: how many rows break it."""
    return {f"failed__{r.name}": r.failed(parsed).cast("int64").sum() for r in rules.row_rules}


def batch_stats(parsed: ir.Table, rules: RuleSet) -> ir.Table:
    """Per bronze batch: rows, dropped rows, newest valid sale_date, the months of its valid
    rows (`sale_months`), failures per rule.

    `dropped_ungated` counts the rows the quarantine-share gate weighs: those breaking a drop
    rule without a fail_share of its own (all dropped rows unless some rule has one).
    """
    valid = parsed._drop_rule.isnull()
    ungated = rules.ungated_drop_rules
    if len(ungated) == len(rules.drop_rules):
        dropped_ungated = (~valid).cast("int64").sum()
    elif ungated:
        # Rows of a batch quarantined whole count too, as in `dropped`.
        breaks = ibis.or_(*(r.failed(parsed) for r in ungated)) | (
            parsed._drop_rule == BATCH_QUARANTINED_RULE
        ).fill_null(False)
        dropped_ungated = breaks.cast("int64").sum()
    else:
        dropped_ungated = (
            (parsed._drop_rule == BATCH_QUARANTINED_RULE).fill_null(False).cast("int64").sum()
        )
    return parsed.group_by("_batch_id", "_batch_seq", "_ingested_at").aggregate(
        rows=parsed.count(),
        dropped=(~valid).cast("int64").sum(),
        dropped_ungated=dropped_ungated,
        max_sale_date=parsed.p_sale_date.max(where=valid),
        # In the same pass: a first load's months need no read of the cached parse of their own
        # (a read of the spill folder once the batch outgrows DuckDB's memory limit).
        sale_months=std.sale_month(parsed.p_sale_date).collect(where=valid, distinct=True),
        **rule_failures(parsed, rules),
    )


def batch_lineage(bronze: ir.Table) -> ir.Table:
    """One row per batch of `bronze`: the lineage every row of a batch shares, and a small
    integer code that stands for it in `narrow`'s rows."""
    batches = bronze.select(*BATCH_LINEAGE).distinct()
    # Codes follow the lake's batch order, so that rows of sequenced batches order by code as
    # they do by `_batch_seq` (see `superseded`).
    order = [ibis.asc(batches[c], nulls_first=True) for c in ("_batch_seq", "_ingested_at")]
    code = ibis.row_number().over(order_by=[*order, ibis.asc(batches._batch_id)])
    return batches.mutate(**{BATCH_CODE: code})


def narrow(parsed: ir.Table, batches: ir.Table) -> ir.Table:
    """Only what silver needs from parsed rows: typed values, the line, the batch's code and
    the drop rule (`widen` puts the batch's lineage back).

    Materialising this instead of every raw column halves the cost of caching a big batch; the
    few quarantined rows get their raw columns back from bronze (see `quarantine`). The batch
    lineage is a code because DuckDB does not compress in-memory tables: the batch id and file
    name alone cost about 80 bytes a row (0.8 GB of cache at 10M rows), which pushed the
    window that picks the latest versions into spilling.
    """
    coded = parsed.inner_join(batches.select("_batch_id", BATCH_CODE), "_batch_id")
    return coded.select(*_typed_columns(parsed), BATCH_CODE, "_source_line", "_drop_rule")


def superseded(narrowed: ir.Table) -> ir.Table:
    """The `(_batch_code, _source_line)` of each valid row of `narrow`ed batches that a later
    version of its sale_id (in those batches) replaces.

    For batches that all have a `_batch_seq`: the codes then order rows as SEQUENCED_ORDER does
    (one batch per number, and every fresh row has the same priority). Only three narrow
    columns go through the window, not the silver row; on a first load or a full refresh
    almost every row is its sale_id's only version, so what comes out is small.
    """
    valid = narrowed.filter(narrowed._drop_rule.isnull())
    rank = ibis.row_number().over(
        group_by=valid.p_sale_key,
        order_by=[ibis.desc(valid[BATCH_CODE]), ibis.desc(valid._source_line)],
    )
    ranked = valid.select(BATCH_CODE, "_source_line", _rank=rank)
    return ranked.filter(ranked._rank > 0).select(BATCH_CODE, "_source_line")


def without(narrowed: ir.Table, replaced: ir.Table) -> ir.Table:
    """`narrow`ed rows other than the `superseded` ones: the latest version of each sale_id."""
    return narrowed.anti_join(replaced, [BATCH_CODE, "_source_line"])


def widen(narrowed: ir.Table, batches: ir.Table) -> ir.Table:
    """`narrow`'s rows with their batch lineage back, in parse's column order."""
    joined = narrowed.inner_join(batches, BATCH_CODE)
    return joined.select(*_typed_columns(narrowed), *LINEAGE, "_drop_rule")


def _typed_columns(t: ir.Table) -> list[str]:
    return [c for c in t.columns if c.startswith("p_")]


def quarantine(bronze: ir.Table, parsed: ir.Table, run_id: str, rules: RuleSet) -> ir.Table:
    """Bronze rows that broke a drop rule (per `parsed`), as received, with rule and reason."""
    bad = parsed.filter(parsed._drop_rule.notnull()).select(
        q_batch="_batch_id", q_line="_source_line", rule="_drop_rule"
    )
    joined = bronze.inner_join(
        bad, [bronze._batch_id == bad.q_batch, bronze._source_line == bad.q_line]
    )
    return joined.mutate(reason=reason_of(joined.rule, rules), run_id=ibis.literal(run_id)).select(
        *SILVER_QUARANTINE.column_names
    )


def typed(parsed: ir.Table) -> ir.Table:
    """Valid rows as silver columns (without is_late): `repaired`'s values, sale_id set."""
    t = parsed.filter(parsed._drop_rule.isnull())
    return t.select(
        sale_id=t.p_sale_key,
        sale_date=t.p_sale_date,
        sale_month=std.sale_month(t.p_sale_date),
        store_id=_store(t),
        customer_id=t.p_customer_id,
        product=t.p_product,
        quantity=t.p_quantity,
        unit_price=t.p_unit_price,
        total=t.p_line_total,
        status=t.p_status,
        price_imputed=t.p_price_imputed,
        total_recomputed=t.p_total_recomputed,
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
    columns = [rows[f.name].cast(ibis.dtype(f.type)).name(f.name) for f in SILVER_SALES.schema]
    if PRIORITY in rows.columns:
        columns.append(rows[PRIORITY].cast("int8").name(PRIORITY))
    return rows.select(*columns)


def version_order(sequenced: bool) -> tuple[str, ...]:
    """The keys `latest` sorts by: SEQUENCED_ORDER when every batch involved has a
    `_batch_seq` (then it orders exactly as VERSION_ORDER does), else VERSION_ORDER."""
    return SEQUENCED_ORDER if sequenced else VERSION_ORDER


def latest(rows: ir.Table, order: Sequence[str] = VERSION_ORDER) -> ir.Table:
    """One row per sale_id: the latest by `order` (VERSION_ORDER, or `version_order`'s)."""
    rank = ibis.row_number().over(
        group_by=rows.sale_id,
        order_by=[ibis.desc(rows[c], nulls_first=False) for c in order],
    )
    ranked = rows.mutate(_rank=rank)
    return ranked.filter(ranked._rank == 0).select(*SILVER_SALES.column_names)
