"""Settings: defaults -> medallion.toml -> MEDALLION_* environment variables -> CLI flags.

The workspace folder roots every default path (DESIGN.md section 3); any path may be replaced by
an object-store URI that delta-rs understands (s3://, az://, gs://) plus `storage_options`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from medallion_lakehouse.errors import ConfigError

EngineName = Literal["duckdb", "spark"]
CONFIG_FILE_NAME = "medallion.toml"


class Settings(BaseSettings):
    """Everything a run can be configured with. Field names map to `MEDALLION_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="MEDALLION_", extra="forbid")

    workspace: Path = Field(default=Path(), description="Folder that roots the default layout.")
    engine: EngineName = Field(default="duckdb", description="Compute engine.")
    spark_master: str = Field(default="local[*]", description="spark.master for --engine spark.")
    spark_conf: dict[str, str] = Field(default_factory=dict, description="Extra Spark settings.")

    landing_dir: str | None = Field(default=None, description="Incoming raw files.")
    lake_dir: str | None = Field(default=None, description="Root of the Delta tables.")
    models_dir: str | None = Field(default=None, description="Churn model artifacts.")
    reports_dir: str | None = Field(default=None, description="HTML reports.")
    storage_options: dict[str, str] = Field(
        default_factory=dict, description="delta-rs storage options for object stores."
    )

    landing_settle_seconds: float = Field(
        default=1.0,
        ge=0.0,
        description="A landing file modified less than this long ago is waited for (at most this "
        "long, once per run); one that still changes, or changes while it is read, is left for a "
        "later run. Producers should write to a temporary name and rename.",
    )
    landing_verify: bool = Field(
        default=False,
        description="Hash every landing file again, even one whose path, size and mtime say it "
        "was already ingested (sha256 is a file's identity; the index only spares the read).",
    )
    landing_field_size_limit: int = Field(
        default=1 << 20,
        ge=1,
        le=1 << 30,
        description="Largest field of a CSV or JSONL landing file, in UTF-8 bytes (default "
        "1 MiB): a larger data field rejects its line, a larger CSV header field fails the file.",
    )
    landing_text_as_csv: bool = Field(
        default=False,
        description="Read .txt landing files as CSV (by default .txt files are not ingested).",
    )

    quarantine_fail_share: float = Field(
        default=0.20, ge=0.0, le=1.0, description="Fail a silver batch above this dropped share."
    )
    churn_horizon_days: int = Field(default=90, ge=1, description="Churn label horizon.")
    seed: int = Field(default=42, description="Seed for anything random (models, samples).")
    lock_wait_seconds: float = Field(default=0.0, ge=0.0, description="Wait for the lake lock.")
    lock_lease_seconds: float = Field(
        default=30.0,
        ge=1.0,
        description="Writer lease on an object-store lake: renewed every third of this; a lease "
        "not renewed for this long is a crashed writer's and may be taken over.",
    )
    unsafe_no_lock: bool = Field(
        default=False,
        description="Write to an object store that ignores conditional puts without any writer "
        "lock (only if you are sure a single writer ever runs); a warning is logged.",
    )
    # Bounded by default: with DuckDB's own default (80 % of RAM) a 10M-row run peaked at
    # 5.6 GiB, with 3GB at 3.6 GiB, run times within noise (docs/benchmarks.md).
    duckdb_memory_limit: str | None = Field(
        default="3GB",
        description="DuckDB memory_limit, e.g. '3GB' (default) or '80%' (DuckDB's own default); "
        "above it DuckDB spills to <workspace>/.medallion/duckdb_tmp.",
    )

    # -- derived locations --------------------------------------------------------------
    def _under(self, configured: str | None, default: str) -> str:
        if configured:
            if "://" in configured:
                return configured.rstrip("/")
            path = Path(configured)
            return str(path if path.is_absolute() else (self.workspace / path).resolve())
        return str((self.workspace / default).resolve())

    @property
    def landing_path(self) -> str:
        return self._under(self.landing_dir, "data/landing")

    @property
    def lake_path(self) -> str:
        return self._under(self.lake_dir, "data/lake")

    @property
    def models_path(self) -> str:
        return self._under(self.models_dir, "data/models")

    @property
    def reports_path(self) -> str:
        return self._under(self.reports_dir, "data/reports")

    def table_uri(self, name: str) -> str:
        """Location of a table such as `silver/sales` or `_meta/runs`."""
        return f"{self.lake_path}/{name}"


def load_settings(workspace: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings with the documented precedence.

    `overrides` are CLI flags; a value of None means "flag not given" and is ignored.
    """
    ws = Path(workspace or os.environ.get("MEDALLION_WORKSPACE") or ".").expanduser().resolve()
    toml_file = ws / CONFIG_FILE_NAME

    class _Resolved(Settings):
        model_config = SettingsConfigDict(
            env_prefix="MEDALLION_",
            extra="forbid",
            toml_file=toml_file if toml_file.is_file() else None,
        )

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    given = {k: v for k, v in overrides.items() if v is not None}
    given["workspace"] = ws
    try:
        return _Resolved(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(
            f"Invalid configuration ({problems}). Check {toml_file}, MEDALLION_* variables "
            "and command-line flags."
        ) from exc
