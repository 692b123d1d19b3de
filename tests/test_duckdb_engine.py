"""DuckDB engine settings: memory limit and spill folder come from the workspace settings."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from deltalake.transaction import AddAction

from medallion_lakehouse.config import load_settings
from medallion_lakehouse.engines import create_engine, duckdb_engine
from medallion_lakehouse.engines.duckdb_engine import DuckDBEngine
from medallion_lakehouse.errors import ConfigError
from medallion_lakehouse.storage.delta import CommitInfo, WriteSpec, history, write_arrow


def _setting(engine: DuckDBEngine, name: str) -> str:
    return str(engine.raw.execute(f"SELECT current_setting('{name}')").fetchall()[0][0])


def test_memory_limit_and_spill_folder_from_settings(tmp_path: Path) -> None:
    (tmp_path / "medallion.toml").write_text('duckdb_memory_limit = "512MB"\n')
    engine = create_engine(load_settings(tmp_path))
    assert isinstance(engine, DuckDBEngine)
    assert _setting(engine, "memory_limit") == "488.2 MiB"  # DuckDB prints 512 MB in MiB
    assert _setting(engine, "temp_directory") == str(tmp_path / ".medallion" / "duckdb_tmp")


def test_default_limit_is_3gb_and_a_share_of_ram_can_be_asked_for(tmp_path: Path) -> None:
    engine = create_engine(load_settings(tmp_path))
    assert isinstance(engine, DuckDBEngine)
    assert _setting(engine, "memory_limit") == "2.7 GiB"  # 3 GB printed in GiB
    (tmp_path / "medallion.toml").write_text('duckdb_memory_limit = "80%"\n')
    engine = create_engine(load_settings(tmp_path))
    assert isinstance(engine, DuckDBEngine)
    assert _setting(engine, "memory_limit") not in ("2.7 GiB", "")


def test_unreadable_memory_limit_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "medallion.toml").write_text('duckdb_memory_limit = "lots"\n')
    with pytest.raises(ConfigError, match="duckdb_memory_limit 'lots'"):
        create_engine(load_settings(tmp_path))


def test_a_query_larger_than_the_memory_limit_spills_into_the_workspace(tmp_path: Path) -> None:
    # A fresh workspace has no .medallion/ yet; DuckDB must still find a place to spill.
    (tmp_path / "medallion.toml").write_text('duckdb_memory_limit = "64MB"\n')
    engine = create_engine(load_settings(tmp_path))
    assert isinstance(engine, DuckDBEngine)
    engine.raw.execute("SET threads = 1")
    # Sorting ~300 MB of strings cannot happen inside 64 MB without spilling.
    rows = engine.raw.execute(
        "SELECT count(*) FROM (SELECT md5(i::VARCHAR) || repeat('x', 40) AS s "
        "FROM range(3000000) t(i) ORDER BY s)"
    ).fetchall()
    assert rows == [(3_000_000,)]
    assert (tmp_path / ".medallion" / "duckdb_tmp").is_dir()


SALES = pa.schema([("sale_id", pa.string()), ("sale_month", pa.string())])


def _read(engine: DuckDBEngine, uri: str) -> list[tuple[str, str | None]]:
    table = engine.read_delta(uri, schema=SALES)
    rows = engine.to_arrow(table).to_pylist()
    return sorted((r["sale_id"], r["sale_month"]) for r in rows)


def test_partition_values_come_from_the_log_not_the_folder_names(tmp_path: Path) -> None:
    """A file committed outside its `col=value/` folder must still read with its logged value."""
    uri = str(tmp_path / "t")
    commit = CommitInfo(run_id="r", step="test")
    write_arrow(
        uri,
        pa.table({"sale_id": ["a"], "sale_month": ["2025-01"]}, schema=SALES),
        WriteSpec(schema=SALES, commit=commit, partition_by=["sale_month"]),
    )
    engine = DuckDBEngine()
    assert _read(engine, uri) == [("a", "2025-01")]
    # Another writer's file in a folder that names no partition (as a foreign writer may).
    (tmp_path / "t" / "elsewhere").mkdir()
    pq.write_table(pa.table({"sale_id": ["b"]}), tmp_path / "t" / "elsewhere" / "b.parquet")
    add = AddAction(
        path="elsewhere/b.parquet",
        size=(tmp_path / "t" / "elsewhere" / "b.parquet").stat().st_size,
        partition_values={"sale_month": "2025-02"},
        modification_time=0,
        data_change=True,
        stats='{"numRecords":1}',
    )
    DeltaTable(uri).create_write_transaction(
        [add], mode="append", schema=SALES, partition_by=["sale_month"]
    )
    assert _read(engine, uri) == [("a", "2025-01"), ("b", "2025-02")]


@pytest.mark.parametrize("folder", ["my lake", "it's"])  # delta-rs itself decodes "%20"
def test_tables_under_unusual_folder_names_read_back(tmp_path: Path, folder: str) -> None:
    uri = str(tmp_path / folder / "t")
    data = pa.table({"sale_id": ["a", "b"], "sale_month": ["2025-01", None]}, schema=SALES)
    write_arrow(
        uri,
        data,
        WriteSpec(
            schema=SALES, commit=CommitInfo(run_id="r", step="test"), partition_by=["sale_month"]
        ),
    )
    assert _read(DuckDBEngine(), uri) == [("a", "2025-01"), ("b", None)]


class _Refusing:
    """A connection that refuses to reset the insertion order, as DuckDB 2.0 refuses a call
    on a connection whose failed stream is still open ("connection is busy")."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def execute(self, sql: str, *args: object) -> None:
        self.calls.append(sql)
        if sql.endswith("= true"):
            raise duckdb.Error("Resource In Use Error: connection is busy with another call")


def test_a_refused_reset_does_not_hide_why_the_write_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connection = _Refusing()
    monkeypatch.setattr(DuckDBEngine, "raw", property(lambda self: connection))
    engine = DuckDBEngine()
    with pytest.raises(OSError, match="No space left on device"), engine.unordered():
        raise OSError("No space left on device")
    assert connection.calls == [
        "SET preserve_insertion_order = false",
        "SET preserve_insertion_order = true",
    ]
    # With nothing failing, a refused reset is an error of its own.
    with pytest.raises(duckdb.Error, match="busy"), engine.unordered():
        pass


def test_a_failing_release_does_not_hide_why_the_step_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from medallion_lakehouse.engines.cache import StepCache

    engine = DuckDBEngine()
    try:

        def refuse(self: DuckDBEngine, table: object) -> None:
            raise duckdb.Error("Resource In Use Error: connection is busy with another call")

        monkeypatch.setattr(DuckDBEngine, "release_cached", refuse)
        table = engine.from_arrow(pa.table({"x": [1, 2, 3]}))
        with pytest.raises(OSError, match="No space"), StepCache(engine) as cache:
            cache(table)
            raise OSError("No space left on device")
        with pytest.raises(duckdb.Error, match="busy"), StepCache(engine) as cache:
            cache(table)
    finally:
        engine.close()


def test_default_limit_loads_duckdb_only_when_a_query_needs_it(tmp_path: Path) -> None:
    # A rerun with nothing new never queries: with the default limit it must not pay for
    # importing DuckDB (0.4 s); asking for the connection loads it and applies the limit.
    code = (
        "import sys\n"
        "from medallion_lakehouse.config import load_settings\n"
        "from medallion_lakehouse.engines import create_engine\n"
        "engine = create_engine(load_settings(sys.argv[1]))\n"
        "print('duckdb' in sys.modules)\n"
        "print(engine.raw.execute(\"SELECT current_setting('memory_limit')\").fetchone()[0])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["False", "2.7 GiB"]


# -- expression writes: DuckDB writes the Parquet files, delta-rs commits them ---------------
TYPED = pa.schema(
    [
        ("sale_id", pa.string()),
        ("total", pa.decimal128(12, 2)),
        ("at", pa.timestamp("us", tz="UTC")),
        ("sale_month", pa.string()),
    ]
)


def _sales(engine: DuckDBEngine, ids: list[str], months: list[str | None]) -> ir.Table:
    when = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    return engine.from_arrow(
        pa.table(
            {
                "sale_id": ids,
                "total": [Decimal(f"{i}.25") for i in range(len(ids))],
                "at": [when] * len(ids),
                "sale_month": months,
            },
            schema=TYPED,
        )
    )


def test_expression_writes_commit_duckdb_parquet_files_with_delta_stats(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    engine = DuckDBEngine()
    months = ["2025-01", "a b/c=d", None, "2025-01"]  # escaped folder names and a null value
    spec = WriteSpec(
        schema=TYPED, commit=CommitInfo(run_id="r1", step="test"), partition_by=["sale_month"]
    )
    out = engine.write_delta(_sales(engine, ["s1", "s2", "s3", "s4"], months), uri, spec)
    assert (out.version, out.rows, out.files) == (0, 4, 3)
    table = DeltaTable(uri)
    assert table.history(1)[0]["run_id"] == "r1"
    got = table.to_pyarrow_table().sort_by("sale_id")
    assert got.column("sale_month").to_pylist() == months
    assert got.column("total").to_pylist() == [Decimal("0.25"), Decimal("1.25"), Decimal("2.25"),
                                               Decimal("3.25")]  # fmt: skip
    assert got.schema.field("at").type == pa.timestamp("us", tz="UTC")
    # Every add action carries Delta statistics from the file's footer.
    actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    assert sorted(a["num_records"] for a in actions) == [1, 1, 2]
    january = next(a for a in actions if a["partition.sale_month"] == "2025-01")
    assert (january["min.sale_id"], january["max.sale_id"]) == ("s1", "s4")
    assert january["null_count.total"] == 0
    # The engine's own reader agrees (the escaped folders send it through Arrow).
    back = engine.to_arrow(engine.read_delta(uri, schema=TYPED)).sort_by("sale_id")
    assert back.column("sale_month").to_pylist() == months


def test_expression_writes_replace_only_the_given_partitions(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    engine = DuckDBEngine()
    commit = CommitInfo(run_id="r", step="test")
    spec = WriteSpec(schema=TYPED, commit=commit, partition_by=["sale_month"])
    engine.write_delta(_sales(engine, ["a", "b"], ["2025-01", "2025-02"]), uri, spec)
    replace = WriteSpec(
        schema=TYPED,
        commit=commit,
        partition_by=["sale_month"],
        replace={"sale_month": ["2025-01"]},
    )
    engine.write_delta(_sales(engine, ["c"], ["2025-01"]), uri, replace)
    assert sorted(DeltaTable(uri).to_pyarrow_table().column("sale_id").to_pylist()) == ["b", "c"]
    # `medallion history` shows the write's metrics, as for a commit delta-rs' writer made.
    metrics = history(uri, limit=1)[0]["operationMetrics"]
    assert {k: metrics[k] for k in ("num_added_rows", "num_added_files", "num_removed_files")} == {
        "num_added_rows": 1,
        "num_added_files": 1,
        "num_removed_files": 1,
    }
    # A replacement with no rows still empties its partition, in one commit.
    empty = _sales(engine, ["x"], ["2025-01"]).limit(0)
    out = engine.write_delta(empty, uri, replace)
    assert out.version == 2 and out.rows == 0
    assert DeltaTable(uri).to_pyarrow_table().column("sale_id").to_pylist() == ["b"]
    # Appending nothing commits nothing.
    assert engine.write_delta(empty, uri, spec).version == 2


def test_a_write_known_to_be_small_streams_into_delta_rs(tmp_path: Path) -> None:
    engine = DuckDBEngine()
    commit = CommitInfo(run_id="r", step="test")
    for rows, name in ((None, "unknown"), (4, "small")):
        uri = str(tmp_path / name)
        spec = WriteSpec(schema=TYPED, commit=commit, partition_by=["sale_month"], rows=rows)
        engine.write_delta(_sales(engine, ["a", "b"], ["2025-01", "2025-02"]), uri, spec)
        files = sorted(p.name for p in (tmp_path / name).rglob("*.parquet"))
        # DuckDB's COPY names files part-<uuid>.parquet; delta-rs part-00000-<uuid>-c000...
        assert len(files) == 2
        assert all(("-c000" in f) == (rows is not None) for f in files), files
        assert sorted(DeltaTable(uri).to_pyarrow_table().column("sale_id").to_pylist()) == [
            "a",
            "b",
        ]


def _cache_files(workspace: Path) -> list[str]:
    folder = workspace / ".medallion" / "duckdb_cache"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_a_cache_above_its_bound_is_a_database_file_that_goes_with_its_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duckdb_engine, "CACHE_MEMORY_MAX_ROWS", 2)
    engine = create_engine(load_settings(tmp_path))
    assert isinstance(engine, DuckDBEngine)
    try:
        table = engine.from_arrow(pa.table({"x": [1, 2, 3]}))
        small = engine.cache(table, rows=2)
        unknown = engine.cache(table)  # no bound: memory, as before
        assert _cache_files(tmp_path) == []
        big = engine.cache(table.mutate(y=table.x * 2), rows=3)
        assert f"cache-{os.getpid()}.duckdb" in _cache_files(tmp_path)  # and its WAL
        assert duckdb_engine.CACHE_DB in engine._sql(big)
        assert engine.to_arrow(big.order_by("x")).to_pydict() == {"x": [1, 2, 3], "y": [2, 4, 6]}
        for cached in (small, unknown):
            assert duckdb_engine.CACHE_DB not in engine._sql(cached)
            engine.release_cached(cached)
        assert _cache_files(tmp_path)  # still holds `big`
        engine.release_cached(big)
        assert _cache_files(tmp_path) == []
    finally:
        engine.close()


def test_a_failed_step_and_a_closed_engine_leave_no_cache_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medallion_lakehouse.engines.cache import StepCache

    monkeypatch.setattr(duckdb_engine, "CACHE_MEMORY_MAX_ROWS", 0)
    engine = create_engine(load_settings(tmp_path))
    table = engine.from_arrow(pa.table({"x": [1, 2, 3]}))
    with pytest.raises(OSError, match="No space"), StepCache(engine) as cache:
        cache(table, rows=3)
        assert _cache_files(tmp_path)
        raise OSError("No space left on device")
    assert _cache_files(tmp_path) == []
    engine.cache(table, rows=3)  # never released: closing the engine removes it
    assert _cache_files(tmp_path)
    engine.close()
    assert _cache_files(tmp_path) == []


def test_only_cache_files_of_processes_that_are_gone_are_removed(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead, alive = int(gone.stdout), os.getppid()
    for name in (f"cache-{dead}.duckdb", f"cache-{dead}.duckdb.wal", f"cache-{alive}.duckdb",
                 "cache-notes.duckdb", "lake.duckdb"):  # fmt: skip
        (tmp_path / name).write_bytes(b"x")
    removed = duckdb_engine.remove_stale_cache_files(tmp_path)
    assert removed == [tmp_path / f"cache-{dead}.duckdb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"cache-{alive}.duckdb",
        "cache-notes.duckdb",
        "lake.duckdb",
    ]
