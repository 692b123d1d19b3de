"""Nothing lost in operation: each scenario an operator met off the happy path (issue 13).

1. recovery with a lost ledger and an archived landing file keeps bronze (and never deletes);
3. a file still being written is left for a later run, never half-ingested;
4. the lake's batch order, not the wall clock, decides which version of a sale is latest;
5. a crash between saving a model and recording its evaluation never puts that model in use;
6. an interrupted full refresh is resumed by the next run;
7. every writing command leaves its `_meta/runs` row.
(2, one writer per lake wherever it lives, is tested in test_lock*.py.)
"""

from __future__ import annotations

import csv
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest

from medallion_lakehouse.bronze import ingest as ingest_mod
from medallion_lakehouse.bronze.ingest import ingest
from medallion_lakehouse.config import load_settings
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.pipeline.context import StepContext
from medallion_lakehouse.silver import step as silver_step
from medallion_lakehouse.silver.audit import audit
from tests.conftest import seed_data_dir

SEED = seed_data_dir()
HEADER = ["sale_id", "sale_date", "store_id", "customer_id", "product", "quantity", "price",
          "total", "status"]  # fmt: skip


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDALLION_")}
    env.update(extra)
    return env


def medallion(ws: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = _clean_env(**({"MEDALLION_FAULT": fault} if fault else {}))
    return subprocess.run(
        [sys.executable, "-m", "medallion_lakehouse", *args, "-w", str(ws)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lake]:
    for key in list(os.environ):
        if key.startswith("MEDALLION_") and key != "MEDALLION_SEED_DATA":
            monkeypatch.delenv(key)
    (tmp_path / "data" / "landing").mkdir(parents=True)
    with Lake(load_settings(tmp_path)) as lk:
        yield lk


def landing(lake: Lake) -> Path:
    return Path(lake.settings.landing_path)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HEADER)
        writer.writeheader()
        writer.writerows(rows)
    return path


def sale(sale_id: str, status: str) -> dict[str, Any]:
    return {"sale_id": sale_id, "sale_date": "2025-03-01", "store_id": "NW-001",
            "customer_id": "C1", "product": "Laptop", "quantity": 1, "price": "10.00",
            "total": "10.00", "status": status}  # fmt: skip


def run_silver(lake: Lake, run_id: str = "silver-run") -> None:
    silver_step.run(lake, StepContext(run_id=run_id))


def rows(lake: Lake, name: str) -> list[dict[str, Any]]:
    return lake.read_arrow(name).to_pylist()


# -- 1. recovery never deletes ---------------------------------------------------------------
def test_lost_ledger_and_archived_landing_file_keep_bronze(lake: Lake) -> None:
    """Before: 'Removed 5,000 rows left by an interrupted ingest' and bronze/sales went to 0."""
    shutil.copyfile(SEED / "raw_sales.csv", landing(lake) / "raw_sales.csv")
    ingest(lake, run_id="first", settle_seconds=0)
    run_silver(lake)
    (landing(lake) / "raw_sales.csv").unlink()  # archived: bronze is the system of record
    shutil.rmtree(Path(lake.settings.table_uri("_meta/ingested_files")))

    result = ingest(lake, run_id="second", settle_seconds=0)

    assert len(rows(lake, "bronze/sales")) == 5000
    assert any("nothing was deleted" in note for note in result.repairs), result.repairs
    ledger = rows(lake, "_meta/ingested_files")
    assert [(r["source_file"], r["rows"], r["seq"]) for r in ledger] == [("raw_sales.csv", 5000, 1)]
    # Landing the same file again is recognised by its sha256, as before the loss.
    shutil.copyfile(SEED / "raw_sales.csv", landing(lake) / "again.csv")
    again = ingest(lake, run_id="third", settle_seconds=0)
    assert [f.status for f in again.files] == ["skipped"]
    run_silver(lake, "silver-2")
    assert audit(lake).ok


def test_crash_after_data_commit_then_file_archived_keeps_the_rows(tmp_path: Path) -> None:
    """Killed between bronze's data commit and its ledger row; the file then leaves landing.

    Before: the next ingest (from this or another workspace on the lake) deleted the committed
    rows. Now it records the batch from its intent and bronze's lineage, and silver takes it.
    """
    ws = tmp_path / "ws"
    (ws / "data" / "landing").mkdir(parents=True)
    shutil.copyfile(SEED / "raw_sales.csv", ws / "data" / "landing" / "raw_sales.csv")
    crashed = medallion(ws, "ingest", fault="bronze.before_marker")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    (ws / "data" / "landing" / "raw_sales.csv").unlink()

    done = medallion(ws, "run", "--steps", "bronze,silver,gold", "--json")
    assert done.returncode == 0, done.stderr
    with Lake(load_settings(ws)) as lake:
        assert len(rows(lake, "bronze/sales")) == 5000
        assert len(rows(lake, "_meta/ingested_files")) == 1
        assert lake.engine.count(lake.read("silver/sales")) > 4000
        assert audit(lake).ok


def test_lost_silver_ledger_neither_duplicates_nor_drops_quarantine(lake: Lake) -> None:
    """Before: silver's recovery deleted every quarantine row whose batch the ledger lacked."""
    shutil.copyfile(SEED / "raw_sales.csv", landing(lake) / "raw_sales.csv")
    good = [sale(f"G{i}", "completed") for i in range(2, 12)]
    bad = [sale("Q1", "completed") | {"store_id": "no digits"}, sale("Q3", "x") | {"quantity": 0}]
    write_csv(landing(lake) / "some_bad.csv", [bad[0], good[0], bad[1], *good[1:]])
    ingest(lake, run_id="b1", settle_seconds=0)
    run_silver(lake, "s1")
    quarantine = sorted(
        (r["_source_file"], r["_source_line"]) for r in rows(lake, "silver/sales_quarantine")
    )
    silver = lake.read_arrow("silver/sales").sort_by("sale_id").drop_columns(["_ingested_at"])
    assert quarantine == [("some_bad.csv", 1), ("some_bad.csv", 3)]
    shutil.rmtree(Path(lake.settings.table_uri("_meta/silver_batches")))

    run_silver(lake, "s2")  # every batch looks new: processed again, idempotently

    again_q = rows(lake, "silver/sales_quarantine")
    assert sorted((r["_source_file"], r["_source_line"]) for r in again_q) == quarantine
    again = lake.read_arrow("silver/sales").sort_by("sale_id").drop_columns(["_ingested_at"])
    assert again.equals(silver)
    assert audit(lake).ok


# -- 3. files still arriving -----------------------------------------------------------------
def _halves(path: Path) -> tuple[bytes, bytes]:
    """The file cut in the middle of a line (what a reader sees mid-write)."""
    data = path.read_bytes()
    cut = data.index(b"\n", len(data) // 2) + 7
    return data[:cut], data[cut:]


def test_file_written_during_the_settle_time_waits_for_a_later_run(lake: Lake) -> None:
    """Before: the partial file was committed; its cut last line became a phantom sale."""
    target = landing(lake) / "arriving.csv"
    head, rest = _halves(SEED / "raw_sales.csv")
    target.write_bytes(head)

    def producer() -> None:  # appends once, during the settle wait (margins of >= 1 s)
        time.sleep(1.5)
        with target.open("ab") as fh:
            fh.write(rest)

    writer = threading.Thread(target=producer)
    writer.start()
    first = ingest(lake, run_id="while-writing", settle_seconds=3.0)
    writer.join()

    assert [(f.status, f.rows) for f in first.files] == [("waiting", 0)]
    assert "still being written" in (first.files[0].reason or "")
    assert not lake.exists("bronze/sales")

    later = ingest(lake, run_id="later", settle_seconds=0)
    assert [(f.status, f.rows) for f in later.files] == [("ingested", 5000)]
    assert len(rows(lake, "bronze/sales")) == 5000


def test_file_held_open_by_a_producer_that_pauses_waits(lake: Lake) -> None:
    """A producer that pauses longer than the settle time still has its file open."""
    target = landing(lake) / "slow.csv"
    head, rest = _halves(SEED / "raw_sales.csv")
    with target.open("wb") as producer:
        producer.write(head)
        producer.flush()
        os.utime(target, (time.time() - 60, time.time() - 60))  # quiet for a minute
        paused = ingest(lake, run_id="paused", settle_seconds=1.0)
        assert [f.status for f in paused.files] == ["waiting"]
        assert "open for writing by pid" in (paused.files[0].reason or "")
        producer.write(rest)
    assert not lake.exists("bronze/sales")
    done = ingest(lake, run_id="closed", settle_seconds=0)
    assert [(f.status, f.rows) for f in done.files] == [("ingested", 5000)]


def test_file_changing_while_it_is_read_is_not_committed(lake: Lake) -> None:
    target = landing(lake) / "growing.csv"
    head, rest = _halves(SEED / "raw_sales.csv")
    target.write_bytes(head)
    appended = False

    def producer_writes_during_the_read(_n: int) -> None:
        nonlocal appended
        if not appended:
            appended = True
            with target.open("ab") as fh:
                fh.write(rest)

    result = ingest(
        lake, run_id="reading", settle_seconds=0, on_bytes=producer_writes_during_the_read
    )
    assert [f.status for f in result.files] == ["waiting"]
    assert "changed while it was being read" in (result.files[0].reason or "")
    assert not lake.exists("bronze/sales")  # the rows stream was abandoned before its commit
    # The attempt is closed: nothing of it is left for recovery to act on.
    assert ingest(lake, run_id="next", settle_seconds=0).repairs == []
    assert len(rows(lake, "bronze/sales")) == 5000


def test_a_file_written_just_before_the_run_is_waited_for_not_skipped(lake: Lake) -> None:
    """The settle time is waited out once; a complete, quiet file is then ingested."""
    shutil.copyfile(SEED / "late_sales.csv", landing(lake) / "late.csv")
    started = time.monotonic()
    result = ingest(lake, run_id="r", settle_seconds=0.5)
    assert [f.status for f in result.files] == ["ingested"]
    assert time.monotonic() - started >= 0.3


# -- 4. version order without wall clocks ------------------------------------------------------
def test_a_clock_behind_does_not_let_an_older_status_win(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: a run with the clock 5 minutes behind made `pending` win over `completed`."""
    write_csv(landing(lake) / "a.csv", [sale("S1", "pending")])
    ingest(lake, run_id="on-time", settle_seconds=0)
    run_silver(lake, "s1")

    class Behind(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Behind:  # type: ignore[override]
            real = datetime.now(tz or UTC) - timedelta(minutes=5)
            return cls.fromtimestamp(real.timestamp(), tz or UTC)

    monkeypatch.setattr(ingest_mod, "datetime", Behind)
    write_csv(landing(lake) / "b.csv", [sale("S1", "completed")])
    ingest(lake, run_id="clock-behind", settle_seconds=0)
    monkeypatch.undo()
    run_silver(lake, "s2")

    batches = sorted(rows(lake, "_meta/ingested_files"), key=lambda r: r["seq"])
    assert batches[1]["ingested_at"] < batches[0]["ingested_at"]  # the clock did go back
    assert [r["status"] for r in rows(lake, "silver/sales")] == ["completed"]
    assert audit(lake).ok


# -- 5. ml: no unevaluated model in use ----------------------------------------------------------
@pytest.fixture(scope="module")
def ml_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medallion_lakehouse.ml.simulate import SimulationOptions, simulate_silver
    from tests.test_ml_step import write_silver

    ws = tmp_path_factory.mktemp("ml") / "ws"
    with Lake(load_settings(ws)) as lake:
        write_silver(lake, simulate_silver(SimulationOptions(seed=3)))
    return ws


@pytest.mark.slow
def test_crash_before_the_evaluation_is_recorded_keeps_the_model_out_of_use(
    ml_workspace: Path, tmp_path: Path
) -> None:
    """Before: the model folder was saved and `latest` moved before the metrics row; `score`
    then used a model nobody had evaluated."""
    ws = tmp_path / "ws"
    shutil.copytree(ml_workspace, ws)
    crashed = medallion(ws, "train", fault="ml.after_model_saved")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert not (ws / "data" / "models" / "latest").exists()
    refused = medallion(ws, "score")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "No churn model" in refused.stderr

    trained = medallion(ws, "train", "--json")
    assert trained.returncode == 0, trained.stderr
    scored = medallion(ws, "score", "--json")
    assert scored.returncode == 0, scored.stderr


@pytest.mark.slow
def test_a_planted_model_file_is_never_loaded(ml_workspace: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(ml_workspace, ws)
    assert medallion(ws, "train").returncode == 0
    models = ws / "data" / "models"
    folder = models / (models / "latest").read_text().strip()
    ran = tmp_path / "planted-code-ran"

    class Planted:
        def __reduce__(self) -> tuple[Any, ...]:
            return (Path.touch, (ran,))

    (folder / "model.joblib").write_bytes(pickle.dumps(Planted()))
    refused = medallion(ws, "score")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "refusing to load" in refused.stderr
    assert not ran.exists()

    for pointer in ("../..", str(folder), "churn-x/../../etc"):
        (models / "latest").write_text(pointer)
        refused = medallion(ws, "score")
        assert refused.returncode == 2, (pointer, refused.stderr)
        assert "not a model version" in refused.stderr
    assert not ran.exists()


# -- 6. an interrupted full refresh is resumed -------------------------------------------------
@pytest.mark.slow
def test_interrupted_full_refresh_is_resumed_by_the_next_run(tmp_path: Path) -> None:
    """Before: quarantine was rebuilt, silver not, and the next run said 'no new bronze batches'."""
    ws = tmp_path / "ws"
    (ws / "data" / "landing").mkdir(parents=True)
    shutil.copyfile(SEED / "raw_sales.csv", ws / "data" / "landing" / "raw_sales.csv")
    assert medallion(ws, "run", "--steps", "bronze,silver,gold").returncode == 0
    shutil.rmtree(ws / "data" / "lake" / "silver" / "sales")  # lost: the operator refreshes

    crashed = medallion(ws, "run", "--steps", "silver", "--full-refresh",
                        fault="silver.after_quarantine")  # fmt: skip
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    resumed = medallion(ws, "run", "--steps", "silver,gold", "--json")
    assert resumed.returncode == 0, resumed.stderr
    import json

    silver = json.loads(resumed.stdout)["steps"][0]
    assert silver["metrics"]["mode"] == "full_refresh"
    assert silver["metrics"]["resumed_full_refresh"]
    with Lake(load_settings(ws)) as lake:
        assert lake.engine.count(lake.read("silver/sales")) > 4000
        assert audit(lake).ok
    again = medallion(ws, "run", "--steps", "silver", "--json")
    assert json.loads(again.stdout)["steps"][0]["metrics"]["mode"] == "incremental"


# -- 7. one writing session for every writing command ---------------------------------------------
def test_ingest_and_silver_commands_leave_run_rows(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medallion_lakehouse.cli.main import app

    ws = tmp_path / "ws"
    (ws / "data" / "landing").mkdir(parents=True)
    shutil.copyfile(SEED / "late_sales.csv", ws / "data" / "landing" / "late.csv")
    cli = CliRunner()
    assert cli.invoke(app, ["ingest", "-w", str(ws)]).exit_code == 0
    assert cli.invoke(app, ["silver", "-w", str(ws)]).exit_code == 0
    with Lake(load_settings(ws)) as lake:
        runs = lake.read_arrow("_meta/runs", columns=["step", "status"])
        ok = runs.filter(pc.equal(runs.column("status"), "ok")).column("step").to_pylist()
        assert sorted(ok) == ["bronze", "silver"]


# -- files already ingested are not read again ---------------------------------------------
def test_unchanged_files_are_skipped_without_being_read(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copyfile(SEED / "raw_sales.csv", landing(lake) / "raw_sales.csv")
    ingest(lake, run_id="first", settle_seconds=0)
    reads: list[Path] = []
    real = ingest_mod.digest
    monkeypatch.setattr(ingest_mod, "digest", lambda p, *a: reads.append(p) or real(p, *a))

    again = ingest(lake, run_id="again", settle_seconds=0)
    assert [f.status for f in again.files] == ["skipped"]
    assert "same path, size and mtime" in (again.files[0].reason or "")
    assert again.files[0].sha256 == rows(lake, "_meta/ingested_files")[0]["sha256"]
    assert reads == []

    verified = ingest(lake, run_id="verify", settle_seconds=0, verify=True)
    assert [(f.status, f.reason) for f in verified.files] == [
        ("skipped", "already ingested (same sha256)")
    ]
    assert len(reads) == 1
    # Touched (same bytes, new mtime): read again, recognised by its sha256, not ingested twice.
    os.utime(landing(lake) / "raw_sales.csv")
    touched = ingest(lake, run_id="touched", settle_seconds=0)
    assert [f.reason for f in touched.files] == ["already ingested (same sha256)"]
    assert len(rows(lake, "bronze/sales")) == 5000
