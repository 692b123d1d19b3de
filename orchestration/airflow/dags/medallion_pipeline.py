"""Airflow 3 DAGs for the medallion lakehouse: one task per layer, each a `medallion run` call.

`medallion_pipeline` (daily): bronze -> silver -> gold -> ml -> report. The run for logical date D
ingests the files that landed for D (`<landing>/<D>/`, see `landing_mode`), then silver and gold
process exactly the new bronze batches and the months they touch (the lakehouse's own
incremental ledger decides, as in `medallion run`). Re-running D changes nothing: bronze skips
files by sha256, silver finds no unprocessed batch, gold no affected month.

`medallion_reprocess` (manual): `medallion run --steps silver,gold --from F --to T`, to
rebuild a date range after a fix, or `--full-refresh`.

The file imports only the standard library and Airflow, and does no work at import time: the
project is reached through its CLI (`MEDALLION_BIN`, the project venv's `medallion`), so the
Airflow environment does not need the project installed. Settings, in precedence order:
DAG-run params (trigger with config), Airflow Variables `medallion_<name>` (also settable as
`AIRFLOW_VAR_MEDALLION_<NAME>`), environment variables `MEDALLION_<NAME>`. Scheduling and retry
settings are read from the environment when the file is parsed. See orchestration/airflow/README.md.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Param, Variable, dag, task

# -- parse-time settings (environment only: reading Variables here would hit the metadata DB on
#    every parse of the file) -------------------------------------------------------------------


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    return raw in ("1", "true", "yes", "on") if raw else default


# CI sets MEDALLION_AIRFLOW_RETRIES=0: `airflow dags test` waits out real retry delays.
RETRIES = _env_int("MEDALLION_AIRFLOW_RETRIES", 2)
RETRY_DELAY = timedelta(seconds=_env_int("MEDALLION_AIRFLOW_RETRY_DELAY_SECONDS", 60))
MAX_RETRY_DELAY = timedelta(seconds=_env_int("MEDALLION_AIRFLOW_MAX_RETRY_DELAY_SECONDS", 1800))
TASK_TIMEOUT = timedelta(minutes=_env_int("MEDALLION_AIRFLOW_TASK_TIMEOUT_MINUTES", 180))
SCHEDULE = os.environ.get("MEDALLION_AIRFLOW_SCHEDULE", "@daily") or None
START_DATE = datetime.fromisoformat(
    os.environ.get("MEDALLION_AIRFLOW_START_DATE", "2025-01-01")
).replace(tzinfo=UTC)
CATCHUP = _env_bool("MEDALLION_AIRFLOW_CATCHUP", False)

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "data-platform",
    "retries": RETRIES,
    "retry_delay": RETRY_DELAY,
    "retry_exponential_backoff": True,
    "max_retry_delay": MAX_RETRY_DELAY,
    "execution_timeout": TASK_TIMEOUT,
}

# Run-time settings: (param / Variable suffix, environment variable, default).
_SETTINGS: dict[str, tuple[str, str | None]] = {
    "workspace": ("MEDALLION_WORKSPACE", None),
    "bin": ("MEDALLION_BIN", "medallion"),
    "engine": ("MEDALLION_ENGINE", None),
    "lock_wait_seconds": ("MEDALLION_LOCK_WAIT_SECONDS", "600"),
    "landing_mode": ("MEDALLION_AIRFLOW_LANDING_MODE", "dated"),
}

COMMON_PARAMS = {
    "workspace": Param(
        "",
        type="string",
        description="Workspace; else Variable medallion_workspace, else $MEDALLION_WORKSPACE.",
    ),
    "engine": Param(
        "",
        type="string",
        enum=["", "duckdb", "spark"],
        description="Compute engine; empty: the workspace's configured engine (duckdb).",
    ),
}


def _setting(params: Mapping[str, Any], name: str) -> str | None:
    """A run-time setting: DAG-run param, else Airflow Variable, else environment, else default."""
    env_name, default = _SETTINGS[name]
    value = params.get(name)
    if value not in (None, ""):
        return str(value)
    value = Variable.get(f"medallion_{name}", default=None)
    if value not in (None, ""):
        return str(value)
    return os.environ.get(env_name) or default


def medallion_command(
    params: Mapping[str, Any],
    steps: str,
    *,
    extra_args: list[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """The bash line running `medallion run --steps STEPS` with the resolved settings."""
    workspace = _setting(params, "workspace")
    if not workspace:
        raise ValueError(
            "No medallion workspace configured: set the DAG param 'workspace', the Airflow "
            "Variable 'medallion_workspace' or the environment variable MEDALLION_WORKSPACE."
        )
    args = [
        _setting(params, "bin") or "medallion",
        "run",
        "--workspace",
        workspace,
        "--steps",
        steps,
        "--wait",
        _setting(params, "lock_wait_seconds") or "0",
    ]
    engine = _setting(params, "engine")
    if engine:
        args += ["--engine", engine]
    args += extra_args or []
    prefix = [f"{key}={shlex.quote(value)}" for key, value in (env or {}).items()]
    return " ".join([*prefix, *(shlex.quote(a) for a in args)])


def bronze_command(params: Mapping[str, Any], ds: str) -> str:
    """Bronze for logical date `ds`: ingest `<landing>/<ds>/` ('dated') or all new files ('all')."""
    mode = _setting(params, "landing_mode")
    if mode == "all":
        return medallion_command(params, "bronze")
    if mode != "dated":
        raise ValueError(f"landing_mode must be 'dated' or 'all', got {mode!r}")
    # A relative landing folder is resolved against the workspace by medallion's settings; an
    # absolute MEDALLION_LANDING_DIR in the worker's environment is kept as the root.
    root = os.environ.get("MEDALLION_LANDING_DIR") or "data/landing"
    return medallion_command(
        params, "bronze", env={"MEDALLION_LANDING_DIR": f"{root.rstrip('/')}/{ds}"}
    )


@dag(
    dag_id="medallion_pipeline",
    description="Daily medallion lakehouse run: bronze -> silver -> gold -> ml -> report.",
    schedule=SCHEDULE,
    start_date=START_DATE,
    catchup=CATCHUP,
    max_active_runs=1,  # the lake takes one writer at a time anyway (lake lock)
    default_args=DEFAULT_ARGS,
    tags=["medallion", "lakehouse"],
    doc_md=__doc__,
    params={
        **COMMON_PARAMS,
        "landing_mode": Param(
            "",
            type="string",
            enum=["", "dated", "all"],
            description="dated: ingest <landing>/<logical date>/ (default); all: every new file.",
        ),
    },
)
def medallion_pipeline() -> None:
    """One task per layer; each calls `medallion run --steps <layer>`."""

    @task.bash(task_id="bronze", do_xcom_push=False)
    def bronze(params: dict[str, Any], ds: str) -> str:
        return bronze_command(params, ds)

    @task.bash(task_id="silver", do_xcom_push=False)
    def silver(params: dict[str, Any]) -> str:
        return medallion_command(params, "silver")

    @task.bash(task_id="gold", do_xcom_push=False)
    def gold(params: dict[str, Any]) -> str:
        return medallion_command(params, "gold")

    @task.bash(task_id="ml", do_xcom_push=False)
    def ml(params: dict[str, Any]) -> str:
        return medallion_command(params, "ml")

    @task.bash(task_id="report", do_xcom_push=False)
    def report(params: dict[str, Any]) -> str:
        return medallion_command(params, "report")

    bronze() >> silver() >> gold() >> ml() >> report()


@dag(
    dag_id="medallion_reprocess",
    description="Rebuild silver and gold for a date range (or everything) from bronze.",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["medallion", "lakehouse", "backfill"],
    doc_md=__doc__,
    params={
        **COMMON_PARAMS,
        "from_date": Param(
            "", type="string", description="First sale date to rebuild, YYYY-MM-DD."
        ),
        "to_date": Param("", type="string", description="Last sale date to rebuild, YYYY-MM-DD."),
        "full_refresh": Param(
            False, type="boolean", description="Rebuild everything instead of a range."
        ),
        "steps": Param("silver,gold", type="string", description="Steps to rerun."),
    },
)
def medallion_reprocess() -> None:
    """`medallion run --steps silver,gold --from F --to T` (or `--full-refresh`)."""

    @task.bash(task_id="reprocess", do_xcom_push=False)
    def reprocess(params: dict[str, Any]) -> str:
        if params.get("full_refresh"):
            if params.get("from_date") or params.get("to_date"):
                # `medallion run` refuses both at once: say so before a task is even started.
                raise ValueError("give full_refresh or from_date/to_date, not both")
            extra = ["--full-refresh"]
        else:
            start, end = params.get("from_date") or "", params.get("to_date") or ""
            for label, value in (("from_date", start), ("to_date", end)):
                try:
                    datetime.strptime(value, "%Y-%m-%d")
                except ValueError:
                    raise ValueError(
                        f"param {label} must be a date YYYY-MM-DD, got {value!r} "
                        "(or set full_refresh to true)"
                    ) from None
            if end < start:
                raise ValueError(f"to_date {end} is before from_date {start}")
            extra = ["--from", start, "--to", end]
        steps = str(params.get("steps") or "silver,gold")
        return medallion_command(params, steps, extra_args=extra)

    reprocess()


medallion_pipeline()
medallion_reprocess()
