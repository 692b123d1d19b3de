"""Shared fixtures: the seed data, fresh workspaces, a DuckDB lake, the CLI."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medallion_lakehouse.config import Settings, load_settings
from medallion_lakehouse.lake import Lake

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


# -- a real S3 server (moto) on loopback ---------------------------------------------------------
@dataclass(frozen=True)
class MotoS3:
    """moto's S3 server: its endpoint, a bucket, and the delta-rs storage options to reach it."""

    endpoint: str
    bucket: str
    storage_options: dict[str, str] = field(default_factory=dict)

    def lake_url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """Start `moto_server` on a free loopback port for the session, with one bucket."""
    server = Path(sys.executable).parent / "moto_server"
    if not server.is_file():
        pytest.skip(f"{server} not found: install the dev extra (`pip install -e '.[dev]'`)")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=1).close()
                break
            except urllib.error.HTTPError:
                break  # an HTTP error status is an answer too
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                # Not listening yet, or (on a loaded machine) not answering within the second.
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.1)
        options = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        }
        import boto3

        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).create_bucket(Bucket="lake")
        yield MotoS3(endpoint=endpoint, bucket="lake", storage_options=options)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def s3_lake(moto_s3: MotoS3, request: pytest.FixtureRequest) -> str:
    """An s3:// lake URL under a prefix of this test's own."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:60]
    return moto_s3.lake_url(f"{name}-{uuid.uuid4().hex[:8]}")


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
