"""kill -9 during `medallion run`: every table stays readable, and the rerun's tables equal a
clean run's (fault points from `faults.checkpoint`, triggered by MEDALLION_FAULT)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from medallion_lakehouse.config import load_settings
from medallion_lakehouse.lake import Lake

pytestmark = pytest.mark.slow

TABLES = (
    "bronze/sales",
    "bronze/sales_rejects",
    "silver/sales",
    "silver/sales_quarantine",
    "gold/daily_sales",
    "gold/product_store_daily",
)
# Columns that differ between two workspaces by design (ingest time, batch ids, run ids).
ML_TABLES = ("gold/customer_features", "gold/churn_scores")
# Columns that differ between two workspaces by design (ingest time, batch ids, run ids, the
# model version named after its run, when scores were computed).
VOLATILE = {"_batch_id", "_ingested_at", "_ingest_date", "run_id", "model_version", "scored_at"}
STEPS = "bronze,silver,gold"


def _env(fault: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDALLION_")}
    if fault:
        env["MEDALLION_FAULT"] = fault
    return env


def medallion_run(
    workspace: Path, fault: str | None = None, *extra: str, steps: str = STEPS
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medallion_lakehouse", "run", "-w", str(workspace),
         "--steps", steps, "--json", *extra],
        capture_output=True,
        text=True,
        env=_env(fault),
        timeout=300,
    )  # fmt: skip


def _cell(value: object) -> str:
    # Probabilities from a parallel forest may differ in the last bits between two fits.
    return f"{value:.9f}" if isinstance(value, float) else str(value)


def snapshot(workspace: Path, tables: tuple[str, ...] = TABLES) -> dict[str, list[tuple]]:  # type: ignore[type-arg]
    """Every table's rows (volatile columns dropped), sorted: comparable across workspaces."""
    out = {}
    with Lake(load_settings(workspace)) as lake:
        for name in tables:
            table: pa.Table = lake.read_arrow(name)
            keep = [c for c in table.column_names if c not in VOLATILE]
            rows = table.select(keep).to_pylist()
            out[name] = sorted(tuple(_cell(r[c]) for c in keep) for r in rows)
    return out


def _landed(tmp: Path, name: str, seed_dir: Path, *files: str) -> Path:
    ws = tmp / name
    (ws / "data" / "landing").mkdir(parents=True)
    for f in files:
        shutil.copyfile(seed_dir / f, ws / "data" / "landing" / f)
    return ws


@pytest.fixture(scope="module")
def after_raw(tmp_path_factory: pytest.TempPathFactory, seed_dir: Path) -> Path:
    """A workspace where raw_sales.csv went through bronze, silver and gold (copied per test)."""
    ws = _landed(tmp_path_factory.mktemp("base"), "ws", seed_dir, "raw_sales.csv")
    assert medallion_run(ws).returncode == 0
    return ws


@pytest.fixture(scope="module")
def clean(
    tmp_path_factory: pytest.TempPathFactory, after_raw: Path, seed_dir: Path
) -> dict[str, list[tuple]]:  # type: ignore[type-arg]
    ws = tmp_path_factory.mktemp("clean") / "ws"
    shutil.copytree(after_raw, ws)
    shutil.copyfile(seed_dir / "late_sales.csv", ws / "data" / "landing" / "late_sales.csv")
    assert medallion_run(ws).returncode == 0
    return snapshot(ws)


@pytest.mark.parametrize(
    "fault",
    [
        "bronze.before_commit",
        "bronze.before_marker",
        "silver.before_commit",
        "silver.before_ledger",
        "gold.before_commit",
        "gold.after_commit",
        "gold.before_watermark",
    ],
)
def test_kill_during_incremental_run_then_rerun_equals_clean_run(
    tmp_path: Path,
    seed_dir: Path,
    clean: dict[str, list[tuple]],
    fault: str,  # type: ignore[type-arg]
) -> None:
    ws = _landed(tmp_path, "ws", seed_dir, "raw_sales.csv")
    assert medallion_run(ws).returncode == 0
    shutil.copyfile(seed_dir / "late_sales.csv", ws / "data" / "landing" / "late_sales.csv")

    crashed = medallion_run(ws, fault)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    snapshot(ws)  # every table is readable at some committed version

    rerun = medallion_run(ws)
    assert rerun.returncode == 0, rerun.stderr
    assert snapshot(ws) == clean


def test_kill_during_first_gold_build(tmp_path: Path, seed_dir: Path) -> None:
    """Gold's very first build crashes between its two tables; the rerun completes both."""
    ws = _landed(tmp_path, "ws", seed_dir, "raw_sales.csv")
    assert medallion_run(ws, "gold.after_commit").returncode == -signal.SIGKILL
    with Lake(load_settings(ws)) as lake:
        assert lake.exists("gold/daily_sales")
        assert not lake.exists("gold/product_store_daily")
    assert medallion_run(ws).returncode == 0
    reference = _landed(tmp_path, "ref", seed_dir, "raw_sales.csv")
    assert medallion_run(reference).returncode == 0
    assert snapshot(ws) == snapshot(reference)


@pytest.mark.parametrize(
    "fault", ["silver.after_quarantine", "silver.before_commit", "silver.before_ledger"]
)
def test_kill_during_full_refresh_then_plain_rerun_equals_clean_refresh(
    tmp_path: Path,
    seed_dir: Path,
    clean: dict[str, list[tuple]],  # type: ignore[type-arg]
    fault: str,
) -> None:
    """A full refresh killed anywhere is resumed by the next plain run (its intent is open)."""
    ws = _landed(tmp_path, "ws", seed_dir, "raw_sales.csv")
    assert medallion_run(ws).returncode == 0
    shutil.copyfile(seed_dir / "late_sales.csv", ws / "data" / "landing" / "late_sales.csv")
    assert medallion_run(ws).returncode == 0
    crashed = medallion_run(ws, fault, "--full-refresh")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    snapshot(ws)
    rerun = medallion_run(ws)
    assert rerun.returncode == 0, rerun.stderr
    assert snapshot(ws) == clean


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Landing files with enough customers and history for the churn model."""
    ws = tmp_path_factory.mktemp("gen") / "ws"
    made = subprocess.run(
        [sys.executable, "-m", "medallion_lakehouse", "generate", "-w", str(ws),
         "--rows", "50000", "--files", "2"],
        capture_output=True, text=True, env=_env(), timeout=300,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return ws


@pytest.fixture(scope="module")
def clean_ml(tmp_path_factory: pytest.TempPathFactory, generated: Path) -> dict[str, list[tuple]]:  # type: ignore[type-arg]
    ws = tmp_path_factory.mktemp("clean_ml") / "ws"
    shutil.copytree(generated, ws)
    done = medallion_run(ws, None, steps="bronze,silver,gold,ml")
    assert done.returncode == 0, done.stderr
    return snapshot(ws, TABLES + ML_TABLES)


@pytest.mark.parametrize(
    "fault", ["ml.after_features", "ml.after_model_saved", "ml.after_metrics", "ml.before_scores"]
)
def test_kill_during_ml_then_rerun_equals_clean_run(
    tmp_path: Path,
    generated: Path,
    clean_ml: dict[str, list[tuple]],  # type: ignore[type-arg]
    fault: str,
) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(generated, ws)
    crashed = medallion_run(ws, fault, steps="bronze,silver,gold,ml")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    snapshot(ws, TABLES + ML_TABLES)
    latest = ws / "data" / "models" / "latest"
    # A model is in use only once its evaluation is recorded: never after a crash before it.
    assert latest.exists() == (fault == "ml.before_scores")
    rerun = medallion_run(ws, None, steps="bronze,silver,gold,ml")
    assert rerun.returncode == 0, rerun.stderr
    assert snapshot(ws, TABLES + ML_TABLES) == clean_ml
