"""Baseline: a bare DuckDB script, CSV -> parquet -> clean -> aggregate, no Delta and no checks.

The same cleaning rules as silver in plain SQL (store ids, ISO dates, whole quantities >= 1,
status/product case-folding, price imputation, total recomputation, latest version per sale_id),
so the comparison measures what the pipeline's Delta commits, lineage and checks cost.
Usage: python bare_duckdb.py INPUT.csv [INPUT2.csv ...] --out DIR
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import duckdb

CLEAN = r"""
CREATE OR REPLACE TABLE silver AS
WITH typed AS (
    SELECT
        coalesce(nullif(trim(sale_id), ''), md5(concat_ws('|', sale_date, store_id, customer_id,
                 product, quantity, price, total))) AS sale_id,
        try_cast(trim(sale_date) AS DATE) AS sale_date,
        try_cast(regexp_extract(upper(trim(store_id)), '^(?:NW[\s_-]*)?(\d{1,9})(?:[\s_-]*NW)?$', 1)
                 AS BIGINT) AS store_no,
        trim(customer_id) AS customer_id,
        CASE lower(trim(product))
            WHEN 'laptop' THEN 'Laptop' WHEN 'smartphone' THEN 'Smartphone'
            WHEN 'tablet' THEN 'Tablet' WHEN 'monitor' THEN 'Monitor'
            WHEN 'headphones' THEN 'Headphones' ELSE trim(product) END AS product,
        try_cast(regexp_extract(trim(quantity), '^\+?(\d{1,9})(?:\.0*)?$', 1) AS BIGINT)
            AS quantity,
        try_cast(nullif(trim(price), '') AS DECIMAL(10,2)) AS price,
        try_cast(nullif(trim(total), '') AS DECIMAL(12,2)) AS total,
        CASE WHEN lower(trim(status)) IN ('completed','pending','cancelled','returned')
             THEN lower(trim(status)) ELSE 'unknown' END AS status,
        src, line
    FROM bronze
), valid AS (
    SELECT * EXCLUDE (store_no), 'NW-' || lpad(store_no::VARCHAR, 3, '0') AS store_id
    FROM typed
    WHERE sale_date IS NOT NULL AND store_no BETWEEN 1 AND 999 AND quantity >= 1
), repaired AS (
    SELECT * REPLACE (coalesce(price, round(total / quantity, 2)::DECIMAL(10,2)) AS price)
    FROM valid
), latest AS (
    SELECT *, row_number() OVER (PARTITION BY sale_id ORDER BY src DESC, line DESC) AS rn
    FROM repaired
)
SELECT sale_id, sale_date, strftime(sale_date, '%Y-%m') AS sale_month, store_id, customer_id,
       product, quantity, price AS unit_price,
       CASE WHEN total IS NULL OR abs(total - price * quantity) > 0.01
            THEN (price * quantity)::DECIMAL(12,2) ELSE total END AS total, status
FROM latest WHERE rn = 1
"""

DAILY = """
COPY (
    SELECT sale_date, count(*) AS orders,
           count(*) FILTER (WHERE status = 'completed') AS completed_orders,
           coalesce(sum(quantity) FILTER (WHERE status = 'completed'), 0) AS units,
           coalesce(sum(total) FILTER (WHERE status = 'completed'), 0) AS revenue,
           coalesce(sum(total) FILTER (WHERE status = 'pending'), 0) AS pending_amount,
           coalesce(sum(total) FILTER (WHERE status = 'cancelled'), 0) AS cancelled_amount,
           coalesce(sum(total) FILTER (WHERE status = 'returned'), 0) AS returned_amount,
           count(DISTINCT customer_id) FILTER (WHERE status = 'completed') AS distinct_customers
    FROM silver GROUP BY sale_date
) TO '{out}/daily_sales.parquet' (FORMAT parquet)
"""

PRODUCT_STORE = """
COPY (
    SELECT sale_date, product, store_id, sum(total) AS revenue, sum(quantity) AS units,
           count(*) AS orders
    FROM silver WHERE status = 'completed' GROUP BY ALL
) TO '{out}/product_store_daily.parquet' (FORMAT parquet)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("inputs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    # In memory: a file-backed database would do work (WAL, checkpoints) the pipeline never does.
    con = duckdb.connect()
    for i, path in enumerate(args.inputs):
        # bronze: every column as text, plus the file order and line for "latest wins".
        source = f"read_csv('{path}', all_varchar=true, header=true, ignore_errors=true)"
        columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
        # The original project's 8 columns have no sale_id: ids then come from the content.
        sale_id = "" if "sale_id" in columns else "NULL::VARCHAR AS sale_id, "
        con.execute(
            f"COPY (SELECT {sale_id}*, {i} AS src, row_number() OVER () AS line FROM {source}) "
            f"TO '{args.out}/bronze_{i}.parquet' (FORMAT parquet)"
        )
    con.execute(f"CREATE VIEW bronze AS SELECT * FROM read_parquet('{args.out}/bronze_*.parquet')")
    con.execute(CLEAN)
    con.execute(f"COPY silver TO '{args.out}/silver' (FORMAT parquet, PARTITION_BY (sale_month))")
    con.execute(DAILY.format(out=args.out))
    con.execute(PRODUCT_STORE.format(out=args.out))
    rows = con.execute("SELECT count(*) FROM silver").fetchall()[0][0]
    print(f"bare duckdb: {rows} silver rows")


if __name__ == "__main__":
    main()
