"""Settings: defaults -> medallion.toml -> MEDALLION_* environment variables -> CLI flags.

The workspace folder roots every default path (DESIGN.md section 3); any path may be replaced by
an object-store URI that delta-rs understands (s3://, az://, gs://) plus `storage_options`.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from medallion_lakehouse.errors import ConfigError

if TYPE_CHECKING:
    from pydantic_settings import (
        PydanticBaseSettingsSource,
    )

EngineName = Literal["duckdb", "spark"]
SeverityName = Literal["warn", "drop", "fail"]
CONFIG_FILE_NAME = "medallion.toml"
ENV_PREFIX = "MEDALLION_"

# MEDALLION_* variables the project reads itself, outside Settings: never warned about as unknown.
# One place for all of them (tests/test_config_errors.py greps the code for any missing here).
OTHER_ENV_VARS: frozenset[str] = frozenset(
    {
        "MEDALLION_FAULT",  # faults.py: crash-test fault points
        "MEDALLION_SPARK_JARS",  # engines/spark_session.py: a folder of the Delta and S3 jars
        "MEDALLION_REQUIRE_ALL",  # .ci/run, tests/conftest.py: a skipped test fails in CI
        "MEDALLION_SEED_DATA",  # tests/conftest.py: the seed data folder
        "MEDALLION_CHROMIUM",  # scripts/setup_browser.sh, browser tests
        "MEDALLION_BIN",  # orchestration/airflow: the `medallion` the DAG's tasks call
        "MEDALLION_AIRFLOW_VENV",  # tests/test_airflow.py
        "MEDALLION_AIRFLOW_CATCHUP",  # orchestration/airflow/dags/medallion_pipeline.py ...
        "MEDALLION_AIRFLOW_LANDING_MODE",
        "MEDALLION_AIRFLOW_MAX_RETRY_DELAY_SECONDS",
        "MEDALLION_AIRFLOW_RETRIES",
        "MEDALLION_AIRFLOW_RETRY_DELAY_SECONDS",
        "MEDALLION_AIRFLOW_SCHEDULE",
        "MEDALLION_AIRFLOW_START_DATE",
        "MEDALLION_AIRFLOW_TASK_TIMEOUT_MINUTES",
    }
)


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# An alias is read from `_rescued_data` with a JSON path (`$.name`), which DuckDB and Spark
# read alike only for plain names: letters, digits, spaces, `_` and `-`.
_ALIAS_RE = re.compile(r"^[A-Za-z0-9 _-]+$")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `90s`, `15m`, `12h`, `2d` or `1w`; ValueError otherwise."""
    found = _DURATION_RE.match(text)
    if not found:
        raise ValueError(
            f"{text!r} is not a duration: write a number and a unit, s, m, h, d or w "
            '(e.g. "2d", "12h")'
        )
    return float(found[1]) * _DURATION_UNITS[found[2]]


class RuleSetting(BaseModel):
    """`[rules.NAME]` in medallion.toml: overrides of one declared rule (silver/rules.py)."""

    model_config = ConfigDict(extra="forbid")

    severity: SeverityName | None = None
    fail_share: float | None = Field(default=None, ge=0.0, le=1.0)


class ReferenceSetting(BaseModel):
    """`[reference]`: small reference tables read from files under the workspace."""

    model_config = ConfigDict(extra="forbid")

    products: str | None = None  # a CSV with a `product` column (one product a row)
    stores: str | None = None  # a CSV with a `store_id` column (known stores)


class FreshnessSetting(BaseModel):
    """`[freshness]`: how old the newest sale and the newest ingested file may be."""

    model_config = ConfigDict(extra="forbid")

    warn_after: str | None = None
    error_after: str | None = None

    @field_validator("warn_after", "error_after")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @property
    def warn_seconds(self) -> float | None:
        return None if self.warn_after is None else parse_duration(self.warn_after)

    @property
    def error_seconds(self) -> float | None:
        return None if self.error_after is None else parse_duration(self.error_after)


# DuckDB's memory_limit unless the settings say otherwise (see Settings.duckdb_memory_limit).
DEFAULT_DUCKDB_MEMORY_LIMIT = "3GB"


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
    rules: dict[str, RuleSetting] = Field(
        default_factory=dict,
        description="Per-rule severity (warn | drop | fail) and fail_share, by rule name "
        "(`medallion rules` lists them and where each value came from).",
    )
    columns: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Source column aliases: canonical column -> names seen in feeds "
        "(case-insensitive), applied from bronze's _rescued_data on the way into silver.",
    )
    reference: ReferenceSetting = Field(
        default_factory=ReferenceSetting,
        description="Reference files under the workspace: products (the catalogue) and stores.",
    )
    freshness: FreshnessSetting = Field(
        default_factory=FreshnessSetting,
        description="warn_after / error_after: the newest sale_date or ingested file older "
        "than this warns / fails the run (exit 3).",
    )
    # Bounded by default: with DuckDB's own default (80 % of RAM) a 10M-row run peaked at
    # 5.6 GiB, with 3GB at 3.6 GiB, run times within noise (docs/benchmarks.md, 2026-11-28).
    duckdb_memory_limit: str | None = Field(
        default=DEFAULT_DUCKDB_MEMORY_LIMIT,
        description="DuckDB memory_limit, e.g. '3GB' (default) or '80%' (DuckDB's own default); "
        "above it DuckDB spills to <workspace>/.medallion/duckdb_tmp.",
    )

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, value: dict[str, RuleSetting]) -> dict[str, RuleSetting]:
        # Imported here: the rules live with silver, which imports nothing of the settings.
        from medallion_lakehouse.silver.rules import check_override

        for name, override in value.items():
            check_override(name, override.severity, override.fail_share)
        return value

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        from medallion_lakehouse.bronze.contract import SOURCE_COLUMNS

        owner: dict[str, str] = {}
        for column, aliases in value.items():
            if column not in SOURCE_COLUMNS:
                guess = difflib.get_close_matches(column, SOURCE_COLUMNS, n=1)
                hint = f" (did you mean {guess[0]!r}?)" if guess else ""
                raise ValueError(
                    f"{column!r} is not a source column{hint}; the columns are "
                    f"{', '.join(SOURCE_COLUMNS)}"
                )
            for alias in aliases:
                key = alias.strip().lower()
                if not _ALIAS_RE.match(alias):
                    raise ValueError(
                        f"alias {alias!r} of {column}: use letters, digits, spaces, _ or - only"
                    )
                if key in SOURCE_COLUMNS:
                    raise ValueError(
                        f"alias {alias!r} of {column} is itself a source column: remove it"
                    )
                if key in owner and owner[key] != column:
                    raise ValueError(
                        f"alias {alias!r} is given for both {owner[key]} and {column}: keep one"
                    )
                owner[key] = column
        return value

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


def known_env_vars() -> frozenset[str]:
    """Every MEDALLION_* variable that means something: one per setting, plus OTHER_ENV_VARS."""
    return frozenset(f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields) | (
        OTHER_ENV_VARS
    )


def _closest(name: str, candidates: Iterable[str], prefix: str = "") -> str | None:
    """The candidate most like `name` (compared without the shared `prefix`), if any is close."""
    by_suffix = {c[len(prefix) :].lower(): c for c in candidates}
    found = difflib.get_close_matches(name[len(prefix) :].lower(), list(by_suffix), n=1)
    return by_suffix[found[0]] if found else None


def unknown_env_warnings(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning per MEDALLION_* variable that is neither a setting nor used by the project.

    Unlike an unknown key in medallion.toml (an error), such a variable is silently ignored by
    the settings, so a typo in a name would otherwise go unnoticed.
    """
    environ = os.environ if environ is None else environ
    known = known_env_vars()
    warnings = []
    for name in sorted(environ):
        upper = name.upper()  # settings match environment names case-insensitively
        if not upper.startswith(ENV_PREFIX) or upper in known:
            continue
        guess = _closest(upper, known, ENV_PREFIX)
        hint = f" (did you mean {guess}?)" if guess else ""
        warnings.append(f"{name} is set but is not a medallion setting: it is ignored{hint}.")
    return warnings


def _read_toml(toml_file: Path) -> dict[str, Any]:
    """medallion.toml parsed, or a ConfigError naming the file, line and column."""
    try:
        return tomllib.loads(toml_file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11 puts the position in the message only: "Invalid value (at line 2, column 12)"
        message = str(exc)
        where = re.search(r"\(at line (\d+), column (\d+)\)", message)
        reason = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", message)
        place = f"{toml_file}:{where[1]}:{where[2]}" if where else str(toml_file)
        raise ConfigError(
            f"{place}: invalid TOML ({reason}). Fix the syntax there: `key = value`, strings "
            'in quotes (engine = "duckdb"), tables as [name].'
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{toml_file}: cannot be read as UTF-8 text ({exc}).") from exc


def _toml_line(toml_file: Path, key: str) -> int | None:
    """The line where `key` is set (`key = ...` or a `[key]` table) in medallion.toml."""
    # `[key]`, `[key.sub]` (a table of tables such as [rules.NAME]) or `key = ...`
    pattern = re.compile(rf"^\s*(\[\s*)?[\"']?{re.escape(key)}[\"']?\s*(=|\]|\.)")
    try:
        lines = toml_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    return next((i for i, line in enumerate(lines, 1) if pattern.match(line)), None)


def _env_name(field: str, environ: Mapping[str, str]) -> str | None:
    """The MEDALLION_* variable that set `field`, if one is set."""
    wanted = f"{ENV_PREFIX}{field.upper()}"
    return next((k for k in environ if k.upper() == wanted), None)


def _problem(
    err: Mapping[str, Any], toml_file: Path, toml: Mapping[str, Any], flags: Mapping[str, Any]
) -> str:
    """One validation error as `where: what`, where is the flag, variable or file line."""
    loc = [str(p) for p in err["loc"]]
    field = loc[0] if loc else "?"
    env = _env_name(field, os.environ)
    if field in flags:
        where = f"--{field.replace('_', '-')}"
    elif env is not None:
        where = env
    elif field in toml:
        line = _toml_line(toml_file, field)
        where = f"{toml_file}:{line}" if line else str(toml_file)
    else:
        where = "settings"
    name = ".".join(loc)
    if err["type"] == "extra_forbidden":
        guess = _closest(field, Settings.model_fields)
        hint = f" (did you mean {guess!r}?)" if guess else ""
        return f"{where}: unknown setting {name!r}{hint}: remove or rename it"
    got = repr(err.get("input"))
    got = got if len(got) <= 60 else got[:57] + "..."
    return f"{where}: {name} = {got}: {err['msg']}"


def _json_example(field: str) -> str:
    info = Settings.model_fields.get(field)
    origin = get_origin(info.annotation) if info is not None else None
    return '\'["a", "b"]\'' if origin is list else '\'{"KEY": "value"}\''


def load_settings(workspace: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings with the documented precedence.

    `overrides` are CLI flags; a value of None means "flag not given" and is ignored.
    Every configuration mistake raises one ConfigError naming the file line, variable or flag.
    """
    ws = Path(workspace or os.environ.get("MEDALLION_WORKSPACE") or ".").expanduser().resolve()
    toml_file = ws / CONFIG_FILE_NAME
    toml = _read_toml(toml_file) if toml_file.is_file() else {}

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
        resolved = _Resolved(**given)
        _check_reference(resolved, toml_file)
        return resolved
    except ValidationError as exc:
        flags = {k: v for k, v in given.items() if k != "workspace"}
        problems = "; ".join(_problem(err, toml_file, toml, flags) for err in exc.errors())
        raise ConfigError(f"Invalid configuration: {problems}.") from exc
    except SettingsError as exc:
        # A dict/list setting from the environment must be JSON; pydantic-settings says only
        # "error parsing value for field ... from source EnvSettingsSource".
        found = re.search(r'field "(\w+)" from source "(\w+)"', str(exc))
        field = found[1] if found else None
        env = _env_name(field, os.environ) if field else None
        if field is None or env is None:
            raise ConfigError(f"Invalid configuration: {exc}.") from exc
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        raise ConfigError(
            f"{env} is not valid JSON{cause}: set it to JSON, e.g. {env}={_json_example(field)}."
        ) from exc


def reference_file(settings: Settings, name: str) -> Path | None:
    """The file `[reference] NAME` points at (relative to the workspace), None if not set."""
    configured = getattr(settings.reference, name)
    if not configured:
        return None
    path = Path(configured).expanduser()
    return path if path.is_absolute() else settings.workspace / path


def _check_reference(settings: Settings, toml_file: Path) -> None:
    """A configured reference file that is missing is an error now, not a surprise in silver."""
    for name in ReferenceSetting.model_fields:
        path = reference_file(settings, name)
        if path is None or path.is_file():
            continue
        env = _env_name("reference", os.environ)
        line = _toml_line(toml_file, name) if toml_file.is_file() else None
        where = env or (f"{toml_file}:{line}" if line else str(toml_file))
        raise ConfigError(
            f"{where}: reference.{name} = {getattr(settings.reference, name)!r}: no such file "
            f"({path}). Put the CSV there (a header line with a "
            f"{'product' if name == 'products' else 'store_id'} column), or remove the setting "
            "to use the built-in defaults."
        )


def _table_key_line(toml_file: Path, table: str, key: str) -> int | None:
    """The line of `key = ...` inside the `[table]` section of medallion.toml."""
    try:
        lines = toml_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    header = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]")
    wanted = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
    inside = False
    for number, line in enumerate(lines, 1):
        found = header.match(line)
        if found:
            inside = found[1].replace('"', "").replace("'", "").replace(" ", "") == table
            continue
        if inside and wanted.match(line):
            return number
    return None


def nested_source(settings: Settings, path: tuple[str, ...]) -> str:
    """Where a value inside a table setting came from, e.g. ("rules", "store_id_valid",
    "severity"): the MEDALLION_<FIELD> variable (JSON), `medallion.toml:LINE`, or `default`."""
    field, rest = path[0], path[1:]
    env = _env_name(field, os.environ)
    if env is not None:
        try:
            value: Any = json.loads(os.environ[env])
            for part in rest:
                value = value[part]
            return env
        except (ValueError, KeyError, TypeError):
            pass
    toml_file = settings.workspace / CONFIG_FILE_NAME
    if toml_file.is_file():
        value = _read_toml(toml_file)
        try:
            for part in path:
                value = value[part]
        except (KeyError, TypeError):
            return "default"
        line = _table_key_line(toml_file, ".".join(path[:-1]), path[-1])
        return f"{toml_file.name}:{line}" if line else toml_file.name
    return "default"


def require_landing(settings: Settings) -> Path:
    """The local landing folder, or a ConfigError: a missing folder is not `no new files`."""
    landing = settings.landing_path
    if "://" in landing:
        raise ConfigError(
            f"landing_dir {landing} is an object-store URI: bronze reads local landing "
            "folders only; copy the files to a local folder and set landing_dir to it."
        )
    path = Path(landing)
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise ConfigError(
            f"landing folder {landing} {what}: create it and put files there (or run "
            "`medallion generate`), or point --landing / landing_dir at the right folder."
        )
    return path


_SECRET_WORDS = ("secret", "password", "token", "key", "credential", "sas")


def _masked(name: str, value: Any) -> Any:
    """storage_options values that look like credentials are shown as ***."""
    if name == "storage_options" and isinstance(value, dict):
        return {
            k: "***" if any(w in k.lower() for w in _SECRET_WORDS) else v for k, v in value.items()
        }
    return value


def setting_sources(
    settings: Settings, flags: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Every setting with its resolved value and where that value came from.

    The source is `flag --x`, the `MEDALLION_*` variable, `medallion.toml:LINE`, or `default`,
    following load_settings's precedence (flags > environment > file > default).
    """
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    toml_file = settings.workspace / CONFIG_FILE_NAME
    toml = _read_toml(toml_file) if toml_file.is_file() else {}
    rows = []
    for name in Settings.model_fields:
        if name == "workspace":
            source = (
                "flag --workspace"
                if flags.get("workspace")
                else (
                    "MEDALLION_WORKSPACE"
                    if os.environ.get("MEDALLION_WORKSPACE")
                    else "current folder"
                )
            )
        elif name in flags:
            source = f"flag --{name.replace('_', '-')}"
        elif (env := _env_name(name, os.environ)) is not None:
            source = env
        elif name in toml:
            line = _toml_line(toml_file, name)
            source = f"{toml_file}:{line}" if line else str(toml_file)
        else:
            source = "default"
        value = _masked(name, getattr(settings, name))
        rows.append({"setting": name, "value": value, "source": source})
    for name in ("landing_path", "lake_path", "models_path", "reports_path"):
        rows.append({"setting": name, "value": getattr(settings, name), "source": "derived"})
    return rows
