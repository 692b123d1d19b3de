"""Compute engines. `create_engine(settings)` picks one; Spark is imported only when asked for."""

from __future__ import annotations

from medallion_lakehouse.config import Settings
from medallion_lakehouse.engines.base import Engine
from medallion_lakehouse.errors import ConfigError


def create_engine(settings: Settings) -> Engine:
    if settings.engine == "duckdb":
        from medallion_lakehouse.engines.duckdb_engine import DuckDBEngine

        scratch = settings.workspace / ".medallion"
        return DuckDBEngine(
            settings.storage_options,
            memory_limit=settings.duckdb_memory_limit,
            temp_dir=scratch / "duckdb_tmp",
            cache_dir=scratch / "duckdb_cache",
        )
    if settings.engine == "spark":
        from medallion_lakehouse.engines.spark_engine import SparkEngine

        return SparkEngine(
            master=settings.spark_master,
            conf=settings.spark_conf,
            storage_options=settings.storage_options,
        )
    raise ConfigError(f"Unknown engine {settings.engine!r}: use duckdb or spark.")


__all__ = ["Engine", "create_engine"]
