"""How delta-rs and Arrow hold memory in a pipeline process, set once per process.

delta-rs (with its own jemalloc), Arrow (mimalloc) and DuckDB (its own jemalloc, held to
`duckdb_memory_limit`) share a run, and DuckDB's limit bounds only DuckDB. A 100M-row run in one
process peaked at 7.4-9.2 GiB, nearly all of it delta-rs buffering bronze's write; with these
settings 4.45 GiB (docs/benchmarks.md, fifth round of issue 15).
"""

from __future__ import annotations

import os

# delta-rs hash-splits a partitioned write over this many writer tasks (default: one per core)
# behind a repartition that pauses its input only while every task has data waiting. When all
# rows share one partition value (every bronze ingest) one task never gets any, so a producer
# faster than the Parquet encoder (bronze's threaded CSV parse) piles its batches up: a 67M-row
# write peaked at 12.5 GiB with two writers, 1.4 GiB with one (bench/bench_delta_write.py).
# delta-rs reads it once per process, so silver's twelve-month write gets one writer too: about
# 1.5 s of a 44 s run at 10M rows.
CONCURRENT_WRITERS = 1
# delta-rs keeps closed data files in memory until their upload lands, by default up to a
# quarter of the machine's memory clamped to 32 files of 100 MiB (3.2 GiB here) per write. For
# a slow object store; on a local disk it made no difference. Four files in flight is delta-rs'
# own lower bound for keeping a store busy.
IN_FLIGHT_UPLOAD_BYTES = 4 * 100 * 1024 * 1024
# delta-rs' jemalloc (prefixed `_rjem_`) returns freed pages from a background thread within a
# second, instead of keeping them until its next allocation: after a 10M-row bronze ingest the
# process held 0.83 GiB without this and 0.52 GiB with it (Arrow's pool released in both).
DELTA_RS_JEMALLOC = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"


def configure() -> None:
    """Set the allocators' environment before delta-rs loads (it reads it once, at load).

    A setting the user made in the environment wins, and a process that imported deltalake
    before this package keeps the library's defaults.
    """
    os.environ.setdefault("DELTARS_MAX_CONCURRENT_WRITERS", str(CONCURRENT_WRITERS))
    os.environ.setdefault("DELTARS_MAX_IN_FLIGHT_UPLOAD_BYTES", str(IN_FLIGHT_UPLOAD_BYTES))
    os.environ.setdefault("_RJEM_MALLOC_CONF", DELTA_RS_JEMALLOC)


def release_unused() -> None:
    """Hand memory Arrow's pool holds free back to the system (between steps)."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
