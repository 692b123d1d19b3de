"""Peak memory of one streamed delta-rs write into a partitioned table, by writer count.

    .venv/bin/python bench/bench_delta_write.py --rows 30000000 --writers 1,default

Streams bronze-shaped batches (one million rows of a generated landing file, repeated) as fast as
delta-rs takes them into a table partitioned by `_ingest_date`, the way bronze ingests a file,
with the project's writer properties. Each variant runs in a fresh process, because delta-rs reads
`DELTARS_MAX_CONCURRENT_WRITERS` from the environment; `default` leaves it unset (delta-rs then
uses one writer per core). Prints seconds and peak RSS (sampled every 0.2 s) per variant.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

CHILD_FLAG = "--child"


def _child(rows: int, folder: Path) -> None:
    import psutil
    import pyarrow as pa
    from deltalake import write_deltalake

    from medallion_lakehouse.bronze import ingest, readers
    from medallion_lakehouse.bronze.contract import BRONZE_SALES
    from medallion_lakehouse.generate import GenerateOptions, generate
    from medallion_lakehouse.storage import delta

    landing = folder / "landing"
    generate(
        GenerateOptions(rows=1_000_000, seed=7, start=date(2025, 1, 1), end=date(2025, 12, 31)),
        landing,
    )
    path = next(landing.glob("*.csv"))
    report = readers.ParseReport()
    header = readers.read_csv_header(path)
    assert header is not None
    report.use_header(header.cmap)
    lineage = ingest.Lineage(path.name, "0" * 64, "bench", datetime.now(UTC), 1)
    base = list(ingest._lineage(readers.stream_csv_fast(path, header, report, None), lineage))
    per_round = sum(b.num_rows for b in base)

    def batches() -> object:
        for _ in range(max(rows // per_round, 1)):
            yield from base

    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        me = psutil.Process()
        while not done.is_set():
            peak = max(peak, me.memory_info().rss)
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    spec = delta.WriteSpec(
        schema=BRONZE_SALES.schema,
        commit=delta.CommitInfo("bench", "bench"),
        unique_columns=BRONZE_SALES.unique_columns,
    )
    started = time.perf_counter()
    write_deltalake(
        str(folder / "table"),
        pa.RecordBatchReader.from_batches(BRONZE_SALES.schema, batches()),  # type: ignore[arg-type]
        partition_by=["_ingest_date"],
        writer_properties=delta._writer_properties(spec),
    )
    seconds = time.perf_counter() - started
    done.set()
    print(
        json.dumps({"seconds": seconds, "peak_rss": peak, "rows": per_round * (rows // per_round)})
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=30_000_000)
    parser.add_argument("--writers", default="1,default", help="comma-separated: N or default")
    args = parser.parse_args()
    print(f"{'writers':<10}{'rows':>12}{'seconds':>10}{'peak RSS GiB':>14}")
    for writers in args.writers.split(","):
        env = dict(os.environ)
        env.pop("DELTARS_MAX_CONCURRENT_WRITERS", None)
        if writers != "default":
            env["DELTARS_MAX_CONCURRENT_WRITERS"] = writers
        else:
            # The package sets its own default when imported: `default` means delta-rs' own.
            env["DELTARS_MAX_CONCURRENT_WRITERS"] = str(os.cpu_count() or 1)
        with tempfile.TemporaryDirectory(prefix="bench_delta_write_") as tmp:
            out = subprocess.run(
                [sys.executable, __file__, CHILD_FLAG, str(args.rows), tmp],
                env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
        got = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{writers:<10}{got['rows']:>12,}{got['seconds']:>10.1f}"
            f"{got['peak_rss'] / 2**30:>14.2f}"
        )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == CHILD_FLAG:
        _child(int(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
