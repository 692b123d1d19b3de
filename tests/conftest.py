"""Shared fixtures: the seed data, fresh workspaces, a DuckDB lake, the CLI."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medallion_lakehouse.config import Settings, load_settings
from medallion_lakehouse.storage.lake import Lake

REPO = Path(__file__).resolve().parents[1]


def seed_data_dir() -> Path:
    env = os.environ.get("MEDALLION_SEED_DATA")
    candidates = [Path(env)] if env else []
    candidates += [REPO.parent / "shared" / "seed-data", REPO / "tests" / "data" / "seed"]
    for candidate in candidates:
        if (candidate / "raw_sales.csv").is_file():
            return candidate
    raise RuntimeError(
        "Seed data not found: set MEDALLION_SEED_DATA to the folder holding raw_sales.csv"
    )


@pytest.fixture(scope="session")
def seed_dir() -> Path:
    return seed_data_dir()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An empty workspace with its landing folder."""
    ws = tmp_path / "ws"
    (ws / "data" / "landing").mkdir(parents=True)
    return ws


@pytest.fixture
def settings(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in list(os.environ):
        if key.startswith("MEDALLION_") and key != "MEDALLION_SEED_DATA":
            monkeypatch.delenv(key)
    return load_settings(workspace)


@pytest.fixture
def lake(settings: Settings) -> Iterator[Lake]:
    with Lake(settings) as lk:
        yield lk


def land(workspace: Path, *files: Path, rename: str | None = None) -> list[Path]:
    """Copy files into the workspace's landing folder."""
    out = []
    for f in files:
        target = workspace / "data" / "landing" / (rename or f.name)
        shutil.copyfile(f, target)
        out.append(target)
    return out


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


# -- CI: a skipped test is a missing install step -----------------------------------------------
# Tests that need Java, Airflow's virtualenv or Chromium skip with a hint when run by hand without
# them. In CI (.ci/run sets MEDALLION_REQUIRE_ALL=1) every one of them must run, so a skip there
# fails the session instead of hiding a missing prerequisite behind a green run.
REQUIRE_ALL = os.environ.get("MEDALLION_REQUIRE_ALL") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = (
            f"skipped under MEDALLION_REQUIRE_ALL=1 (a prerequisite is missing): {report.longrepr}"
        )
