"""Benchmark the silver step: full vs incremental (a 1 % late batch), and vs bare DuckDB.

    .venv/bin/python bench/bench_silver.py --rows 1000000

Builds a synthetic bronze (vectorised NumPy/Arrow, the seed's defects: four store-id shapes,
missing prices and statuses, float noise in totals, ~0.2 % invalid rows), commits it to a fresh
lake, then measures in the same process:
  full         silver --full-refresh over N bronze rows (Delta in, Delta out)
  incremental  silver on a later batch of N/100 late rows (new sales in the last months)
  bare DuckDB  the same cleaning written by hand in DuckDB SQL over the same rows read from
               plain Parquet, written as month-partitioned Parquet (no Delta, no Ibis)
Prints seconds and the ratios incremental/full (target < 15 %) and full/bare (target <= 1.5x).
The bronze is synthetic rather than from `medallion generate` so that the late batch holds only
new sales in recent months, which is what "a 1 % late batch" means here.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medallion_lakehouse.bronze.contract import BRONZE_SALES
from medallion_lakehouse.config import load_settings
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.meta import INGESTED_FILES
from medallion_lakehouse.pipeline.context import StepContext, new_run_id
from medallion_lakehouse.silver import step
from medallion_lakehouse.storage.delta import CommitInfo

CHUNK = 1_000_000
START = date(2025, 1, 1)
DAYS = 365
PRODUCTS = ["Laptop", "Smartphone", "Tablet", "Monitor", "Headphones", "laptop ", "TABLET"]
STATUSES = ["Completed", "Completed", "Completed", "Pending", "Cancelled", "Returned", ""]


def _strings(values: list[str]) -> pa.Array:
    return pa.array(values, pa.string())


def _stores() -> pa.Array:
    shapes = []
    for n in range(1, 181):
        shapes += [f"NW-{n}", f"NW{n:03d}", f"{n:03d}-NW", f"NW-{n:03d}"]
    return _strings([*shapes, "NW-XX", "NW-1500"])


def chunk(
    rng: np.random.Generator, first: int, n: int, days: tuple[int, int]
) -> dict[str, pa.Array]:
    """n bronze source rows with sale numbers first..first+n-1 and dates in the day range."""
    sale_no = pa.array(np.arange(first, first + n))
    day = rng.integers(days[0], days[1], n)
    dates = pc.cast(pa.array(np.datetime64(START, "D") + day.astype("timedelta64[D]")), pa.string())
    stores = _stores()
    store_code = rng.integers(0, 720, n)
    bad = rng.random(n) < 0.002
    store_code[bad] = 720 + rng.integers(0, 2, bad.sum())
    qty = rng.integers(1, 6, n)
    price = np.round(rng.uniform(20, 1500, n), 2)
    total = price * qty  # float noise, as in the seed
    price_s = pc.cast(pa.array(price), pa.string())
    price_s = pc.if_else(pa.array(rng.random(n) < 0.05), "", price_s)
    customers = pc.binary_join_element_wise(
        "C", pc.utf8_lpad(pc.cast(pa.array(rng.integers(0, 200_000, n)), pa.string()), 6, "0"), ""
    )
    return {
        "sale_id": pc.binary_join_element_wise(
            "S", pc.utf8_lpad(pc.cast(sale_no, pa.string()), 10, "0"), ""
        ),
        "sale_date": dates,
        "store_id": stores.take(pa.array(store_code)),
        "customer_id": customers,
        "product": _strings(PRODUCTS).take(pa.array(rng.integers(0, len(PRODUCTS), n))),
        "quantity": pc.cast(pa.array(qty), pa.string()),
        "price": price_s,
        "total": pc.cast(pa.array(total), pa.string()),
        "status": _strings(STATUSES).take(pa.array(rng.integers(0, len(STATUSES), n))),
    }


def bronze_batches(
    rows: int, seed: int, days: tuple[int, int], batch_id: str, at: datetime, first: int
) -> list[pa.RecordBatch]:
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, rows, CHUNK):
        n = min(CHUNK, rows - start)
        cols = chunk(rng, first + start, n, days)
        cols.update(
            _source_file=pa.array([f"{batch_id}.csv"] * n, pa.string()),
            _source_file_sha256=pa.array([batch_id] * n, pa.string()),
            _source_line=pa.array(np.arange(start + 1, start + n + 1)),
            _batch_id=pa.array([batch_id] * n, pa.string()),
            _ingested_at=pa.array([at] * n, pa.timestamp("us", tz="UTC")),
            _rescued_data=pa.nulls(n, pa.string()),
            _ingest_date=pa.array([at.date().isoformat()] * n, pa.string()),
        )
        out.append(pa.RecordBatch.from_pydict(cols, schema=BRONZE_SALES.schema))
    return out


def land_bronze(lake: Lake, batches: list[pa.RecordBatch], batch_id: str, at: datetime) -> None:
    commit = CommitInfo(run_id="bench", step="bronze")
    lake.write_arrow(BRONZE_SALES.name, batches, commit=commit)
    marker = {
        "source_file": f"{batch_id}.csv",
        "sha256": batch_id,
        "size_bytes": 0,
        "format": "csv",
        "batch_id": batch_id,
        "rows": sum(b.num_rows for b in batches),
        "rejects": 0,
        "rescued_columns": "[]",
        "parser": "bench",
        "ingested_at": at,
        "run_id": "bench",
    }
    lake.write_arrow(
        INGESTED_FILES.name,
        pa.Table.from_pylist([marker], schema=INGESTED_FILES.schema),
        commit=commit,
    )


BARE_SQL = r"""
CREATE OR REPLACE TEMP TABLE parsed AS
SELECT *,
  CASE WHEN n BETWEEN 1 AND 999 THEN 'NW-' || lpad(n::VARCHAR, 3, '0') END AS store_c,
  coalesce(try_strptime(trim(sale_date), '%Y-%m-%d'), try_strptime(trim(sale_date), '%d/%m/%Y'),
           try_strptime(trim(sale_date), '%Y/%m/%d'), try_strptime(trim(sale_date), '%d-%m-%Y'),
           try_strptime(trim(sale_date), '%b %d %Y'))::DATE AS date_c,
  TRY_CAST(regexp_extract(trim(quantity), '^\+?(\d{1,9})(?:\.0*)?$', 1) AS BIGINT) AS qty_c,
  TRY_CAST(nullif(trim(price), '') AS DECIMAL(10,2)) AS price_c,
  TRY_CAST(nullif(trim(total), '') AS DECIMAL(12,2)) AS total_c,
  nullif(trim(customer_id), '') AS customer_c
FROM (SELECT *, TRY_CAST(regexp_extract(upper(trim(store_id)),
        '^(?:NW[\s_-]*)?(\d{1,9})(?:[\s_-]*NW)?$', 1) AS BIGINT) AS n FROM bronze);

COPY (SELECT * EXCLUDE (n, store_c, date_c, qty_c, price_c, total_c, customer_c)
      FROM parsed WHERE store_c IS NULL OR date_c IS NULL OR coalesce(qty_c, 0) < 1
         OR customer_c IS NULL OR (price_c IS NULL AND total_c IS NULL))
  TO '{out}/quarantine.parquet' (FORMAT parquet);

COPY (
  WITH valid AS (
    SELECT *, coalesce(price_c, round(total_c / qty_c, 2))::DECIMAL(10,2) AS unit_price,
           price_c IS NULL AS price_imputed
    FROM parsed WHERE store_c IS NOT NULL AND date_c IS NOT NULL AND qty_c >= 1
      AND customer_c IS NOT NULL AND (price_c IS NOT NULL OR total_c IS NOT NULL)
  ), typed AS (
    SELECT coalesce(nullif(trim(sale_id), ''), 'h-' || left(sha256(concat_ws('|', date_c, store_c,
             customer_c, product, qty_c, unit_price, total_c)), 32)) AS sale_id,
           date_c AS sale_date, strftime(date_c, '%Y-%m') AS sale_month, store_c AS store_id,
           customer_c AS customer_id,
           CASE lower(trim(product)) WHEN 'laptop' THEN 'Laptop' WHEN 'smartphone' THEN 'Smartphone'
             WHEN 'tablet' THEN 'Tablet' WHEN 'monitor' THEN 'Monitor'
             WHEN 'headphones' THEN 'Headphones' ELSE trim(product) END AS product,
           qty_c AS quantity, unit_price,
           CASE WHEN NOT price_imputed
                     AND (total_c IS NULL OR abs(total_c - qty_c * unit_price) > 0.01)
                THEN qty_c * unit_price ELSE total_c END::DECIMAL(12,2) AS total,
           coalesce(CASE lower(trim(status)) WHEN 'completed' THEN 'completed'
             WHEN 'pending' THEN 'pending' WHEN 'cancelled' THEN 'cancelled'
             WHEN 'returned' THEN 'returned' END, 'unknown') AS status,
           false AS is_late, price_imputed,
           NOT price_imputed
             AND (total_c IS NULL OR abs(total_c - qty_c * unit_price) > 0.01) AS total_recomputed,
           _batch_id, _source_file, _source_line, _ingested_at
    FROM valid
  )
  SELECT * FROM typed
  QUALIFY row_number() OVER (PARTITION BY sale_id
                             ORDER BY _ingested_at DESC, _source_line DESC, _batch_id DESC) = 1
) TO '{out}/silver' (FORMAT parquet, PARTITION_BY (sale_month));
"""


def bare_duckdb(parquet: Path, out: Path) -> tuple[float, int]:
    """The same cleaning as hand-written DuckDB SQL, Parquet in and out; returns seconds, rows."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    con = duckdb.connect()
    started = time.perf_counter()
    con.execute(f"CREATE VIEW bronze AS SELECT * FROM read_parquet('{parquet}')")
    for statement in BARE_SQL.replace("{out}", str(out)).split(";\n"):
        if statement.strip():
            con.execute(statement)
    seconds = time.perf_counter() - started
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}/silver/**/*.parquet')").fetchall()
    con.close()
    return seconds, int(rows[0][0])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000, help="bronze rows (default 10M)")
    parser.add_argument("--late-share", type=float, default=0.01, help="late batch size / rows")
    parser.add_argument("--workdir", type=Path, default=None, help="where to build the lake")
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_silver_"))
    shutil.rmtree(work / "ws", ignore_errors=True)
    (work / "ws").mkdir(parents=True)
    settings = load_settings(work / "ws")
    t0 = datetime.now(UTC)
    late_rows = max(1, int(args.rows * args.late_share))
    print(f"building bronze: {args.rows:,} rows + a late batch of {late_rows:,} rows in {work}")
    with Lake(settings) as lake:
        main_batches = bronze_batches(args.rows, 1, (0, DAYS - 30), "main", t0, 0)
        land_bronze(lake, main_batches, "main", t0)
        parquet = work / "bronze_main.parquet"
        pq.write_table(pa.Table.from_batches(main_batches), parquet)
        del main_batches

        started = time.perf_counter()
        full = step.run(lake, StepContext(run_id=new_run_id(), full_refresh=True))
        full_s = time.perf_counter() - started

        late_at = t0 + timedelta(seconds=1)
        late = bronze_batches(late_rows, 2, (DAYS - 60, DAYS), "late", late_at, args.rows)
        land_bronze(lake, late, "late", late_at)
        started = time.perf_counter()
        inc = step.run(lake, StepContext(run_id=new_run_id()))
        inc_s = time.perf_counter() - started

    bare_s, bare_rows = bare_duckdb(parquet, work / "bare_out")
    print(f"{'run':<34}{'seconds':>9}{'rows out':>14}")
    print(f"{'silver full (Delta, Ibis/DuckDB)':<34}{full_s:>9.2f}{full.rows_out:>14,}")
    months = len(inc.metrics["affected_months"])
    print(f"{f'silver incremental ({months} months)':<34}{inc_s:>9.2f}{inc.rows_out:>14,}")
    print(f"{'bare DuckDB SQL (Parquet)':<34}{bare_s:>9.2f}{bare_rows:>14,}")
    print(f"incremental / full = {inc_s / full_s:.1%} (target < 15 %)")
    print(f"full / bare DuckDB = {full_s / bare_s:.2f}x (target <= 1.5x)")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
