"""Contracts of silver/sales, silver/sales_quarantine and the silver bookkeeping under `_meta/`.

The data-quality rules that guard silver/sales are declared once in `rules.py` (next to this file)
and listed here as the table's checks, so docs and the report read them from the contract.
"""

from __future__ import annotations

import pyarrow as pa

from medallion_lakehouse.bronze.contract import LINEAGE_COLUMNS, SOURCE_COLUMNS
from medallion_lakehouse.checks import not_null, unique_key
from medallion_lakehouse.contracts import Column, TableContract, register
from medallion_lakehouse.silver.rules import RULES

TIMESTAMP = pa.timestamp("us", tz="UTC")
PRICE = pa.decimal128(10, 2)
TOTAL = pa.decimal128(12, 2)

SILVER_LINEAGE: tuple[Column, ...] = tuple(
    c
    for c in LINEAGE_COLUMNS
    if c.name in ("_batch_id", "_batch_seq", "_source_file", "_source_line", "_ingested_at")
)

SILVER_SALES = TableContract(
    name="silver/sales",
    grain="one row per sale_id: the current (latest) version of each sale",
    key=("sale_id",),
    partition_by=("sale_month",),
    description=(
        "Typed, standardised sales. Versions of a sale_id: the latest (_batch_seq, "
        "_source_line) wins (the lake's batch order, not a clock). sale_id is the source's id "
        "when present, else `h-` + a sha256 of "
        "the normalised content (sale_date, store_id, customer_id, product, quantity, "
        "unit_price, total; status is left out so a status update is a new version of the same "
        "sale). Limit: two genuine sales identical in all those fields merge into one."
    ),
    write_mode="replace_partitions",
    write_note="the sale_month partitions the run's batches affect, in one commit",
    upstream=("bronze/sales",),
    columns=(
        Column(
            "sale_id",
            pa.string(),
            "Source id, or `h-` + 32 hex of the content hash.",
            False,
            unique=True,
        ),
        Column("sale_date", pa.date32(), "Date of sale (any accepted spelling, parsed).", False),
        Column("sale_month", pa.string(), "YYYY-MM of sale_date (partition).", False),
        Column("store_id", pa.string(), "Canonical store id NW-001..NW-999.", False),
        Column("customer_id", pa.string(), "Customer id, trimmed.", False),
        Column("product", pa.string(), "Catalogue spelling; unknown products trimmed as sent."),
        Column("quantity", pa.int64(), "Units, a whole number >= 1.", False),
        Column("unit_price", PRICE, "Unit price (imputed when missing, see price_imputed)."),
        Column("total", TOTAL, "Line total (recomputed when inconsistent, see total_recomputed)."),
        Column(
            "status", pa.string(), "completed | pending | cancelled | returned | unknown.", False
        ),
        Column(
            "is_late",
            pa.bool_(),
            "sale_date older than the newest silver held when its batch arrived.",
            False,
        ),
        Column(
            "price_imputed",
            pa.bool_(),
            "unit_price was missing: round(total / quantity, 2).",
            False,
        ),
        Column(
            "total_recomputed",
            pa.bool_(),
            "total was missing or off by > 0.01: quantity × unit_price.",
            False,
        ),
        *SILVER_LINEAGE,
    ),
    checks=(unique_key(), not_null()),
    rules=RULES,
    notes=(
        "every processed bronze record is the current row of its sale_id, a superseded version, "
        "or quarantined (`medallion audit`)",
    ),
)

SILVER_QUARANTINE = TableContract(
    name="silver/sales_quarantine",
    grain="one row per bronze record that failed a drop rule",
    key=("_batch_id", "_source_line"),
    description=(
        "Every source column as received, its lineage, and the first drop rule it failed (rules "
        "are tried in declaration order; _meta/quality counts every rule independently)."
    ),
    write_mode="replace_rows",
    write_note="the rows of the batches processed (a retried batch replaces its own rows)",
    upstream=("bronze/sales",),
    columns=(
        *(Column(c, pa.string(), f"Source column `{c}` as received.") for c in SOURCE_COLUMNS),
        Column("_rescued_data", pa.string(), "Unexpected source columns as JSON (from bronze)."),
        *LINEAGE_COLUMNS,
        Column("rule", pa.string(), "Name of the drop rule the record failed.", False),
        Column("reason", pa.string(), "The rule's reason, in words.", False),
        Column("run_id", pa.string(), "The silver run that quarantined it.", False),
    ),
)

SILVER_BATCHES = TableContract(
    name="_meta/silver_batches",
    grain="one row per bronze batch processed by silver (the commit marker of that work)",
    key=("batch_id",),
    description=(
        "A bronze batch listed here has its valid rows in silver/sales (or superseded) and its "
        "invalid rows in the quarantine; batches in _meta/ingested_files but not here are pending. "
        "max_sale_date feeds is_late: a batch's watermark is the max over earlier batches."
    ),
    write_mode="append",
    columns=(
        Column("batch_id", pa.string(), "Bronze batch id."),
        Column("ingested_at", TIMESTAMP, "The batch's _ingested_at (information only)."),
        Column("seq", pa.int64(), "The batch's _batch_seq (orders batches)."),
        Column("rows", pa.int64(), "Bronze rows in the batch."),
        Column("rows_valid", pa.int64(), "Rows that passed every drop rule."),
        Column("rows_quarantined", pa.int64(), "Rows sent to the quarantine."),
        Column("max_sale_date", pa.date32(), "Newest valid sale_date in the batch."),
        Column("watermark", pa.date32(), "Newest sale_date silver held when the batch arrived."),
        Column("affected_months", pa.string(), "JSON list of sale_months the run replaced."),
        Column("silver_version", pa.int64(), "silver/sales version after the run."),
        Column("run_id", pa.string(), "The silver run that processed it."),
        Column("processed_at", TIMESTAMP, "When (UTC)."),
    ),
)

SILVER_CHANGES = TableContract(
    name="_meta/silver_changes",
    grain="one row per sale_month replaced in silver/sales per silver commit",
    key=("silver_version", "sale_month"),
    description=(
        "What gold reads to recompute only changed months: every month replaced by silver "
        "version > the last version gold consumed. A full refresh lists the months before and "
        "after it (months that disappeared are changes too)."
    ),
    write_mode="append",
    columns=(
        Column("run_id", pa.string(), "The silver run."),
        Column("silver_version", pa.int64(), "silver/sales version written by the run."),
        Column("sale_month", pa.string(), "A replaced YYYY-MM partition."),
        Column("mode", pa.string(), "incremental | full_refresh | range."),
        Column("changed_at", TIMESTAMP, "When (UTC)."),
    ),
)

HELD_BATCHES = TableContract(
    name="_meta/held_batches",
    grain="one row per event of a bronze batch the quality gate held: held, then one decision",
    key=("batch_id", "state"),
    description=(
        "A batch whose quarantined share is above the threshold is held: silver commits nothing "
        "of it and goes on with later batches, and checks it again on every run (a raised "
        "threshold lets it through). An operator's decision is final: `accepted` (process it "
        "whatever its share), `quarantined` (every row to the quarantine, rule "
        "held_batch_quarantined) or `dropped` (never processed; the audit lists it)."
    ),
    write_mode="append",
    columns=(
        Column("batch_id", pa.string(), "Bronze batch id."),
        Column("seq", pa.int64(), "The batch's _batch_seq."),
        Column("source_file", pa.string(), "Landing file of the batch."),
        Column("state", pa.string(), "held | accepted | quarantined | dropped."),
        Column("rows", pa.int64(), "Bronze rows in the batch."),
        Column("rows_failed", pa.int64(), "Rows that broke a drop rule when it was held."),
        Column("threshold", pa.float64(), "quarantine_fail_share when it was held."),
        Column("reason", pa.string(), "Why it was held, or the operator's note."),
        Column("run_id", pa.string(), "The run that recorded the event."),
        Column("recorded_at", TIMESTAMP, "When (UTC)."),
    ),
)

register(SILVER_SALES, SILVER_QUARANTINE, SILVER_BATCHES, SILVER_CHANGES, HELD_BATCHES)
