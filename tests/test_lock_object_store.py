"""The writer lease on an object-store lake, against a real S3 server (moto) on loopback.

Only the "store that ignores conditional puts" is a stand-in (a wrapper around the real store),
since no such server is available here.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from obstore.exceptions import GenericError
from typer.testing import CliRunner

from medallion_lakehouse.cli.main import app
from medallion_lakehouse.config import Settings, load_settings
from medallion_lakehouse.errors import (
    ConfigError,
    LockHeldError,
    LockLostError,
    LockUnsupportedError,
)
from medallion_lakehouse.pipeline import lease, lock
from medallion_lakehouse.pipeline.lock import lake_lock, lock_status, read_holder
from tests.conftest import MotoS3, seed_data_dir

HOLDER = """
import sys, time
from medallion_lakehouse.config import load_settings
from medallion_lakehouse.pipeline.lock import lake_lock
with lake_lock(load_settings(sys.argv[1]), 0, run_id="holder-run", command="test holder"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
print("released", flush=True)
"""


def _env() -> dict[str, str]:
    """The environment without MEDALLION_* and AWS_* settings, so only medallion.toml counts."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MEDALLION_", "AWS_"))}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("MEDALLION_", "AWS_")) and key != "MEDALLION_SEED_DATA":
            monkeypatch.delenv(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a TOML basic string


def make_workspace(root: Path, lake: str, storage_options: dict[str, str], **extra: Any) -> Path:
    """A workspace folder whose medallion.toml points at `lake`."""
    (root / "data" / "landing").mkdir(parents=True)
    lines = [f"lake_dir = {_toml_value(lake)}"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in extra.items()]
    lines.append("[storage_options]")
    lines += [f"{key} = {_toml_value(value)}" for key, value in storage_options.items()]
    (root / "medallion.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _holder(workspace: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(workspace), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def two_workspaces(tmp_path: Path, moto_s3: MotoS3, s3_lake: str) -> tuple[Path, Path]:
    """Two separate workspaces whose medallion.toml name the same s3:// lake (ttl 2 s)."""
    options = moto_s3.storage_options
    a = make_workspace(tmp_path / "a", s3_lake, options, lock_lease_seconds=2)
    b = make_workspace(tmp_path / "b", s3_lake, options, lock_lease_seconds=2)
    return a, b


@pytest.fixture
def holder_a(two_workspaces: tuple[Path, Path]) -> Iterator[subprocess.Popen[str]]:
    proc = _holder(two_workspaces[0], 60)
    yield proc
    proc.kill()
    proc.wait()


# -- storage options -> obstore (no server needed) ----------------------------------------------


def test_delta_rs_s3_options_map_to_obstore_config_and_client_options() -> None:
    config, client = lease.store_config(
        "s3://bucket/lake",
        {
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "key",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "AWS_REGION": "eu-west-1",
            "AWS_S3_ALLOW_UNSAFE_RENAME": "true",  # delta-rs only: dropped
            "timeout": "30s",
        },
    )
    assert config == {
        "aws_endpoint_url": "http://127.0.0.1:9000",
        "aws_access_key_id": "key",
        "aws_secret_access_key": "secret",
        "aws_region": "eu-west-1",
    }
    assert client == {"allow_http": True, "timeout": "30s"}
    # Lowercase and unprefixed aliases, as delta-rs takes them.
    config, client = lease.store_config(
        "s3a://bucket", {"allow_http": "False", "region": "us-east-1", "endpoint": "http://h"}
    )
    assert config == {"region": "us-east-1", "endpoint": "http://h"}
    assert client == {"allow_http": False}


def test_gcs_and_azure_options_pass_through_and_foreign_keys_are_refused() -> None:
    config, client = lease.store_config(
        "gs://bucket/lake", {"GOOGLE_SERVICE_ACCOUNT": "/k.json", "GOOGLE_ALLOW_HTTP": "1"}
    )
    assert (config, client) == ({"google_service_account": "/k.json"}, {"allow_http": True})
    config, client = lease.store_config(
        "abfss://c@acct.dfs.core.windows.net/lake",
        {"AZURE_STORAGE_ACCOUNT_NAME": "acct", "azure_allow_http": "true"},
    )
    assert (config, client) == ({"azure_storage_account_name": "acct"}, {"allow_http": True})
    with pytest.raises(ConfigError, match="AWS_REGION is for a aws store"):
        lease.store_config("gs://bucket/lake", {"AWS_REGION": "x"})
    with pytest.raises(ConfigError, match="not a boolean"):
        lease.store_config("s3://bucket", {"AWS_ALLOW_HTTP": "maybe"})
    with pytest.raises(ConfigError, match="does not know"):
        lease.store_config("hdfs://namenode/lake", {})


def test_an_unknown_option_is_a_config_error_not_a_panic() -> None:
    # AWS_ALLOW_HTTP given to obstore's config would panic; routed to client options it works.
    lease.open_store("s3://bucket/lake", {"AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1"})
    with pytest.raises(ConfigError, match="aws_no_such_option"):
        lease.open_store("s3://bucket/lake", {"AWS_NO_SUCH_OPTION": "1"})


# -- the lease on moto --------------------------------------------------------------------------


@pytest.mark.s3
def test_two_workspaces_on_one_s3_lake_exclude_each_other(
    two_workspaces: tuple[Path, Path], holder_a: subprocess.Popen[str]
) -> None:
    settings_b = load_settings(two_workspaces[1])
    with pytest.raises(LockHeldError) as exc, lake_lock(settings_b, 0):
        pass
    assert exc.value.exit_code == 75
    message = str(exc.value)
    assert f"pid {holder_a.pid}" in message
    assert "holder-run" in message
    assert "--wait" in message
    assert "_meta/writer.lease" in message
    holder = read_holder(settings_b)
    assert holder is not None and holder.pid == holder_a.pid


@pytest.mark.s3
def test_wait_succeeds_when_the_s3_holder_releases(two_workspaces: tuple[Path, Path]) -> None:
    proc = _holder(two_workspaces[0], 1.0)
    settings_b = load_settings(two_workspaces[1])
    try:
        with lake_lock(settings_b, 30, run_id="me") as held:
            assert held.kind == "lease"
            assert held.took_over is None  # released cleanly: nothing to take over
            assert read_holder(settings_b).run_id == "me"  # type: ignore[union-attr]
            held.check()
    finally:
        assert proc.wait(10) == 0
    assert read_holder(settings_b) is None  # released: the lease object is gone


@pytest.mark.s3
@pytest.mark.slow
def test_killed_s3_holder_is_taken_over_after_the_ttl(two_workspaces: tuple[Path, Path]) -> None:
    proc = _holder(two_workspaces[0], 60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = time.monotonic()
    settings_b = load_settings(two_workspaces[1])
    # Nothing releases a lease when its holder dies: it stays live until the ttl has passed.
    with pytest.raises(LockHeldError), lake_lock(settings_b, 0):
        pass
    with lake_lock(settings_b, 20, run_id="next") as held:
        assert held.took_over is not None
        assert held.took_over.pid == proc.pid
        assert held.took_over.run_id == "holder-run"
        # ttl 2 s after the last renewal, which was at most ttl/3 before the kill.
        assert time.monotonic() - killed >= 1.0
        held.check()
    assert read_holder(settings_b) is None


@pytest.mark.s3
def test_a_replaced_lease_is_lost_and_check_raises(moto_s3: MotoS3, s3_lake: str) -> None:
    settings = Settings(
        lake_dir=s3_lake, storage_options=moto_s3.storage_options, lock_lease_seconds=1.5
    )
    store = lease.open_store(s3_lake, moto_s3.storage_options)
    intruder = {"token": "intruder", "pid": 1, "host": "elsewhere", "ttl_seconds": 30}
    with lake_lock(settings, 0) as held, lake_lock(settings, 0) as inner:
        held.check()
        store.put(lease.LEASE_KEY, json.dumps(intruder).encode(), mode="overwrite")
        deadline = time.monotonic() + 10
        while True:
            try:
                held.check()
            except LockLostError as exc:
                lost = exc
                break
            assert time.monotonic() < deadline, "the replaced lease was never noticed"
            time.sleep(0.1)
        with pytest.raises(LockLostError):
            inner.check()  # a re-entrant hold checks the outer lease
    assert lost.exit_code == 75
    assert "replaced by pid 1 on elsewhere" in str(lost)
    # Our release left the intruder's lease alone: it is not ours.
    assert read_holder(settings).pid == 1  # type: ignore[union-attr]


class _FlakyStore:
    """The real store, whose puts start failing when told to (a network outage)."""

    def __init__(self, inner: lease.LeaseStore) -> None:
        self.inner = inner
        self.down = False

    def put(self, path: str, file: bytes, *, mode: Any = None) -> Any:
        if self.down:
            raise GenericError("connection refused (test outage)")
        return self.inner.put(path, file, mode=mode)

    def get(self, path: str) -> Any:
        return self.inner.get(path)

    def head(self, path: str) -> Any:
        return self.inner.head(path)

    def delete(self, paths: str) -> None:
        self.inner.delete(paths)


@pytest.mark.s3
def test_a_lease_that_cannot_be_renewed_for_the_ttl_is_lost(
    moto_s3: MotoS3, s3_lake: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(
        lake_dir=s3_lake, storage_options=moto_s3.storage_options, lock_lease_seconds=1.2
    )
    flaky = _FlakyStore(lease.open_store(s3_lake, moto_s3.storage_options))
    monkeypatch.setattr(lock, "open_lease_store", lambda _settings: flaky)
    with lake_lock(settings, 0) as held:
        flaky.down = True
        time.sleep(0.6)
        held.check()  # one failed renewal is not a lost lease yet
        time.sleep(1.2)
        with pytest.raises(LockLostError, match=r"renewed for more than 1\.2 s"):
            held.check()
        flaky.down = False


class _IgnoresPreconditions(_FlakyStore):
    """A store like some S3-compatible servers: If-None-Match and If-Match are ignored."""

    def put(self, path: str, file: bytes, *, mode: Any = None) -> Any:
        return self.inner.put(path, file, mode="overwrite")


@pytest.mark.s3
def test_a_store_that_ignores_conditional_puts_is_refused_unless_unsafe_no_lock(
    moto_s3: MotoS3,
    s3_lake: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def ignoring(settings: Settings) -> lease.LeaseStore:
        return _IgnoresPreconditions(lease.open_store(settings.lake_path, settings.storage_options))

    monkeypatch.setattr(lock, "open_lease_store", ignoring)
    ws = make_workspace(tmp_path / "ws", s3_lake, moto_s3.storage_options)
    with pytest.raises(LockUnsupportedError) as exc, lake_lock(load_settings(ws), 0):
        pass
    assert exc.value.exit_code == 2
    assert "second create-only put" in str(exc.value)
    assert "unsafe_no_lock = true" in str(exc.value)
    assert read_holder(load_settings(ws)) is None  # nothing was written

    monkeypatch.setenv("MEDALLION_UNSAFE_NO_LOCK", "true")
    settings = load_settings(ws)
    assert settings.unsafe_no_lock is True
    with (
        caplog.at_level(logging.WARNING, logger="medallion_lakehouse.pipeline.lock"),
        lake_lock(settings, 0) as held,
    ):
        assert held.kind == "none"
        assert held.warning is not None and "WITHOUT a writer lock" in held.warning
        held.check()  # no lease, nothing to lose
    assert "WITHOUT a writer lock" in caplog.text


@pytest.mark.s3
def test_the_capability_probe_accepts_moto(moto_s3: MotoS3, s3_lake: str) -> None:
    store = lease.open_store(s3_lake, moto_s3.storage_options)
    assert lease.conditional_put_problem(store, f"test:{s3_lake}") is None


# -- medallion unlock ---------------------------------------------------------------------------


@pytest.mark.s3
def test_unlock_removes_a_stale_lease(
    moto_s3: MotoS3, s3_lake: str, tmp_path: Path, cli: CliRunner
) -> None:
    ws = make_workspace(tmp_path / "ws", s3_lake, moto_s3.storage_options)
    settings = load_settings(ws)
    crashed = {
        "token": "crashed",
        "pid": 4242,
        "host": "gone-host",
        "run_id": "crashed-run",
        "command": "medallion run",
        "started_at": "2026-01-01T00:00:00+00:00",
        "ttl_seconds": 0,  # so it goes stale within a couple of seconds
    }
    store = lease.open_store(s3_lake, moto_s3.storage_options)
    store.put(lease.LEASE_KEY, json.dumps(crashed).encode(), mode="create")
    deadline = time.monotonic() + 10
    while lock_status(settings)[0].state != "stale":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    result = cli.invoke(app, ["unlock", "-w", str(ws), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["state"] == "stale" and data["removed"] is True
    assert data["holder"]["pid"] == 4242
    assert read_holder(settings) is None
    # Now free: unlock says so and exits 0.
    result = cli.invoke(app, ["unlock", "-w", str(ws)])
    assert result.exit_code == 0, result.output
    assert "free" in result.output


@pytest.mark.s3
def test_unlock_refuses_a_live_lease_without_force(
    two_workspaces: tuple[Path, Path], holder_a: subprocess.Popen[str], cli: CliRunner
) -> None:
    ws_b = two_workspaces[1]
    result = cli.invoke(app, ["unlock", "-w", str(ws_b)])
    assert result.exit_code == 75, result.output
    assert "live" in result.output and "--force" in result.output
    assert str(holder_a.pid) in result.output
    assert read_holder(load_settings(ws_b)).pid == holder_a.pid  # type: ignore[union-attr]

    result = cli.invoke(app, ["unlock", "-w", str(ws_b), "--force", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["removed"] is True and data["state"] == "held"
    assert "LIVE lease" in data["message"] and "--force" in data["message"]
    assert read_holder(load_settings(ws_b)) is None


# -- end to end ---------------------------------------------------------------------------------


@pytest.mark.s3
@pytest.mark.slow
def test_medallion_run_on_an_s3_lake_and_a_second_workspace_is_refused(
    two_workspaces: tuple[Path, Path],
) -> None:
    ws_a, ws_b = two_workspaces
    shutil.copyfile(seed_data_dir() / "raw_sales.csv", ws_a / "data" / "landing" / "raw.csv")
    cmd = [sys.executable, "-m", "medallion_lakehouse", "run", "--steps", "bronze,silver,gold"]
    first = subprocess.run(
        [*cmd, "--json", "-w", str(ws_a)], capture_output=True, text=True, env=_env(), timeout=300
    )
    assert first.returncode == 0, first.stderr[-3000:]
    report = json.loads(first.stdout)
    assert [s["status"] for s in report["steps"]] == ["ok", "ok", "ok"], report
    assert report["steps"][0]["rows_out"] == 5000
    assert read_holder(load_settings(ws_a)) is None  # released after the run

    holder = _holder(ws_a, 60)
    try:
        second = subprocess.run(
            [*cmd, "-w", str(ws_b)], capture_output=True, text=True, env=_env(), timeout=120
        )
    finally:
        holder.kill()
        holder.wait()
    assert second.returncode == 75, second.stderr[-3000:]
    assert "locked by" in second.stderr
    assert str(holder.pid) in second.stderr
