"""The lake's writer lock: exclusion across processes, waiting, crashed holders, re-entrancy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medallion_lakehouse.cli.main import app
from medallion_lakehouse.config import Settings, load_settings
from medallion_lakehouse.errors import ConfigError, LockHeldError
from medallion_lakehouse.pipeline.lock import lake_lock, lock_path, read_holder

HOLDER = """
import sys, time
from medallion_lakehouse.config import load_settings
from medallion_lakehouse.pipeline.lock import lake_lock
with lake_lock(load_settings(sys.argv[1]), 0, run_id="holder-run", command="test holder"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
print("released", flush=True)
"""


def _holder(workspace: Path, seconds: float) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDALLION_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(workspace), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def held(workspace: Path) -> Iterator[subprocess.Popen[str]]:
    proc = _holder(workspace, 60)
    yield proc
    proc.kill()
    proc.wait()


def test_second_writer_is_refused_with_holder_details(
    settings: Settings, held: subprocess.Popen[str]
) -> None:
    with pytest.raises(LockHeldError) as exc, lake_lock(settings, 0):
        pass
    assert exc.value.exit_code == 75
    message = str(exc.value)
    assert f"pid {held.pid}" in message
    assert "holder-run" in message
    assert "--wait" in message


def test_wait_gives_up_after_the_timeout(settings: Settings, held: subprocess.Popen[str]) -> None:
    started = time.monotonic()
    with pytest.raises(LockHeldError, match=r"after waiting 0\.6 s"), lake_lock(settings, 0.6):
        pass
    assert 0.5 <= time.monotonic() - started < 5


def test_wait_succeeds_when_the_holder_finishes(settings: Settings, workspace: Path) -> None:
    proc = _holder(workspace, 0.8)
    try:
        with lake_lock(settings, 20, run_id="me") as lock:
            assert lock.took_over is None  # a clean release leaves no trace
            assert read_holder(settings).run_id == "me"  # type: ignore[union-attr]
    finally:
        proc.wait(10)
    assert read_holder(settings) is None


def test_lock_of_a_killed_process_is_taken_over(settings: Settings, workspace: Path) -> None:
    proc = _holder(workspace, 60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stale = read_holder(settings)
    assert stale is not None and stale.pid == proc.pid  # the file still names the dead holder
    with lake_lock(settings, 0, run_id="next") as lock:
        assert lock.took_over is not None
        assert lock.took_over.pid == proc.pid
        assert lock.took_over.run_id == "holder-run"
    assert read_holder(settings) is None


def test_reentrant_in_one_process(settings: Settings) -> None:
    with lake_lock(settings, 0, run_id="outer"), lake_lock(settings, 0, run_id="inner"):
        assert read_holder(settings).run_id == "outer"  # type: ignore[union-attr]
    # Fully released: another process can take it now.
    proc = _holder(settings.workspace, 0)
    proc.wait(10)
    assert lock_path(settings).parent.name == "_meta"


def test_medallion_run_reports_the_lock_and_exits_75(
    workspace: Path, held: subprocess.Popen[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):
        if key.startswith("MEDALLION_") and key != "MEDALLION_SEED_DATA":
            monkeypatch.delenv(key)
    result = CliRunner().invoke(app, ["run", "-w", str(workspace), "--steps", "gold"])
    assert result.exit_code == 75, result.output
    assert "locked by" in result.output
    assert str(held.pid) in result.output


@pytest.mark.parametrize(
    "command",
    [
        ["ingest"],
        ["silver"],
        ["train"],
        ["score"],
        ["optimize", "--apply"],
        ["demo", "--rows", "10"],
    ],
)
def test_every_writing_command_takes_the_lock(
    workspace: Path,
    held: subprocess.Popen[str],
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
) -> None:
    for key in list(os.environ):
        if key.startswith("MEDALLION_") and key != "MEDALLION_SEED_DATA":
            monkeypatch.delenv(key)
    result = CliRunner().invoke(app, [*command, "-w", str(workspace), "--wait", "0.3"])
    assert result.exit_code == 75, result.output
    assert str(held.pid) in result.output
    # Refused before writing anything: no table was created under the lake.
    assert not (workspace / "data" / "lake" / "bronze").exists()


@pytest.mark.slow
def test_two_runs_at_once_one_waits_for_the_other(workspace: Path, seed_dir: Path) -> None:
    """Two real `medallion run` processes: with --wait both succeed, one after the other."""
    import shutil

    shutil.copyfile(seed_dir / "raw_sales.csv", workspace / "data" / "landing" / "raw.csv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDALLION_")}
    cmd = [sys.executable, "-m", "medallion_lakehouse", "run", "-w", str(workspace),
           "--steps", "bronze,silver,gold", "--json"]  # fmt: skip
    first = subprocess.Popen([*cmd, "--wait", "120"], stdout=subprocess.PIPE, env=env, text=True)
    second = subprocess.Popen([*cmd, "--wait", "120"], stdout=subprocess.PIPE, env=env, text=True)
    out1, _ = first.communicate(timeout=300)
    out2, _ = second.communicate(timeout=300)
    assert (first.returncode, second.returncode) == (0, 0)
    import json

    reports = [json.loads(out1), json.loads(out2)]
    bronze_rows = sorted(r["steps"][0]["rows_out"] for r in reports)
    assert bronze_rows == [0, 5000]  # exactly one of them ingested the file
    # Without --wait, a run started while another holds the lock exits 75.
    holder = _holder(workspace, 60)
    try:
        third = subprocess.run([*cmd], capture_output=True, env=env, text=True, timeout=120)
        assert third.returncode == 75
        assert "locked by" in third.stderr
    finally:
        holder.kill()
        holder.wait()


# -- two workspaces, one local lake -------------------------------------------------------------


def _workspace(root: Path, lake_dir: str) -> Path:
    (root / "data" / "landing").mkdir(parents=True)
    (root / "medallion.toml").write_text(f"lake_dir = {json.dumps(lake_dir)}\n", encoding="utf-8")
    return root


@pytest.mark.parametrize(
    ("spell_a", "spell_b"),
    [("uri", "uri"), ("path", "path"), ("path", "uri")],
    ids=["file-uri", "plain-path", "path-and-uri"],
)
def test_two_workspaces_on_one_local_lake_exclude_each_other(
    tmp_path: Path, settings: Settings, spell_a: str, spell_b: str
) -> None:
    """Workspaces in separate folders whose medallion.toml name the same lake share one lock."""
    lake = tmp_path / "shared lake"  # a space: the file:// URI is percent-encoded
    spell = {"uri": lake.as_uri(), "path": str(lake)}
    ws_a = _workspace(tmp_path / "a", spell[spell_a])
    ws_b = _workspace(tmp_path / "b", spell[spell_b])
    settings_b = load_settings(ws_b)
    assert lock_path(settings_b) == lake / "_meta" / "writer.lock"
    proc = _holder(ws_a, 60)
    try:
        with pytest.raises(LockHeldError) as exc, lake_lock(settings_b, 0):
            pass
        assert f"pid {proc.pid}" in str(exc.value)
        assert "holder-run" in str(exc.value)
    finally:
        proc.kill()
        proc.wait()
    with lake_lock(settings_b, 0) as lock:
        assert lock.kind == "flock"
        assert lock.took_over is not None and lock.took_over.pid == proc.pid
        lock.check()  # a local lock is never lost


def test_a_file_uri_on_another_host_is_a_config_error(tmp_path: Path, settings: Settings) -> None:
    settings_b = load_settings(_workspace(tmp_path / "b", "file://otherhost/srv/lake"))
    with pytest.raises(ConfigError, match="must be on this machine"):
        lock_path(settings_b)


# -- medallion unlock on a local lake -----------------------------------------------------------


def test_unlock_on_a_local_lake_reports_the_flock(
    settings: Settings, workspace: Path, cli: CliRunner
) -> None:
    result = cli.invoke(app, ["unlock", "-w", str(workspace), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["state"] == "free"

    proc = _holder(workspace, 60)
    try:
        result = cli.invoke(app, ["unlock", "-w", str(workspace), "--force"])
        assert result.exit_code == 75, result.output
        assert str(proc.pid) in result.output
        assert "nothing to remove" in result.output.lower()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # The kernel released the dead holder's flock; only its trace is left in the file.
    result = cli.invoke(app, ["unlock", "-w", str(workspace), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["state"] == "stale" and data["removed"] is False
    assert data["holder"]["pid"] == proc.pid
