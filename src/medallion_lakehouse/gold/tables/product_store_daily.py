"""gold/product_store_daily: completed sales per (sale_date, product, store_id) (pure Ibis)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from medallion_lakehouse.contracts import Column, TableContract
from medallion_lakehouse.gold.checks import SILVER, standard_checks
from medallion_lakehouse.gold.contract import MONEY, SALE_DATE, SALE_MONTH
from medallion_lakehouse.gold.model import GoldTable
from medallion_lakehouse.gold.money import money_sum

if TYPE_CHECKING:
    import ibis.expr.types as ir

PRODUCT_STORE_DAILY = TableContract(
    name="gold/product_store_daily",
    grain="one row per (sale_date, product, store_id) with at least one completed sale",
    key=("sale_date", "product", "store_id"),
    partition_by=("sale_month",),
    description="Completed sales per day, product and store (the revenue-by-product/store view).",
    write_mode="replace_partitions",
    write_note="only the sale_month partitions silver changed are rebuilt",
    upstream=(SILVER,),
    columns=(
        SALE_DATE,
        Column("product", pa.string(), "Canonical product name.", nullable=False),
        Column("store_id", pa.string(), "Canonical store id NW-###.", nullable=False),
        Column("revenue", MONEY, "Sum of total over completed sales.", nullable=False),
        Column("units", pa.int64(), "Sum of quantity over completed sales.", nullable=False),
        Column("orders", pa.int64(), "Number of completed sales.", nullable=False),
        SALE_MONTH,
    ),
    checks=standard_checks(),
)


def build_product_store_daily(silver: ir.Table) -> ir.Table:
    """Revenue, units and orders of completed sales per day, product and store."""
    completed = silver.filter(silver.status == "completed")
    return (
        completed.group_by(["sale_date", "product", "store_id", "sale_month"])
        .aggregate(
            revenue=money_sum(completed.total),
            units=completed.quantity.cast("int64").sum(),
            orders=completed.count(),
        )
        .select("sale_date", "product", "store_id", "revenue", "units", "orders", "sale_month")
    )


TABLE = GoldTable(PRODUCT_STORE_DAILY, build_product_store_daily)
