"""End-to-end benchmark: CSV -> bronze -> silver -> gold, full run and a 1 % late batch.

For each size in --rows, generates a sample (seeded), then runs each variant in its own
subprocess and prints wall seconds and peak RSS (sum over the process tree, sampled with psutil,
so Spark's JVM counts):

- pipeline     `medallion run --steps bronze,silver,gold` on DuckDB (Delta commits, checks, lineage)
- bare_duckdb  baselines/bare_duckdb.py: CSV -> parquet -> clean -> aggregate, no Delta, no checks
- pyspark      baselines/pyspark_original.py: the original project's approach (PySpark local[2],
               one session per stage, parquet overwrite)
- pandas       baselines/pandas_pipeline.py
- pipeline_spark  the same `medallion run` with `--engine spark --spark-master local[2]` (full
               run only, Delta Spark commits), against the original PySpark approach in the same
               invocation (target: <= 0.75x its time at 10M rows), with its whole-stage codegen
               fallbacks counted from its log (target: none)
- spark_fixed  the Spark engine's fixed cost: session start (JVM, Delta and S3 jars) and the
               first Delta job (a one-row commit and read back), which every Spark run pays

then the pipeline's late batch (1 % of the rows, dated 2-8 weeks before the end) and a no-op rerun.
Targets (DESIGN.md): full run within 1.5x of bare DuckDB, >= 4x faster than PySpark, peak RSS
< 4 GB at 10M rows, late batch < 15 % of a full run.

    python bench/bench_e2e.py --rows 1000000            # one size
    python bench/bench_e2e.py --rows 1000000,10000000   # what `make bench` runs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
BASELINES = HERE / "baselines"
END = date(2025, 12, 31)
LATE_START, LATE_END = date(2025, 11, 5), date(2025, 12, 17)
GIB = 1 << 30


@dataclass
class Measure:
    seconds: float
    peak_rss: int
    returncode: int

    @property
    def rss_gib(self) -> float:
        return self.peak_rss / GIB


def measure(cmd: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> Measure:
    """Run `cmd`, sampling the RSS of its whole process tree every 50 ms."""
    out = log.open("w") if log else subprocess.DEVNULL
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    if log:
        out.close()  # type: ignore[union-attr]
    return Measure(seconds, peak, proc.returncode)


def generate_data(rows: int, folder: Path) -> tuple[Path, Path]:
    """The main file (rows sales over a year) and a late batch of rows/100 recent sales."""
    from medallion_lakehouse.generate import GenerateOptions, generate

    main, late = folder / "main", folder / "late"
    if not (main / "_manifest.json").exists():
        shutil.rmtree(main, ignore_errors=True)
        generate(GenerateOptions(rows=rows, seed=7, start=date(2025, 1, 1), end=END, files=1), main)
    if not (late / "_manifest.json").exists():
        shutil.rmtree(late, ignore_errors=True)
        opts = GenerateOptions(
            rows=max(rows // 100, 1), seed=8, start=LATE_START, end=LATE_END, files=1
        )
        generate(opts, late)
    return next(main.glob("*.csv")), next(late.glob("*.csv"))


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MEDALLION_")}


def pipeline_command(ws: Path, *engine_args: str) -> list[str]:
    return [sys.executable, "-m", "medallion_lakehouse", "run", "-w", str(ws),
            "--steps", "bronze,silver,gold", "--json", *engine_args]  # fmt: skip


def fresh_workspace(work: Path, name: str, main_csv: Path) -> Path:
    """An empty workspace whose landing folder holds (a hard link to) the main file."""
    ws = work / name
    shutil.rmtree(ws, ignore_errors=True)
    landing = ws / "data" / "landing"
    landing.mkdir(parents=True)
    os.link(main_csv, landing / "a_main.csv")
    return ws


def run_pipeline(
    main_csv: Path, late_csv: Path, work: Path, memory_limit: str | None = None
) -> dict[str, Measure]:
    ws = fresh_workspace(work, "ws", main_csv)
    cmd = pipeline_command(ws)
    env = clean_env()
    if memory_limit:
        env["MEDALLION_DUCKDB_MEMORY_LIMIT"] = memory_limit
    landing = ws / "data" / "landing"
    results = {"full": measure(cmd, env, work / "pipeline_full.log")}
    os.link(late_csv, landing / "b_late.csv")
    results["late"] = measure(cmd, env, work / "pipeline_late.log")
    results["noop"] = measure(cmd, env, work / "pipeline_noop.log")
    return results


def run_pipeline_spark(main_csv: Path, work: Path) -> Measure:
    """The full run on Spark local[2] (session start included: a CLI run pays it)."""
    ws = fresh_workspace(work, "ws_spark", main_csv)
    cmd = pipeline_command(ws, "--engine", "spark", "--spark-master", "local[2]")
    m = measure(cmd, clean_env(), work / "pipeline_spark.log")
    shutil.rmtree(ws, ignore_errors=True)
    return m


FIXED_COST = """
import shutil, sys, tempfile, time
started = time.perf_counter()
import pyarrow as pa
from medallion_lakehouse.engines.spark_engine import SparkEngine
from medallion_lakehouse.storage.delta import CommitInfo
engine = SparkEngine(master="local[2]")
session = time.perf_counter() - started
folder = tempfile.mkdtemp()
try:
    data = pa.table({"x": [1]})
    first = time.perf_counter()
    engine.write_arrow(data, folder + "/t", schema=data.schema, commit=CommitInfo("bench", "fixed"))
    engine.to_arrow(engine.read_delta(folder + "/t", schema=data.schema))
    print(f"session_start {session:.2f}")
    print(f"first_delta_job {time.perf_counter() - first:.2f}")
finally:
    shutil.rmtree(folder, ignore_errors=True)
"""


def codegen_fallbacks(log: Path) -> int:
    """Whole-stage codegen fallbacks in a Spark run's log: each follows a failed Janino compile,
    which Spark logs at ERROR (the level the engine keeps)."""
    if not log.exists():
        return 0
    return log.read_text(errors="replace").count("Failed to compile the generated Java code")


def run_spark_fixed(work: Path) -> dict[str, float]:
    """Session start and first Delta job of the Spark engine, in a fresh process."""
    proc = subprocess.run(
        [sys.executable, "-c", FIXED_COST], env=clean_env(), capture_output=True, text=True
    )
    figures = {}
    for line in proc.stdout.splitlines():
        name, _, value = line.partition(" ")
        figures[name] = float(value)
    (work / "spark_fixed.log").write_text(proc.stdout + proc.stderr)
    return figures


def run_baseline(name: str, main_csv: Path, work: Path) -> Measure:
    script = BASELINES / f"{name}.py"
    out = work / f"out_{name}"
    m = measure(
        [sys.executable, str(script), str(main_csv), "--out", str(out)],
        clean_env(),
        work / f"{name}.log",
    )
    shutil.rmtree(out, ignore_errors=True)
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000,10000000", help="Comma-separated sizes.")
    parser.add_argument(
        "--variants",
        default="pipeline,bare_duckdb,pyspark_original,pandas_pipeline,pipeline_spark,spark_fixed",
        help="Which variants to run.",
    )
    parser.add_argument("--work", type=Path, default=HERE / "results", help="Scratch folder.")
    parser.add_argument(
        "--duckdb-memory-limit",
        default=None,
        help="MEDALLION_DUCKDB_MEMORY_LIMIT for the pipeline runs, e.g. 3GB (default: DuckDB's).",
    )
    parser.add_argument("--json", type=Path, help="Also write the figures to this JSON file.")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    figures: dict[str, dict[str, dict[str, float]]] = {}
    for rows in (int(r) for r in args.rows.split(",")):
        work = args.work / f"rows_{rows}"
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        main_csv, late_csv = generate_data(rows, work / "data")
        size_mb = main_csv.stat().st_size / 1e6
        print(f"\n== {rows:,} rows ({size_mb:,.0f} MB CSV; generated in "
              f"{time.perf_counter() - t0:.1f}s) ==", flush=True)  # fmt: skip
        results: dict[str, Measure] = {}
        fixed: dict[str, float] = {}
        if "spark_fixed" in variants:
            fixed = run_spark_fixed(work)
        if "pipeline" in variants:
            pipeline = run_pipeline(main_csv, late_csv, work, args.duckdb_memory_limit)
            for phase, m in pipeline.items():
                results[f"pipeline {phase}"] = m
        for name in variants:
            if name == "pipeline_spark":
                results[name] = run_pipeline_spark(main_csv, work)
            elif name not in {"pipeline", "spark_fixed"}:
                results[name] = run_baseline(name, main_csv, work)
        print(f"{'variant':<22}{'seconds':>10}{'peak RSS GiB':>14}{'rc':>5}")
        for name, m in results.items():
            print(f"{name:<22}{m.seconds:>10.1f}{m.rss_gib:>14.2f}{m.returncode:>5}")
        figures[str(rows)] = {
            k: {"seconds": m.seconds, "peak_rss_gib": m.rss_gib, "rc": m.returncode}
            for k, m in results.items()
        }
        on_spark, original = results.get("pipeline_spark"), results.get("pyspark_original")
        if on_spark or fixed:
            print("spark:")
        if on_spark and original:
            ratio = on_spark.seconds / original.seconds
            print(f"  engine spark / original PySpark = {ratio:.2f}x   (target <= 0.75x at 10M)")
            figures[str(rows)]["spark_ratio"] = {"seconds": ratio}
        if on_spark:
            fallbacks = codegen_fallbacks(work / "pipeline_spark.log")
            print(f"  codegen fallbacks in its log    = {fallbacks}   (target 0)")
        if fixed:
            print(f"  fixed cost: session start       = {fixed.get('session_start', 0):.1f}s")
            print(f"  fixed cost: first Delta job     = {fixed.get('first_delta_job', 0):.1f}s")
            figures[str(rows)]["spark_fixed"] = fixed
        full = results.get("pipeline full")
        if full:
            print("targets:")
            bare = results.get("bare_duckdb")
            spark = results.get("pyspark_original")
            pandas = results.get("pandas_pipeline")
            if bare:
                ratio = full.seconds / bare.seconds
                print(f"  pipeline / bare DuckDB  = {ratio:.2f}x   (target <= 1.5x)")
            if spark:
                ratio = spark.seconds / full.seconds
                print(f"  PySpark / pipeline      = {ratio:.2f}x   (target >= 4x)")
            if pandas:
                print(f"  pandas / pipeline       = {pandas.seconds / full.seconds:.2f}x")
            on_spark = results.get("pipeline_spark")
            if on_spark:
                ratio = on_spark.seconds / full.seconds
                print(f"  engine spark / duckdb   = {ratio:.2f}x   (same pipeline, local[2])")
            print(f"  peak RSS                = {full.rss_gib:.2f} GiB (target < 4 GiB at 10M)")
            late = results["pipeline late"]
            print(f"  late batch / full run   = {late.seconds / full.seconds:.1%}  (target < 15%)")
            print(f"  no-op rerun             = {results['pipeline noop'].seconds:.1f}s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
