"""`sql`, `trace`, `plan`, `verify` and `quality --manifest` on real lakes (seed and generated)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

from medallion_lakehouse.cli.main import app
from medallion_lakehouse.config import load_settings
from medallion_lakehouse.contracts import all_contracts
from medallion_lakehouse.generate import MANIFEST_NAME, GenerateOptions, generate
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.look.sql import view_name
from medallion_lakehouse.storage.delta import CommitInfo
from tests.conftest import seed_data_dir

SEED = seed_data_dir()
CORE = "bronze,silver,gold"
DATA_TABLES = ("bronze/sales", "silver/sales", "silver/sales_quarantine", "gold/daily_sales")


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def run(ws: Path) -> dict[str, Any]:
    code, out, err = cli("run", "-w", str(ws), "--steps", CORE, "--json")
    assert code == 0, out + err
    report: dict[str, Any] = json.loads(out)
    return report


def lake_of(ws: Path) -> Lake:
    return Lake(load_settings(ws))


def copy_ws(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


@pytest.fixture(scope="module")
def seed_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed files, raw then late, each in its own run."""
    ws = tmp_path_factory.mktemp("seed") / "ws"
    landing = ws / "data" / "landing"
    landing.mkdir(parents=True)
    shutil.copyfile(SEED / "raw_sales.csv", landing / "raw_sales.csv")
    run(ws)
    shutil.copyfile(SEED / "late_sales.csv", landing / "late_sales.csv")
    run(ws)
    return ws


@pytest.fixture(scope="module")
def gen_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated files with every defect kind, ingested one run per file (incremental)."""
    ws = tmp_path_factory.mktemp("gen") / "ws"
    landing = ws / "data" / "landing"
    landing.mkdir(parents=True)
    staging = ws / "staging"
    options = GenerateOptions(
        rows=6_000, customers=300, seed=11, files=3, invalid_fraction=0.02,
        start=date(2025, 1, 1), end=date(2025, 6, 30),
    )  # fmt: skip
    generate(options, staging)
    shutil.copyfile(staging / MANIFEST_NAME, landing / MANIFEST_NAME)
    for f in sorted(staging.glob("sales_*.csv")):
        shutil.copyfile(f, landing / f.name)
        run(ws)
    return ws


# -- sql ---------------------------------------------------------------------------------------
def test_sql_views_are_named_after_every_contract(seed_ws: Path) -> None:
    code, out, _ = cli("sql", "-w", str(seed_ws), "--tables", "--json")
    assert code == 0
    views = {v["view"]: v for v in json.loads(out)}
    assert set(views) == {view_name(c) for c in all_contracts()}
    assert {"bronze.sales", "silver.sales", "gold.daily_sales", "meta.runs"} <= set(views)
    assert views["bronze.sales"]["rows"] == 5_500 and views["bronze.sales"]["version"] == 1


def test_sql_answers_from_the_live_snapshot_in_every_format(seed_ws: Path) -> None:
    with lake_of(seed_ws) as lake:
        silver = lake.read_arrow("silver/sales")
        completed = silver.filter(pc.equal(silver.column("status"), "completed"))
        revenue = pc.sum(completed.column("total")).as_py()
    q = (
        "SELECT count(*) AS n, (SELECT sum(revenue) FROM gold.daily_sales) AS revenue "
        "FROM silver.sales"
    )
    code, out, _ = cli("sql", "-w", str(seed_ws), q, "--json")
    assert code == 0
    assert json.loads(out) == [{"n": silver.num_rows, "revenue": str(revenue)}]
    code, out, _ = cli("sql", "-w", str(seed_ws), q, "--csv")
    assert out.splitlines() == ["n,revenue", f"{silver.num_rows},{revenue}"]
    code, out, _ = cli("sql", "-w", str(seed_ws), "SELECT count(*) AS n FROM meta.runs")
    assert code == 0 and "6" in out  # two runs x three steps


def test_look_commands_print_plain_lines_off_a_terminal(seed_ws: Path) -> None:
    # The CLI runner is not a terminal: tables come as aligned lines (Airflow logs, pipes).
    for args in (("sql", "--tables"), ("sql", "SELECT 1 AS one"), ("plan",)):
        code, out, _ = cli(*args, "-w", str(seed_ws))
        assert code == 0, out
        assert out.strip() and not set(out) & set("┃│┏━┡╇└┘"), out


def test_sql_file_and_as_of(seed_ws: Path, tmp_path: Path) -> None:
    query = tmp_path / "q.sql"
    query.write_text("SELECT count(*) AS n FROM silver.sales")
    code, out, _ = cli("sql", "-w", str(seed_ws), "--file", str(query), "--json")
    assert code == 0 and json.loads(out) == [{"n": 5_500}]
    code, out, _ = cli(
        "sql", "-w", str(seed_ws), "--file", str(query), "--json", "--as-of", "silver.sales=0"
    )
    assert code == 0 and json.loads(out) == [{"n": 5_000}]  # before the late file
    code, _, err = cli("sql", "-w", str(seed_ws), "SELECT 1", "--as-of", "silver.sales=99")
    assert code == 2 and "no version" in err
    with lake_of(seed_ws) as lake:
        [late, raw] = lake.history("silver/sales")
    between = datetime.fromtimestamp((raw["timestamp"] + late["timestamp"]) / 2000, UTC)
    code, out, _ = cli(
        "sql", "-w", str(seed_ws), "--file", str(query), "--json",
        "--as-of", f"silver.sales={between.isoformat()}",
    )  # fmt: skip
    assert code == 0 and json.loads(out) == [{"n": 5_000}]
    code, _, err = cli("sql", "-w", str(seed_ws), "SELECT 1", "--as-of", "silver.sales=2000-01-01")
    assert code == 2 and "no version as of" in err


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO silver.sales SELECT * FROM silver.sales",
        "DELETE FROM silver.sales",
        "CREATE TABLE x AS SELECT 1",
        "COPY (SELECT 1) TO '{out}'",
        "ATTACH '{out}' AS other",
        "SET enable_external_access = true",
        "SELECT 1; DROP VIEW silver.sales",
    ],
    ids=["insert", "delete", "create", "copy", "attach", "set", "second-statement"],
)
def test_sql_refuses_statements_that_write(seed_ws: Path, tmp_path: Path, statement: str) -> None:
    out_file = tmp_path / "out.csv"
    code, out, err = cli("sql", "-w", str(seed_ws), statement.format(out=out_file))
    assert code == 2, out
    assert "read-only" in err and len(err.strip().splitlines()) == 1
    assert not out_file.exists()


def test_sql_on_generated_data_matches_the_tables(gen_ws: Path) -> None:
    with lake_of(gen_ws) as lake:
        rules = pc.value_counts(lake.read_arrow("silver/sales_quarantine").column("rule"))
    expected = {r["values"]: r["counts"] for r in rules.to_pylist()}
    q = "SELECT rule, count(*) AS n FROM silver.sales_quarantine GROUP BY rule"
    code, out, _ = cli("sql", "-w", str(gen_ws), q, "--json")
    assert code == 0 and {r["rule"]: r["n"] for r in json.loads(out)} == expected
    assert len(expected) == 3  # store, date and quantity defects were all injected


def test_sql_cannot_read_files_outside_the_lake(seed_ws: Path) -> None:
    landing = seed_ws / "data" / "landing" / "raw_sales.csv"
    code, _, err = cli("sql", "-w", str(seed_ws), f"SELECT * FROM read_csv('{landing}')")
    assert code == 2 and "disabled" in err


# -- trace -------------------------------------------------------------------------------------
def test_trace_by_file_and_line_through_every_layer(seed_ws: Path) -> None:
    code, out, _ = cli(
        "trace", "-w", str(seed_ws), "--file", "late_sales.csv", "--line", "3", "--json"
    )
    assert code == 0
    t = json.loads(out)
    assert set(t) >= {"sale_id", "versions", "silver", "gold"}
    [v] = t["versions"]
    assert (v["source_file"], v["source_line"], v["outcome"]) == ("late_sales.csv", 3, "current")
    assert v["rule"] is None and v["reason"] is None and isinstance(v["ingested_at"], str)
    assert v["bronze_version"] == 1  # the late file was bronze's second commit
    assert t["silver"]["sale_id"] == t["sale_id"] and t["silver"]["_source_line"] == 3
    gold = {g["table"]: g for g in t["gold"]}
    assert gold["gold/daily_sales"]["key"] == {"sale_date": t["silver"]["sale_date"]}
    assert gold["gold/daily_sales"]["version"] == 1  # its month was rebuilt by the late run
    # The same sale by its id, or by the file's full path, gives the same trace.
    code, again, _ = cli("trace", "-w", str(seed_ws), t["sale_id"], "--json")
    assert code == 0 and json.loads(again) == t
    path = str(seed_ws / "data" / "landing" / "late_sales.csv")
    code, again, _ = cli("trace", "-w", str(seed_ws), "--file", path, "--line", "3", "--json")
    assert code == 0 and json.loads(again) == t


def test_trace_names_the_gold_version_that_last_rewrote_the_month(seed_ws: Path) -> None:
    # The raw file's line 2 is dated 2025-01-15; the late file touched only Nov and Dec.
    code, out, _ = cli(
        "trace", "-w", str(seed_ws), "--file", "raw_sales.csv", "--line", "2", "--json"
    )
    assert code == 0
    t = json.loads(out)
    assert t["silver"]["sale_date"] == "2025-01-15"
    assert t["versions"][0]["bronze_version"] == 0
    assert {g["table"]: g["version"] for g in t["gold"]} == {
        "gold/daily_sales": 0,
        "gold/product_store_daily": 0,
    }


def test_trace_exits_1_when_nothing_matches(seed_ws: Path) -> None:
    assert cli("trace", "-w", str(seed_ws), "no-such-sale")[0] == 1
    code, out, _ = cli(
        "trace", "-w", str(seed_ws), "--file", "raw_sales.csv", "--line", "99999", "--json"
    )
    assert code == 1 and json.loads(out)["versions"] == []
    assert cli("trace", "-w", str(seed_ws), "--file", "raw_sales.csv")[0] == 2  # no --line


def test_trace_superseded_and_quarantined_versions(gen_ws: Path) -> None:
    with lake_of(gen_ws) as lake:
        bronze = lake.read_arrow("bronze/sales", columns=["sale_id", "_source_file"])
        quarantine = lake.read_arrow("silver/sales_quarantine").to_pylist()
    counts = pc.value_counts(bronze.column("sale_id")).to_pylist()
    updated = next(c["values"] for c in counts if c["counts"] == 2)
    code, out, _ = cli("trace", "-w", str(gen_ws), updated, "--json")
    assert code == 0
    t = json.loads(out)
    outcomes = [v["outcome"] for v in t["versions"]]
    assert sorted(outcomes) == ["current", "superseded"] or outcomes.count("superseded") >= 1
    current = next(v for v in t["versions"] if v["outcome"] == "current")
    old = next(v for v in t["versions"] if v["outcome"] == "superseded")
    assert old["superseded_by"]["_batch_id"] == current["batch_id"] == t["silver"]["_batch_id"]
    assert [v["batch_seq"] for v in t["versions"]] == sorted(v["batch_seq"] for v in t["versions"])

    bad = quarantine[0]
    code, out, _ = cli(
        "trace", "-w", str(gen_ws), "--file", bad["_source_file"],
        "--line", str(bad["_source_line"]), "--json",
    )  # fmt: skip
    assert code == 0
    t = json.loads(out)
    mine = next(v for v in t["versions"] if v["batch_id"] == bad["_batch_id"]
                and v["source_line"] == bad["_source_line"])  # fmt: skip
    assert (mine["outcome"], mine["rule"], mine["reason"]) == (
        "quarantined",
        bad["rule"],
        bad["reason"],
    )


# -- plan --------------------------------------------------------------------------------------
def versions(lake: Lake) -> dict[str, int | None]:
    return {c.name: lake.version(c.name) for c in all_contracts()}


def test_plan_predicts_the_next_run_and_writes_nothing(gen_ws: Path, tmp_path: Path) -> None:
    ws = copy_ws(gen_ws, tmp_path / "ws")
    landing = ws / "data" / "landing"
    staging = ws / "staging"
    extra = GenerateOptions(
        rows=1_500, customers=300, seed=12, files=1, invalid_fraction=0.05,
        start=date(2025, 5, 1), end=date(2025, 7, 31),
    )  # fmt: skip
    generate(extra, staging / "more")
    shutil.copyfile(staging / "more" / "sales_0001.csv", landing / "more_0001.csv")
    with lake_of(ws) as lake:
        before = versions(lake)
    code, out, err = cli("plan", "-w", str(ws), "--json")
    assert code == 0, err
    plan = json.loads(out)
    with lake_of(ws) as lake:
        assert versions(lake) == before
    assert not (Path(lake.settings.lake_path) / "_lock").exists()
    actions = {f["source_file"]: f["action"] for f in plan["files"]}
    assert actions == {
        "more_0001.csv": "ingest",
        **{f"sales_000{i}.csv": "skip" for i in (1, 2, 3)},
    }
    [batch] = plan["silver"]["batches"]
    assert not batch["in_bronze"] and not batch["held"]

    report = run(ws)
    bronze, silver, gold = report["steps"]
    assert bronze["rows_out"] == batch["rows"] == plan["files"][0]["rows"]
    assert silver["rows_quarantined"] == batch["quarantined"] > 0
    assert sum(plan["silver"]["quarantined_by_rule"].values()) == batch["quarantined"]
    assert silver["metrics"]["affected_months"] == plan["silver"]["months"]
    assert gold["metrics"]["rebuilt_months"] == plan["gold"]["months"]
    with lake_of(ws) as lake:
        quality = lake.read_arrow("_meta/quality").to_pylist()
    last = max(r["run_id"] for r in quality if r["table"] == "silver/sales")
    recorded = {r["rule"]: r["rows_failed"] for r in quality if r["run_id"] == last
                and r["table"] == "silver/sales"}  # fmt: skip
    assert all(recorded[k] == v for k, v in plan["silver"]["rule_failures"].items())

    code, out, _ = cli("plan", "-w", str(ws), "--json")
    assert json.loads(out)["nothing_to_do"] is True
    code, out, _ = cli("plan", "-w", str(ws))
    assert code == 0 and "Nothing to do" in out


def test_plan_sees_pending_bronze_batches(seed_ws: Path, tmp_path: Path) -> None:
    ws = copy_ws(seed_ws, tmp_path / "ws")
    shutil.copyfile(SEED / "late_sales.csv", ws / "data" / "landing" / "late_2.csv")
    code, _, err = cli("ingest", "-w", str(ws))
    assert code == 0, err
    code, out, _ = cli("plan", "-w", str(ws), "--json")
    plan = json.loads(out)
    # A byte-identical copy: bronze skips it by sha256, so nothing is pending.
    assert {f["source_file"]: f["action"] for f in plan["files"]}["late_2.csv"] == "skip"
    assert plan["silver"]["batches"] == [] and plan["nothing_to_do"]


def test_plan_replay_shows_moves_and_revenue_change(seed_ws: Path, tmp_path: Path) -> None:
    """A lake whose silver was built under other rules: one completed sale was quarantined."""
    ws = copy_ws(seed_ws, tmp_path / "ws")
    commit = CommitInfo(run_id="test", step="test")
    with lake_of(ws) as lake:
        silver = lake.read_arrow("silver/sales")
        month = "2025-03"
        rows = silver.filter(pc.equal(silver.column("sale_month"), month))
        victim = next(r for r in rows.to_pylist() if r["status"] == "completed")
        keep = rows.filter(pc.invert(pc.equal(rows.column("sale_id"), victim["sale_id"])))
        lake.write_arrow("silver/sales", keep, commit=commit, replace={"sale_month": [month]})
        bronze = lake.read_arrow("bronze/sales")
        record = bronze.filter(
            pc.and_(
                pc.equal(bronze.column("_batch_id"), victim["_batch_id"]),
                pc.equal(bronze.column("_source_line"), victim["_source_line"]),
            )
        )
        q = lake.contract("silver/sales_quarantine").schema
        extra = {"rule": ["old_rule"], "reason": ["an older rule"], "run_id": ["test"]}
        quarantined = pa.table(
            {f.name: extra[f.name] if f.name in extra else record.column(f.name) for f in q},
            schema=q,
        )
        lake.write_arrow("silver/sales_quarantine", quarantined, commit=commit)
    code, out, _ = cli("plan", "-w", str(ws), "--json", "--replay")
    assert code == 0
    replay = json.loads(out)["replay"]
    assert replay["computed"] and not replay["rules_changed"]
    assert replay["moves"] == [{"direction": "to_silver", "rule": "old_rule", "rows": 1}]
    assert replay["months"] == [month]
    [change] = replay["revenue"]
    assert change["sale_month"] == month and Decimal(change["change"]) == victim["total"]
    # Without --replay and without a rule change, nothing is replayed.
    assert json.loads(cli("plan", "-w", str(ws), "--json")[1])["replay"]["computed"] is False


# -- verify ------------------------------------------------------------------------------------
def test_verify_equal_on_seed_and_on_incremental_generated_data(
    seed_ws: Path, gen_ws: Path
) -> None:
    for ws in (seed_ws, gen_ws):
        code, out, err = cli("verify", "-w", str(ws), "--json")
        assert code == 0, out + err
        report = json.loads(out)
        assert report["equal"] and report["differences"] == []
        assert set(report["tables"]) == {
            "silver/sales", "silver/sales_quarantine", "gold/daily_sales",
            "gold/product_store_daily",
        }  # fmt: skip
    code, out, _ = cli("verify", "-w", str(gen_ws))
    assert code == 0 and "equal" in out


def test_verify_reports_a_month_that_differs(seed_ws: Path, tmp_path: Path) -> None:
    ws = copy_ws(seed_ws, tmp_path / "ws")
    with lake_of(ws) as lake:
        silver = lake.read_arrow("silver/sales")
        rows = silver.filter(pc.equal(silver.column("sale_month"), "2025-05")).to_pylist()
        rows[0]["customer_id"] = "someone-else"  # content changes, counts and revenue do not
        lake.write_arrow(
            "silver/sales",
            pa.Table.from_pylist(rows, schema=silver.schema),
            commit=CommitInfo(run_id="test", step="test"),
            replace={"sale_month": ["2025-05"]},
        )
    code, out, _ = cli("verify", "-w", str(ws), "--json")
    assert code == 1
    report = json.loads(out)
    [diff] = report["differences"]
    assert (diff["table"], diff["part"], diff["same_rows"]) == ("silver/sales", "2025-05", False)
    assert diff["live_rows"] == diff["rebuilt_rows"]
    code, out, _ = cli("verify", "-w", str(ws))
    assert code == 1 and "2025-05" in out
    with lake_of(ws) as lake:  # verify wrote nothing to the live lake
        assert lake.version("silver/sales") == 2


@pytest.mark.slow
def test_verify_duckdb_lake_against_spark(gen_ws: Path) -> None:
    code, out, err = cli(
        "verify", "-w", str(gen_ws), "--engine", "spark", "--spark-master", "local[2]", "--json"
    )
    assert code == 0, out + err
    report = json.loads(out)
    assert report["engine"] == "spark" and report["equal"]
    # trace gives the same answer on Spark.
    args = ("trace", "-w", str(gen_ws), "--file", "sales_0002.csv", "--line", "7", "--json")
    duck = json.loads(cli(*args)[1])
    code, out, err = cli(*args, "--engine", "spark")
    assert code == 0, err
    assert json.loads(out) == duck and duck["versions"]


@pytest.mark.slow
def test_plan_names_an_ingest_a_crash_interrupted(seed_ws: Path, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    ws = copy_ws(seed_ws, tmp_path / "ws")
    # Other bytes than late_sales.csv (one status changed), so it is a new file to bronze.
    (ws / "data" / "landing" / "again.csv").write_text(
        (SEED / "late_sales.csv").read_text().replace("Completed", "Pending", 1)
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDALLION_")}
    crashed = subprocess.run(
        [sys.executable, "-m", "medallion_lakehouse", "ingest", "-w", str(ws)],
        env={**env, "MEDALLION_FAULT": "bronze.before_marker"},
        capture_output=True,
        timeout=300,
    )
    assert crashed.returncode == -signal.SIGKILL
    plan = json.loads(cli("plan", "-w", str(ws), "--json")[1])
    assert plan["bronze_recovery"] == ["again.csv"] and not plan["nothing_to_do"]
    run(ws)
    assert json.loads(cli("plan", "-w", str(ws), "--json")[1])["nothing_to_do"]


# -- quality --manifest ------------------------------------------------------------------------
def test_quality_manifest_scores_every_defect_kind(gen_ws: Path, tmp_path: Path) -> None:
    code, out, err = cli("quality", "-w", str(gen_ws), "--manifest", "--json")
    assert code == 0, err
    score = json.loads(out)
    manifest = json.loads((gen_ws / "data" / "landing" / MANIFEST_NAME).read_text())
    injected = {**manifest["defects"]["invalid"], **{
        k: manifest["defects"][k]
        for k in ("missing_price", "missing_status", "duplicate_rows", "update_rows")
    }}  # fmt: skip
    kinds = {k["kind"]: k for k in score["kinds"]}
    assert {k: v["injected"] for k, v in kinds.items()} == injected
    assert all(v["injected"] > 0 for v in kinds.values())
    assert all(v["caught"] == v["injected"] and v["false_alarms"] == 0 for v in kinds.values())
    assert score["perfect"] and len(score["files"]) == 3

    # A manifest that claims fewer (more) defects turns the difference into false alarms (misses).
    ws = copy_ws(gen_ws, tmp_path / "ws")
    path = ws / "data" / "landing" / MANIFEST_NAME
    edited = json.loads(path.read_text())
    edited["files"][0]["invalid"]["quantity_zero"] -= 2
    edited["files"][1]["missing_price"] += 5
    path.write_text(json.dumps(edited))
    kinds = {
        k["kind"]: k
        for k in json.loads(cli("quality", "-w", str(ws), "--manifest", "--json")[1])["kinds"]
    }
    assert kinds["quantity_zero"]["false_alarms"] == 2 and kinds["quantity_zero"]["missed"] == 0
    assert kinds["missing_price"]["missed"] == 5 and kinds["missing_price"]["false_alarms"] == 0


def test_quality_manifest_without_manifest_is_a_clear_error(seed_ws: Path) -> None:
    code, _, err = cli("quality", "-w", str(seed_ws), "--manifest")
    assert code == 2 and "_manifest.json" in err


def test_trace_pending_batch_and_plan_held_batch(seed_ws: Path, tmp_path: Path) -> None:
    """A file bronze took but silver did not: trace says pending; plan predicts the gate."""
    ws = copy_ws(seed_ws, tmp_path / "ws")
    landing = ws / "data" / "landing"
    lines = (SEED / "late_sales.csv").read_text().splitlines()
    header, first = lines[0], lines[1].split(",")
    broken = [",".join([first[0], "NW-XX", *first[2:]])] * 3  # store without digits: quarantined
    (landing / "bad.csv").write_text("\n".join([header, *broken, lines[2]]) + "\n")
    assert cli("ingest", "-w", str(ws))[0] == 0
    code, out, _ = cli("trace", "-w", str(ws), "--file", "bad.csv", "--line", "4", "--json")
    assert code == 0
    [version] = [v for v in json.loads(out)["versions"] if v["source_file"] == "bad.csv"]
    assert version["outcome"] == "pending" and "not processed" in version["reason"]

    code, out, _ = cli("plan", "-w", str(ws), "--json")
    [batch] = json.loads(out)["silver"]["batches"]
    assert (batch["source_file"], batch["in_bronze"], batch["rows"]) == ("bad.csv", True, 4)
    assert batch["quarantined"] == 3 and batch["held"]  # 75 % > quarantine_fail_share 20 %
    assert json.loads(out)["silver"]["quarantined_by_rule"] == {}  # a held batch commits nothing
    code, out, _ = cli("silver", "-w", str(ws), "--json")
    assert code == 3 and json.loads(out)["metrics"]["held_batches"] == [batch["batch_id"]]

    # Accepted, its bad rows are quarantined: a record without any id is its own only version.
    assert cli("held", "-w", str(ws), "--accept", batch["batch_id"])[0] == 0
    assert cli("silver", "-w", str(ws))[0] == 0
    code, out, _ = cli("trace", "-w", str(ws), "--file", "bad.csv", "--line", "2", "--json")
    assert code == 0
    t = json.loads(out)
    assert t["sale_id"] is None and t["silver"] is None and t["gold"] == []
    [version] = t["versions"]
    assert (version["outcome"], version["rule"]) == ("quarantined", "store_id_valid")
    assert version["raw"]["store_id"] == "NW-XX"


def test_look_commands_on_an_empty_workspace(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "data" / "landing").mkdir(parents=True)
    code, out, _ = cli("sql", "-w", str(ws), "SELECT count(*) AS n FROM silver.sales", "--json")
    assert code == 0 and json.loads(out) == [{"n": 0}]
    assert cli("trace", "-w", str(ws), "anything")[0] == 1
    code, out, _ = cli("plan", "-w", str(ws), "--json")
    assert code == 0 and json.loads(out)["nothing_to_do"] is True
    code, out, _ = cli("verify", "-w", str(ws), "--json")
    assert code == 0 and json.loads(out)["notes"]


def test_report_section_scores_the_manifest(gen_ws: Path, seed_ws: Path) -> None:
    from medallion_lakehouse.report import step as report_step

    with lake_of(gen_ws) as lake:
        page, sections = report_step.render(lake)
    section = page.split('id="section-manifest"', 1)[1].split("</section>", 1)[0]
    assert "store_out_of_range" in section and section.count("badge ok") == 9
    assert {s.id: s.state for s in sections}["manifest"] == "ok"
    with lake_of(seed_ws) as lake:
        page, _ = report_step.render(lake)
    section = page.split('id="section-manifest"', 1)[1].split("</section>", 1)[0]
    assert "Not applicable" in section and MANIFEST_NAME in section


def test_trace_reaches_the_customer_features(gen_ws: Path, tmp_path: Path) -> None:
    ws = copy_ws(gen_ws, tmp_path / "ws")
    cli("run", "-w", str(ws), "--steps", "ml")  # too little history for a model: features only
    with lake_of(ws) as lake:
        assert lake.exists("gold/customer_features")
        version = lake.version("gold/customer_features")
    code, out, _ = cli("trace", "-w", str(ws), "--file", "sales_0003.csv", "--line", "10", "--json")
    assert code == 0
    t = json.loads(out)
    [features] = [g for g in t["gold"] if g["table"] == "gold/customer_features"]
    assert features["key"]["customer_id"] == t["silver"]["customer_id"]
    assert features["key"]["as_of"] >= t["silver"]["sale_date"]
    assert features["version"] == version


def test_plan_detects_rules_that_changed_since_the_last_silver_run(
    seed_ws: Path, tmp_path: Path
) -> None:
    ws = copy_ws(seed_ws, tmp_path / "ws")
    with lake_of(ws) as lake:
        quality = lake.read_arrow("_meta/quality").to_pylist()
        last = max(r["run_id"] for r in quality if r["table"] == "silver/sales")
        then = [dict(r, run_id="29991231T000000Z-zzzzzz") for r in quality if r["run_id"] == last]
        for r in then:  # as an older release recorded them
            if r["rule"] == "customer_id_present":
                r["severity"] = "warn"
        silver = next(r for r in then if r["table"] == "silver/sales")
        then.append(dict(silver, rule="retired_rule"))
        then = [r for r in then if r["rule"] != "price_present"]
        schema = lake.contract("_meta/quality").schema
        lake.write_arrow(
            "_meta/quality",
            pa.Table.from_pylist(then, schema=schema),
            commit=CommitInfo(run_id="test", step="test"),
        )
    replay = json.loads(cli("plan", "-w", str(ws), "--json")[1])["replay"]
    assert replay["rules_changed"] and replay["computed"]
    assert sorted(replay["changes"]) == [
        "rule customer_id_present: severity warn -> drop",
        "rule price_present is new",
        "rule retired_rule was removed",
    ]
    assert (
        replay["moves"] == [] and replay["revenue"] == []
    )  # the rules themselves did not move rows
    assert (
        json.loads(cli("plan", "-w", str(ws), "--json", "--no-replay")[1])["replay"]["computed"]
        is False
    )
