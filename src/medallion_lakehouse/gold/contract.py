"""Gold's shared columns and its watermark; each gold table's contract lives with its builder in
`gold/tables/` (DESIGN.md section 4).

Gold money columns are decimal(14,2): sums of silver's decimal(12,2) totals, exact to the cent.
Revenue counts `completed` sales only; the other statuses get their own amount columns.
"""

from __future__ import annotations

import pyarrow as pa

from medallion_lakehouse.contracts import Column, TableContract, register

MONEY = pa.decimal128(14, 2)
TIMESTAMP = pa.timestamp("us", tz="UTC")

SALE_DATE = Column("sale_date", pa.date32(), "Calendar day of the sale.", nullable=False)
SALE_MONTH = Column("sale_month", pa.string(), "YYYY-MM of sale_date (partition).", nullable=False)

GOLD_WATERMARK = TableContract(
    name="_meta/gold_watermark",
    grain="one row per gold table per silver sale_month it was last built from",
    key=("table", "sale_month"),
    description=(
        "Per-month fingerprints of silver/sales as of the last successful build of each gold "
        "table. A month whose fingerprint changed (or appeared, or vanished) is rebuilt. It is "
        "written after the gold tables commit, so a crash in between only repeats work."
    ),
    write_mode="overwrite",
    write_note="tiny; one commit per gold run that changed anything",
    columns=(
        Column("table", pa.string(), "Gold table name.", nullable=False),
        Column("sale_month", pa.string(), "Silver partition.", nullable=False),
        Column("rows", pa.int64(), "Silver rows in the month."),
        Column("completed_rows", pa.int64(), "Completed silver rows in the month."),
        Column("quantity_sum", pa.int64(), "Sum of quantity."),
        Column("total_sum", pa.decimal128(22, 2), "Sum of total."),
        Column("completed_total_sum", pa.decimal128(22, 2), "Sum of completed totals."),
        Column("max_ingested_at", TIMESTAMP, "Newest _ingested_at among the month's rows."),
        Column("max_batch_seq", pa.int64(), "Newest _batch_seq among the month's rows."),
        Column("silver_version", pa.int64(), "silver/sales version the build read."),
        Column("run_id", pa.string(), "Run that built it."),
        Column("built_at", TIMESTAMP, "When (UTC)."),
    ),
)

register(GOLD_WATERMARK)
