"""Baseline: plain pandas, CSV -> clean -> aggregate -> parquet (no Delta, no checks).

Usage: python pandas_pipeline.py INPUT.csv [INPUT2.csv ...] --out DIR
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

CATALOGUE = {p.lower(): p for p in ("Laptop", "Smartphone", "Tablet", "Monitor", "Headphones")}
STATUSES = ["completed", "pending", "cancelled", "returned"]
STORE_RE = r"^(?:NW[\s_-]*)?(\d{1,9})(?:[\s_-]*NW)?$"


def clean(raw: pd.DataFrame) -> pd.DataFrame:
    df = pd.DataFrame(index=raw.index)
    df["sale_id"] = raw["sale_id"].str.strip() if "sale_id" in raw else raw.index.astype(str)
    df["sale_date"] = pd.to_datetime(
        raw["sale_date"].str.strip(), format="%Y-%m-%d", errors="coerce"
    )
    store_no = pd.to_numeric(raw["store_id"].str.strip().str.upper().str.extract(STORE_RE)[0])
    df["customer_id"] = raw["customer_id"].str.strip()
    product = raw["product"].str.strip()
    df["product"] = product.str.lower().map(CATALOGUE).fillna(product)
    qty = pd.to_numeric(raw["quantity"].str.strip().str.extract(r"^\+?(\d{1,9})(?:\.0*)?$")[0])
    price = pd.to_numeric(raw["price"].str.strip(), errors="coerce").round(2)
    total = pd.to_numeric(raw["total"].str.strip(), errors="coerce").round(2)
    status = raw["status"].str.strip().str.lower()
    df["status"] = status.where(status.isin(STATUSES), "unknown")
    valid = df.sale_date.notna() & store_no.between(1, 999) & (qty >= 1)
    df["store_id"] = "NW-" + store_no.fillna(0).astype(int).astype(str).str.zfill(3)
    price = price.fillna((total / qty).round(2))
    line = (price * qty).round(2)
    total = np.where(total.isna() | ((total - line).abs() > 0.01), line, total)
    df["quantity"], df["unit_price"], df["total"] = qty, price, total
    df = df[valid].copy()
    df["quantity"] = df["quantity"].astype("int64")
    return df


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("inputs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    frames = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in args.inputs]
    silver = clean(pd.concat(frames, ignore_index=True))
    silver = silver.drop_duplicates("sale_id", keep="last")
    silver.to_parquet(args.out / "silver.parquet")
    done = silver[silver.status == "completed"]
    daily = done.groupby("sale_date").agg(
        completed_orders=("sale_id", "size"),
        units=("quantity", "sum"),
        revenue=("total", "sum"),
        distinct_customers=("customer_id", "nunique"),
    )
    amounts = silver.pivot_table(index="sale_date", columns="status", values="total", aggfunc="sum")
    daily.join(amounts, how="outer").reset_index().to_parquet(args.out / "daily_sales.parquet")
    done.groupby(["sale_date", "product", "store_id"]).agg(
        revenue=("total", "sum"), units=("quantity", "sum"), orders=("sale_id", "size")
    ).reset_index().to_parquet(args.out / "product_store_daily.parquet")
    print(f"pandas: {len(silver)} silver rows")


if __name__ == "__main__":
    main()
