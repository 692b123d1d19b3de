"""Baseline: the original project's approach: PySpark local, one SparkSession per stage
(bronze, silver, gold as separate notebooks/scripts), parquet overwrite between stages.

Files with or without a sale_id column (the generator's, or the original 8 columns).

Usage: python pyspark_original.py INPUT.csv [INPUT2.csv ...] --out DIR [--master local[2]]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F  # noqa: N812
from pyspark.sql.window import Window


def session(name: str, master: str) -> SparkSession:
    return (
        SparkSession.builder.appName(name)
        .master(master)
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )


def bronze(inputs: list[Path], out: Path, master: str) -> None:
    spark = session("bronze", master)
    df = None
    for i, path in enumerate(inputs):
        part = (
            spark.read.option("header", True)
            .csv(str(path))
            .withColumn("_src", F.lit(i))
            .withColumn("_line", F.monotonically_increasing_id())
        )
        df = part if df is None else df.unionByName(part, allowMissingColumns=True)
    assert df is not None
    df.write.mode("overwrite").parquet(str(out / "bronze"))
    spark.stop()


def silver(out: Path, master: str) -> None:
    spark = session("silver", master)
    df = spark.read.parquet(str(out / "bronze"))
    # The original project's 8-column files (`--shapes original`) have no sale_id: the id is
    # then the row's content, as the pipeline derives it (the cleaned values without status, so
    # a status update is a new version of the same sale), computed after the repairs below.
    has_id = "sale_id" in df.columns
    store_no = F.regexp_extract(
        F.upper(F.trim("store_id")), r"^(?:NW[\s_-]*)?(\d{1,9})(?:[\s_-]*NW)?$", 1
    ).try_cast("bigint")
    qty = F.regexp_extract(F.trim("quantity"), r"^\+?(\d{1,9})(?:\.0*)?$", 1).try_cast("bigint")
    status = F.lower(F.trim("status"))
    product = F.trim("product")
    df = df.select(
        (F.trim("sale_id") if has_id else F.lit(None).cast("string")).alias("sale_id"),
        F.trim("sale_date").try_cast("date").alias("sale_date"),
        store_no.alias("store_no"),
        F.trim("customer_id").alias("customer_id"),
        product.alias("product"),
        qty.alias("quantity"),
        F.trim("price").try_cast("decimal(10,2)").alias("price"),
        F.trim("total").try_cast("decimal(12,2)").alias("total"),
        F.when(status.isin("completed", "pending", "cancelled", "returned"), status)
        .otherwise("unknown")
        .alias("status"),
        "_src",
        "_line",
    )
    df = df.filter(
        F.col("sale_date").isNotNull()
        & F.col("store_no").between(1, 999)
        & (F.col("quantity") >= 1)
    )
    df = df.withColumn(
        "store_id", F.concat(F.lit("NW-"), F.lpad(F.col("store_no").cast("string"), 3, "0"))
    )
    df = df.withColumn(
        "price",
        F.coalesce("price", F.round(F.col("total") / F.col("quantity"), 2).cast("decimal(10,2)")),
    )
    line = (F.col("price") * F.col("quantity")).cast("decimal(12,2)")
    df = df.withColumn(
        "total",
        F.when(F.col("total").isNull() | (F.abs(F.col("total") - line) > 0.01), line).otherwise(
            F.col("total")
        ),
    )
    if not has_id:
        parts = ("sale_date", "store_id", "customer_id", "product", "quantity", "price", "total")
        content = F.concat_ws("|", *(F.coalesce(F.col(c).cast("string"), F.lit("")) for c in parts))
        df = df.withColumn("sale_id", F.concat(F.lit("h-"), F.sha2(content, 256).substr(1, 32)))
    w = Window.partitionBy("sale_id").orderBy(F.desc("_src"), F.desc("_line"))
    df = df.withColumn("rn", F.row_number().over(w)).filter("rn = 1").drop("rn", "store_no")
    df = df.withColumn("sale_month", F.date_format("sale_date", "yyyy-MM"))
    df.write.mode("overwrite").partitionBy("sale_month").parquet(str(out / "silver"))
    spark.stop()


def gold(out: Path, master: str) -> None:
    spark = session("gold", master)
    df = spark.read.parquet(str(out / "silver"))
    done = F.col("status") == "completed"

    def amount(s: str) -> F.Column:
        return F.coalesce(F.sum(F.when(F.col("status") == s, F.col("total"))), F.lit(0))

    df.groupBy("sale_date").agg(
        F.count("*").alias("orders"),
        F.sum(F.when(done, 1).otherwise(0)).alias("completed_orders"),
        F.sum(F.when(done, F.col("quantity"))).alias("units"),
        amount("completed").alias("revenue"),
        amount("pending").alias("pending_amount"),
        amount("cancelled").alias("cancelled_amount"),
        amount("returned").alias("returned_amount"),
        F.countDistinct(F.when(done, F.col("customer_id"))).alias("distinct_customers"),
    ).write.mode("overwrite").parquet(str(out / "daily_sales"))
    df.filter(done).groupBy("sale_date", "product", "store_id").agg(
        F.sum("total").alias("revenue"),
        F.sum("quantity").alias("units"),
        F.count("*").alias("orders"),
    ).write.mode("overwrite").parquet(str(out / "product_store_daily"))
    spark.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("inputs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    bronze(args.inputs, args.out, args.master)
    silver(args.out, args.master)
    gold(args.out, args.master)
    print("pyspark original: done")


if __name__ == "__main__":
    main()
