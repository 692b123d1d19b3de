"""Seconds for bronze -> silver -> gold on Spark (local[2]) against DuckDB, same data, same script.

    .venv/bin/python bench/bench_spark.py --rows 1000000
    .venv/bin/python bench/bench_spark.py --rows 50000 --master 'local[2]'

Spark's session start (about 5 s) is reported separately from the steps: it is paid once per
process. Each engine runs in a fresh workspace over the same generated landing files.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

from medallion_lakehouse.bronze.ingest import ingest
from medallion_lakehouse.config import load_settings
from medallion_lakehouse.engines.base import Engine
from medallion_lakehouse.engines.duckdb_engine import DuckDBEngine
from medallion_lakehouse.generate import GenerateOptions, generate
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.pipeline.context import StepContext


def steps() -> list[tuple[str, object]]:
    """The step functions that exist (silver and gold may be absent in early checkouts)."""
    found: list[tuple[str, object]] = []
    for name in ("silver", "gold"):
        try:
            module = __import__(f"medallion_lakehouse.{name}.step", fromlist=["run"])
        except ModuleNotFoundError:
            continue
        found.append((name, module.run))
    return found


def run(engine: Engine, workspace: Path, files: list[Path]) -> dict[str, float]:
    landing = workspace / "data" / "landing"
    landing.mkdir(parents=True)
    for f in files:
        shutil.copyfile(f, landing / f.name)
    timings: dict[str, float] = {}
    with Lake(load_settings(workspace, engine=engine.name), engine=engine) as lake:
        ctx = StepContext(run_id="bench")
        started = time.perf_counter()
        ingest(lake, run_id=ctx.run_id)
        timings["bronze"] = time.perf_counter() - started
        for name, step in steps():
            started = time.perf_counter()
            result = step(lake, ctx)  # type: ignore[operator]
            timings[name] = time.perf_counter() - started
            if result.status != "ok":
                raise SystemExit(f"{engine.name} {name} failed: {result.message}")
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspaces")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-spark-"))
    try:
        data = root / "generated"
        generate(
            GenerateOptions(rows=args.rows, seed=3, start=date(2025, 1, 1), end=date(2025, 12, 31)),
            data,
        )
        files = sorted(p for p in data.iterdir() if not p.name.startswith(("_", ".")))

        duck = DuckDBEngine()
        try:
            on_duckdb = run(duck, root / "duckdb", files)
        finally:
            duck.close()

        from medallion_lakehouse.engines.spark_engine import SparkEngine, stop_spark

        started = time.perf_counter()
        spark = SparkEngine(master=args.master)
        session_start = time.perf_counter() - started
        try:
            on_spark = run(spark, root / "spark", files)
        finally:
            spark.close()
            stop_spark()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    print(
        f"rows={args.rows:,}  spark master={args.master}  spark session start {session_start:.1f} s"
    )
    print(f"{'step':<8} {'duckdb s':>10} {'spark s':>10} {'spark/duckdb':>13}")
    for step in on_duckdb:
        d, s = on_duckdb[step], on_spark[step]
        print(f"{step:<8} {d:>10.2f} {s:>10.2f} {s / d if d else float('nan'):>12.1f}x")
    d, s = sum(on_duckdb.values()), sum(on_spark.values())
    print(f"{'total':<8} {d:>10.2f} {s:>10.2f} {s / d:>12.1f}x")


if __name__ == "__main__":
    main()
