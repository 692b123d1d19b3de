"""DuckDB engine settings: memory limit and spill folder come from the workspace settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from medallion_lakehouse.config import load_settings
from medallion_lakehouse.engines import create_engine
from medallion_lakehouse.engines.duckdb_engine import DuckDBEngine
from medallion_lakehouse.errors import ConfigError


def _setting(engine: DuckDBEngine, name: str) -> str:
    return str(engine.raw.execute(f"SELECT current_setting('{name}')").fetchall()[0][0])


def test_memory_limit_and_spill_folder_from_settings(tmp_path: Path) -> None:
    (tmp_path / "medallion.toml").write_text('duckdb_memory_limit = "512MB"\n')
    engine = create_engine(load_settings(tmp_path))
    assert isinstance(engine, DuckDBEngine)
    assert _setting(engine, "memory_limit") == "488.2 MiB"  # DuckDB prints 512 MB in MiB
    assert _setting(engine, "temp_directory") == str(tmp_path / ".medallion" / "duckdb_tmp")


def test_default_keeps_duckdbs_own_limit(tmp_path: Path) -> None:
    engine = create_engine(load_settings(tmp_path))
    assert isinstance(engine, DuckDBEngine)
    assert _setting(engine, "memory_limit") != "488.2 MiB"


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
