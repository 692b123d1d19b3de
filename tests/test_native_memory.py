"""The native allocators' settings: made before delta-rs loads, never over the user's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from medallion_lakehouse import native_memory

VARIABLES = (
    "DELTARS_MAX_CONCURRENT_WRITERS",
    "DELTARS_MAX_IN_FLIGHT_UPLOAD_BYTES",
    "_RJEM_MALLOC_CONF",
)


def _environment_of_a_fresh_import(env: dict[str, str]) -> dict[str, str | None]:
    # The package's own import sets them, before anything in it has loaded delta-rs.
    code = (
        "import json, os, sys\n"
        "import medallion_lakehouse\n"
        "assert 'deltalake' not in sys.modules\n"
        f"print(json.dumps({{k: os.environ.get(k) for k in {VARIABLES!r}}}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    values: dict[str, str | None] = json.loads(out.stdout)
    return values


def test_importing_the_package_sets_the_allocator_defaults() -> None:
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    got = _environment_of_a_fresh_import(env)
    assert got == {
        "DELTARS_MAX_CONCURRENT_WRITERS": str(native_memory.CONCURRENT_WRITERS),
        "DELTARS_MAX_IN_FLIGHT_UPLOAD_BYTES": str(native_memory.IN_FLIGHT_UPLOAD_BYTES),
        "_RJEM_MALLOC_CONF": native_memory.DELTA_RS_JEMALLOC,
    }


def test_a_users_own_settings_win() -> None:
    mine = {
        "DELTARS_MAX_CONCURRENT_WRITERS": "4",
        "DELTARS_MAX_IN_FLIGHT_UPLOAD_BYTES": "-1",
        "_RJEM_MALLOC_CONF": "abort:false",
    }
    got = _environment_of_a_fresh_import({**os.environ, **mine})
    assert got == mine


@pytest.mark.parametrize("calls", [1, 2])
def test_release_unused_leaves_live_arrow_data_intact(calls: int) -> None:
    import pyarrow as pa

    table = pa.table({"x": list(range(100_000))})
    for _ in range(calls):
        native_memory.release_unused()
    assert table.column("x")[99_999].as_py() == 99_999
