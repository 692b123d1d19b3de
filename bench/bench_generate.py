"""Benchmark `medallion generate`: rows/s end to end (drawing + writing) and peak RSS.

Runs the real CLI in a child process so the peak RSS is the generator's own, then prints the
figures. Targets (issue 3): >= 1,000,000 rows/s for `--rows 10000000 --format csv`, peak RSS
under 1.5 GB at 10M rows and no higher at 50M.

    python bench/bench_generate.py --rows 10000000
    python bench/bench_generate.py --rows 100000 --format parquet   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_ROWS_PER_S = 1_000_000
TARGET_PEAK_RSS_MB = 1536


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--format", default="csv", choices=("csv", "jsonl", "parquet"))
    parser.add_argument("--files", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=None, help="Folder (default: a temp dir).")
    parser.add_argument("--keep", action="store_true", help="Keep the generated files.")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="bench-generate-"))
    cmd = [
        sys.executable,
        "-m",
        "medallion_lakehouse",
        "generate",
        "--rows",
        str(args.rows),
        "--format",
        args.format,
        "--files",
        str(args.files),
        "--seed",
        str(args.seed),
        "--start",
        "2025-01-01",
        "--end",
        "2025-12-31",
        "--out",
        str(out),
        "--overwrite",
        "--json",
    ]
    began = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        return proc.returncode
    # ru_maxrss of waited-for children: kilobytes on Linux. Only this child has run.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_mb = usage.ru_maxrss / 1024
    # CPU seconds of the child: a figure that holds up when other jobs share the machine.
    cpu_seconds = usage.ru_utime + usage.ru_stime
    manifest = json.loads(proc.stdout)
    lines = manifest["totals"]["rows"]
    size = sum(p.stat().st_size for p in out.iterdir() if p.name.startswith("sales_"))
    generating = float(manifest["elapsed_seconds"])  # inside the CLI: imports excluded
    figures = {
        "rows_requested": args.rows,
        "rows_written": lines,
        "format": args.format,
        "seconds": round(seconds, 2),
        "generate_seconds": round(generating, 2),
        "rows_per_s": round(lines / seconds),
        "generate_rows_per_s": round(lines / generating),
        "mb_per_s": round(size / 1e6 / seconds, 1),
        "cpu_seconds": round(cpu_seconds, 2),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "bytes_written": size,
        "peak_rss_mb": round(peak_mb, 1),
        "meets_speed_target": lines / seconds >= TARGET_ROWS_PER_S,
        "meets_memory_target": peak_mb < TARGET_PEAK_RSS_MB,
    }
    if not args.keep and args.out is None:
        shutil.rmtree(out, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        speed_ok = "ok" if figures["meets_speed_target"] else "MISSED"
        memory_ok = "ok" if figures["meets_memory_target"] else "MISSED"
        print(
            f"generate --rows {args.rows:,} --format {args.format}: {lines:,} rows, "
            f"{size / 1e6:,.0f} MB in {seconds:.2f} s (process start and imports included)\n"
            f"  generate itself: {generating:.2f} s = {figures['generate_rows_per_s']:,} rows/s\n"
            f"  CPU {cpu_seconds:.1f} s (2 threads); load average {os.getloadavg()[0]:.1f}\n"
            f"  {figures['rows_per_s']:,} rows/s, {figures['mb_per_s']} MB/s "
            f"(target >= {TARGET_ROWS_PER_S:,}: {speed_ok})\n"
            f"  peak RSS {peak_mb:,.0f} MB "
            f"(target < {TARGET_PEAK_RSS_MB:,}: {memory_ok})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
