"""How the native libraries under the pipeline hold memory, set once per process.

Three allocators share a run: delta-rs (its own jemalloc), Arrow (mimalloc) and DuckDB (its own
jemalloc, held to `duckdb_memory_limit`). Each keeps memory it has freed for reuse, and none of
them can reuse another's, so what bronze freed in delta-rs and Arrow was still resident while
silver filled DuckDB's limit: a 100M-row run in one process peaked at 9.2 GiB, its steps run
one per process at 3.5 / 4.4 / 3.1 GiB (docs/benchmarks.md, issue 15).
"""

from __future__ import annotations

import os

# delta-rs splits a partitioned write over this many writer tasks (default: one per core) behind
# a queue that does not wait for them: a producer faster than the Parquet encoders (bronze's
# multithreaded CSV parse; any stream on a loaded machine) fills it with the whole input. A
# 67M-row write into one partition peaked at 12.5 GiB with the default two writers and stayed
# at 1.4 GiB with one, in the same time (the pipeline's own engines keep the other core busy).
CONCURRENT_WRITERS = 1
# delta-rs keeps closed data files in memory until their upload lands, up to a quarter of the
# machine's memory clamped to 32 files of 100 MiB (3.2 GiB) per write; on a local disk under
# CPU load the queue fills. Four files in flight keep a store busy (delta-rs' own lower bound).
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
