"""Bronze ingest throughput (MB/s) next to a bare DuckDB `read_csv(all_varchar) -> parquet`.

Both read the same generated CSV in this process, alternately, `--repeat` times each (the machines
are noisy, so the ratio of the best runs is what counts); the file is read once beforehand so both
start from the page cache. The pipeline's ingest does more than the baseline: a sha256 of the file,
lineage columns, a Delta commit and the `_meta/ingested_files` marker, all included in its time.

Target (issue 2): ingest at least 0.75x the bare DuckDB speed.

    python bench/bench_bronze.py                 # 1M rows
    python bench/bench_bronze.py --rows 5000000 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb

from medallion_lakehouse.bronze.ingest import ingest
from medallion_lakehouse.config import load_settings
from medallion_lakehouse.generate import GenerateOptions, generate
from medallion_lakehouse.lake import Lake

TARGET_RATIO = 0.75
MB = 1_000_000


def ingest_once(csv: Path, work: Path) -> tuple[float, int]:
    """Seconds for `medallion ingest` of one file into a fresh lake, and the rows it landed."""
    ws = work / "ws"
    shutil.rmtree(ws, ignore_errors=True)
    landing = ws / "data" / "landing"
    landing.mkdir(parents=True)
    (landing / csv.name).hardlink_to(csv)
    started = time.perf_counter()
    with Lake(load_settings(ws)) as lake:
        result = ingest(lake, run_id="bench")
    seconds = time.perf_counter() - started
    if result.failed:
        raise SystemExit(f"ingest failed: {[f.reason for f in result.files]}")
    return seconds, result.rows


def duckdb_once(csv: Path, work: Path) -> tuple[float, int]:
    """Seconds for a bare DuckDB all-varchar CSV read written to one Parquet file, and its rows."""
    out = work / "bare.parquet"
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT * FROM read_csv('{csv}', all_varchar=true, header=true)) "
        f"TO '{out}' (FORMAT parquet)"
    )
    seconds = time.perf_counter() - started
    (rows,) = con.execute(f"SELECT count(*) FROM '{out}'").fetchall()[0]
    con.close()
    return seconds, int(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, alternating")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="bench_bronze_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        data = work / "data"
        if not (data / "_manifest.json").exists():
            shutil.rmtree(data, ignore_errors=True)
            generate(
                GenerateOptions(rows=args.rows, seed=11, start=date(2025, 1, 1), files=1), data
            )
        csv = next(data.glob("*.csv"))
        size = csv.stat().st_size
        csv.read_bytes()  # warm the page cache for both contenders

        runs: dict[str, list[float]] = {"ingest": [], "duckdb": []}
        for _ in range(args.repeat):
            seconds, ingest_rows = ingest_once(csv, work)
            runs["ingest"].append(seconds)
            seconds, duck_rows = duckdb_once(csv, work)
            runs["duckdb"].append(seconds)
            if ingest_rows != duck_rows:
                raise SystemExit(f"row counts differ: ingest {ingest_rows}, duckdb {duck_rows}")

        best = {k: min(v) for k, v in runs.items()}
        mbps = {k: size / MB / s for k, s in best.items()}
        ratio = mbps["ingest"] / mbps["duckdb"]
        figures = {
            "rows": args.rows,
            "file_mb": round(size / MB, 1),
            "seconds": {k: [round(s, 3) for s in v] for k, v in runs.items()},
            "mb_per_s": {k: round(v, 1) for k, v in mbps.items()},
            "ratio": round(ratio, 3),
            "target": TARGET_RATIO,
            "met": ratio >= TARGET_RATIO,
        }
        if args.json:
            print(json.dumps(figures, indent=2))
            return
        print(f"bronze ingest, {args.rows:,} rows ({size / MB:.1f} MB CSV), best of {args.repeat}")
        print(f"  medallion ingest        {best['ingest']:6.2f} s  {mbps['ingest']:7.1f} MB/s")
        print(f"  bare DuckDB -> parquet  {best['duckdb']:6.2f} s  {mbps['duckdb']:7.1f} MB/s")
        verdict = "met" if figures["met"] else "MISSED"
        print(f"  ratio {ratio:.2f}x of bare DuckDB (target >= {TARGET_RATIO}x: {verdict})")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
