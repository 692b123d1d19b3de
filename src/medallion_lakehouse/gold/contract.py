"""Contracts of the gold tables this package builds (DESIGN.md section 4) and gold's watermark.

Gold money columns are decimal(14,2): sums of silver's decimal(12,2) totals, exact to the cent.
Revenue counts `completed` sales only; the other statuses get their own amount columns.
"""

from __future__ import annotations

import pyarrow as pa

from medallion_lakehouse.contracts import Column, TableContract, register

MONEY = pa.decimal128(14, 2)
TIMESTAMP = pa.timestamp("us", tz="UTC")

_SALE_DATE = Column("sale_date", pa.date32(), "Calendar day of the sale.", nullable=False)
_SALE_MONTH = Column("sale_month", pa.string(), "YYYY-MM of sale_date (partition).", nullable=False)

DAILY_SALES = TableContract(
    name="gold/daily_sales",
    grain="one row per sale_date that has at least one current silver sale (any status)",
    key=("sale_date",),
    partition_by=("sale_month",),
    description=(
        "Daily sales KPIs from silver/sales. Revenue, units, orders and customers count completed "
        "sales only; pending / cancelled / returned / unknown amounts are the sums of those "
        "sales' totals. average_ticket = revenue / completed_orders rounded half-up to the cent "
        "(null on a day without completed sales)."
    ),
    write_mode="replace partitions: only the sale_month partitions silver changed are rebuilt",
    columns=(
        _SALE_DATE,
        Column("orders", pa.int64(), "Current sales of the day, any status.", nullable=False),
        Column("completed_orders", pa.int64(), "Sales with status completed.", nullable=False),
        Column("units", pa.int64(), "Sum of quantity over completed sales.", nullable=False),
        Column("revenue", MONEY, "Sum of total over completed sales.", nullable=False),
        Column("pending_amount", MONEY, "Sum of total over pending sales.", nullable=False),
        Column("cancelled_amount", MONEY, "Sum of total over cancelled sales.", nullable=False),
        Column("returned_amount", MONEY, "Sum of total over returned sales.", nullable=False),
        Column(
            "unknown_amount", MONEY, "Sum of total over sales of unknown status.", nullable=False
        ),
        Column(
            "average_ticket",
            MONEY,
            "revenue / completed_orders, half-up to the cent; null without completed sales.",
        ),
        Column(
            "distinct_customers",
            pa.int64(),
            "Distinct customer_id among completed sales.",
            nullable=False,
        ),
        _SALE_MONTH,
    ),
    checks=(
        "sale_date is unique and not null",
        "amounts, units and counts are >= 0",
        "revenue per day equals the sum of completed silver totals that day",
    ),
)

PRODUCT_STORE_DAILY = TableContract(
    name="gold/product_store_daily",
    grain="one row per (sale_date, product, store_id) with at least one completed sale",
    key=("sale_date", "product", "store_id"),
    partition_by=("sale_month",),
    description="Completed sales per day, product and store (the revenue-by-product/store view).",
    write_mode="replace partitions: only the sale_month partitions silver changed are rebuilt",
    columns=(
        _SALE_DATE,
        Column("product", pa.string(), "Canonical product name.", nullable=False),
        Column("store_id", pa.string(), "Canonical store id NW-###.", nullable=False),
        Column("revenue", MONEY, "Sum of total over completed sales.", nullable=False),
        Column("units", pa.int64(), "Sum of quantity over completed sales.", nullable=False),
        Column("orders", pa.int64(), "Number of completed sales.", nullable=False),
        _SALE_MONTH,
    ),
    checks=(
        "(sale_date, product, store_id) is unique and not null",
        "revenue, units and orders are >= 0",
        "revenue per day equals the sum of completed silver totals that day",
    ),
)

GOLD_WATERMARK = TableContract(
    name="_meta/gold_watermark",
    grain="one row per gold table per silver sale_month it was last built from",
    key=("table", "sale_month"),
    description=(
        "Per-month fingerprints of silver/sales as of the last successful build of each gold "
        "table. A month whose fingerprint changed (or appeared, or vanished) is rebuilt. It is "
        "written after the gold tables commit, so a crash in between only repeats work."
    ),
    write_mode="overwrite (tiny; one commit per gold run that changed anything)",
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

GOLD_TABLES: tuple[TableContract, ...] = (DAILY_SALES, PRODUCT_STORE_DAILY)

register(DAILY_SALES, PRODUCT_STORE_DAILY, GOLD_WATERMARK)
