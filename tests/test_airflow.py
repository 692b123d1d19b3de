"""The Airflow DAGs, run by a real Airflow 3.3.2 from its own virtualenv (`.venv-airflow`).

Airflow is never imported here: the DAG file is parsed and run by `.venv-airflow`'s Python and
`airflow` CLI in subprocesses (that venv has no project code, which proves the DAG needs none),
and its tasks call this venv's `medallion` through MEDALLION_BIN, as a deployment would.
Create the venv with `scripts/setup_airflow.sh`.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

REPO = Path(__file__).resolve().parents[1]
AIRFLOW_VENV = Path(os.environ.get("MEDALLION_AIRFLOW_VENV", REPO / ".venv-airflow"))
AIRFLOW_BIN = AIRFLOW_VENV / "bin" / "airflow"
AIRFLOW_PYTHON = AIRFLOW_VENV / "bin" / "python"
DAGS_FOLDER = REPO / "orchestration" / "airflow" / "dags"
MEDALLION_BIN = Path(sys.executable).parent / "medallion"

pytestmark = [
    pytest.mark.airflow,
    pytest.mark.slow,
    pytest.mark.skipif(
        not AIRFLOW_BIN.exists(),
        reason=f"no Airflow virtualenv at {AIRFLOW_VENV}: run scripts/setup_airflow.sh",
    ),
]

PIPELINE_TASKS = ["bronze", "silver", "gold", "ml", "report"]
# Arrival days of the two generated files: the run for D ingests data/landing/<D>/ only.
D1, D2 = "2025-07-01", "2026-01-01"
GOLD_TABLES = ["gold/daily_sales", "gold/product_store_daily"]
# Tables of the ml step, with the columns that must match (None: all); scored_at and
# model_version name the run. The model sorts its training rows by customer, so a one-shot and a
# two-day lake (same silver content, other file layout) give the same model; probabilities are
# compared to 1e-9 because DuckDB's parallel float sums in the features may differ in the last bit
# (measured: 4.4e-16 at most between the two lakes).
ML_TABLES: dict[str, list[str] | None] = {
    "gold/customer_features": None,
    "gold/churn_scores": [
        "customer_id",
        "churn_probability",
        "is_at_risk",
        "as_of",
        "horizon_days",
    ],
}


def _clean_env() -> dict[str, str]:
    """This process's environment without settings that would leak into Airflow or medallion."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "MEDALLION_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }


def _run(
    cmd: list[str], env: dict[str, str], timeout: float, *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd[:4])}... exited {proc.returncode}\n"
            f"--- stdout (tail) ---\n{proc.stdout[-6000:]}\n--- stderr (tail) ---\n"
            f"{proc.stderr[-6000:]}"
        )
    return proc


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A throwaway AIRFLOW_HOME with a migrated SQLite metadata DB."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = _clean_env() | {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "MEDALLION_AIRFLOW_RETRIES": "0",  # `dags test` would wait out real retry delays
        "MEDALLION_AIRFLOW_START_DATE": "2025-01-01",
        "MEDALLION_BIN": str(MEDALLION_BIN),
    }
    _run([str(AIRFLOW_BIN), "db", "migrate"], env, timeout=240)
    yield env


DAGBAG_PROBE = """
import importlib.util, json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
json.dump({
    "project_importable": importlib.util.find_spec("medallion_lakehouse") is not None,
    "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
    "dags": {
        dag_id: {
            "tasks": {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks},
            "retries": dag.default_args.get("retries"),
            "backoff": dag.default_args.get("retry_exponential_backoff"),
            "schedule": str(dag.schedule) if dag.schedule is not None else None,
            "max_active_runs": dag.max_active_runs,
        }
        for dag_id, dag in bag.dags.items()
    },
}, open(sys.argv[2], "w"))
"""


def _dagbag(tmp_path: Path, dags_folder: Path = DAGS_FOLDER, **env: str) -> dict:
    """Parse a DAG folder with the Airflow venv's DagBag; its summary as a dict."""
    full_env = (
        _clean_env()
        | {
            "AIRFLOW_HOME": str(tmp_path / "airflow_home"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
        }
        | env
    )
    out = tmp_path / "dagbag.json"
    # Airflow logs to stdout, so the summary goes to a file.
    proc = subprocess.run(
        [str(AIRFLOW_PYTHON), "-c", DAGBAG_PROBE, str(dags_folder), str(out)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize(
    ("env", "retries"),
    [
        pytest.param({}, 2, id="defaults"),
        pytest.param({"MEDALLION_AIRFLOW_RETRIES": "0"}, 0, id="ci-no-retries"),
    ],
)
def test_dag_folder_imports_cleanly_without_project_code(
    tmp_path: Path, env: dict[str, str], retries: int
) -> None:
    # No MEDALLION_WORKSPACE / MEDALLION_BIN at parse time: settings are resolved when tasks run.
    bag = _dagbag(tmp_path, **env)
    assert bag["import_errors"] == {}
    assert bag["project_importable"] is False, "the Airflow venv must not need the project"
    assert set(bag["dags"]) == {"medallion_pipeline", "medallion_reprocess"}

    pipeline = bag["dags"]["medallion_pipeline"]
    chain = {a: [b] for a, b in itertools.pairwise(PIPELINE_TASKS)}
    assert pipeline["tasks"] == chain | {"report": []}
    assert pipeline["schedule"] is not None
    assert pipeline["max_active_runs"] == 1
    for dag in bag["dags"].values():
        assert dag["retries"] == retries
        assert dag["backoff"] is True
    assert list(bag["dags"]["medallion_reprocess"]["tasks"]) == ["reprocess"]


def test_dag_file_reports_a_syntax_error_as_an_import_error(tmp_path: Path) -> None:
    # Guards the probe itself: a broken DAG file must show up in import_errors, not vanish.
    broken = tmp_path / "dags"
    broken.mkdir()
    (broken / "broken_dag.py").write_text("from airflow.sdk import dag\n@dag(\n")
    errors = _dagbag(tmp_path, broken)["import_errors"]
    assert len(errors) == 1
    assert next(iter(errors)).endswith("broken_dag.py")


# -- end to end ------------------------------------------------------------------------------


def _land_two_days(gen_dir: Path, workspace: Path) -> list[str]:
    """Copy generated files into data/landing/<D1>/ and <D2>/; their names in arrival order."""
    files = sorted(p for p in gen_dir.iterdir() if p.name.startswith("sales_"))
    assert len(files) == 2, files
    for day, path in zip((D1, D2), files, strict=True):
        target = workspace / "data" / "landing" / day
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target / path.name)
    return [p.name for p in files]


def _table(workspace: Path, name: str) -> pa.Table:
    return DeltaTable(str(workspace / "data" / "lake" / name)).to_pyarrow_table()


def _versions(workspace: Path) -> dict[str, int]:
    """Every Delta table under the lake with its current version."""
    lake = workspace / "data" / "lake"
    return {
        log.parent.relative_to(lake).as_posix(): DeltaTable(str(log.parent)).version()
        for log in sorted(lake.rglob("_delta_log"))
    }


def _data_tables(versions: dict[str, int]) -> dict[str, int]:
    """Versions of bronze/silver/gold tables; _meta logs (runs, quality) grow on every run."""
    return {k: v for k, v in versions.items() if not k.startswith("_meta/")}


FLOAT_TOLERANCE = {"churn_probability": 1e-9}


def _canonical(table: pa.Table, columns: list[str] | None = None) -> pa.Table:
    """The given columns (default all) with rows in a deterministic order, for equality checks.

    Columns with a tolerance are rounded well inside it, and ordering ignores them, so last-bit
    noise neither fails the comparison nor reorders rows.
    """
    table = table.select(columns) if columns is not None else table
    keys = [c for c in table.column_names if c not in FLOAT_TOLERANCE] or table.column_names
    table = table.sort_by([(c, "ascending") for c in keys])
    for name, tolerance in FLOAT_TOLERANCE.items():
        if name in table.column_names:
            digits = -int(math.log10(tolerance))
            rounded = pc.round(table.column(name), ndigits=digits)
            table = table.set_column(table.column_names.index(name), name, rounded)
    return table


def _dags_test(env: dict[str, str], dag_id: str, day: str, *extra: str) -> float:
    started = time.monotonic()
    _run([str(AIRFLOW_BIN), "dags", "test", dag_id, day, *extra], env, timeout=420)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20k generated sales in two files (two periods; the second brings late rows and updates)."""
    from medallion_lakehouse.generate import GenerateOptions, generate

    out = tmp_path_factory.mktemp("generated")
    generate(
        GenerateOptions(
            rows=20_000, files=2, start=date(2025, 1, 1), end=date(2025, 12, 31), seed=11
        ),
        out,
    )
    return out


@pytest.mark.skipif(
    not (REPO / "src" / "medallion_lakehouse" / "cli" / "run.py").exists(),
    reason="`medallion run` (cli/run.py) has not landed yet",
)
def test_daily_runs_match_one_medallion_run_and_rerun_changes_nothing(
    airflow_env: dict[str, str], generated: Path, tmp_path: Path
) -> None:
    dag_ws, ref_ws = tmp_path / "dag_ws", tmp_path / "ref_ws"
    names = _land_two_days(generated, dag_ws)
    _land_two_days(generated, ref_ws)

    # Reference: one `medallion run` over both days' files (the report compares nothing).
    _run(
        [str(MEDALLION_BIN), "run", "--workspace", str(ref_ws), "--steps", "bronze,silver,gold,ml"],
        _clean_env(),
        timeout=300,
    )

    # The workspace reaches the DAG as an Airflow Variable (AIRFLOW_VAR_* is the env backend).
    env = airflow_env | {"AIRFLOW_VAR_MEDALLION_WORKSPACE": str(dag_ws)}
    _dags_test(env, "medallion_pipeline", D1)
    ingested = set(_table(dag_ws, "bronze/sales").column("_source_file").to_pylist())
    assert [n.rsplit("/", 1)[-1] for n in ingested] == [names[0]], "D1 ingests D1's folder only"

    _dags_test(env, "medallion_pipeline", D2)
    compared: dict[str, list[str] | None] = {**dict.fromkeys(GOLD_TABLES), **ML_TABLES}
    for name, columns in compared.items():
        got = _canonical(_table(dag_ws, name), columns)
        assert got.num_rows > 0, name
        assert got.equals(_canonical(_table(ref_ws, name), columns)), name

    # Same logical date again: nothing new lands, so no bronze/silver/gold table (churn scores
    # included: silver is unchanged) gets a new version, and the content is the same.
    before = _versions(dag_ws)
    content = {name: _canonical(_table(dag_ws, name), cols) for name, cols in compared.items()}
    _dags_test(env, "medallion_pipeline", D2)
    assert _data_tables(_versions(dag_ws)) == _data_tables(before)
    for name, columns in compared.items():
        assert _canonical(_table(dag_ws, name), columns).equals(content[name]), name
