"""The ml step, `medallion train`/`score`, and the model on generated data end to end."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

from medallion_lakehouse.cli.main import app
from medallion_lakehouse.config import Settings, load_settings
from medallion_lakehouse.contracts import get_contract
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.ml import card as cards
from medallion_lakehouse.ml.contract import CHURN_SCORES, CUSTOMER_FEATURES, MODEL_METRICS
from medallion_lakehouse.ml.simulate import SimulationOptions, simulate_silver
from medallion_lakehouse.ml.step import plan, run
from medallion_lakehouse.pipeline.context import StepContext, StepResult
from medallion_lakehouse.storage.delta import CommitInfo

runner = CliRunner()


def write_silver(lake: Lake, sales: pa.Table) -> None:
    """Write silver-shaped sales to silver/sales, filling contract columns the test leaves out."""
    contract = get_contract("silver/sales")
    n = sales.num_rows
    derived = {"sale_month": pc.strftime(sales["sale_date"], "%Y-%m")}

    def filler(field: pa.Field) -> pa.Array:
        if field.nullable:
            return pa.nulls(n, field.type)
        if pa.types.is_boolean(field.type):
            return pa.array([False] * n)
        if pa.types.is_string(field.type):
            return pa.array(["NW-001" if field.name == "store_id" else "test"] * n)
        return pa.array([1] * n).cast(field.type)

    columns = [
        sales[f.name] if f.name in sales.column_names else derived.get(f.name, filler(f))
        for f in contract.schema
    ]
    table = pa.Table.from_arrays(columns, schema=contract.schema.with_metadata(None))
    lake.write_arrow("silver/sales", table, commit=CommitInfo("test", "silver"), mode="overwrite")


def workspace(tmp_path: Path, sales: pa.Table | None) -> Settings:
    settings = load_settings(tmp_path)
    if sales is not None:
        with Lake(settings) as lake:
            write_silver(lake, sales)
    return settings


def run_ml(settings: Settings, run_id: str = "r1") -> StepResult:
    with Lake(settings) as lake:
        return run(lake, StepContext(run_id=run_id))


# -- a full run on data that supports a model --------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, StepResult]:
    settings = workspace(tmp_path_factory.mktemp("ml"), simulate_silver(SimulationOptions(seed=1)))
    return settings, run_ml(settings)


def test_step_reports_out_of_time_metrics(trained: tuple[Settings, StepResult]) -> None:
    _, result = trained
    assert result.status == "ok", result.message
    m = result.metrics
    for key in ("roc_auc", "pr_auc", "baseline_roc_auc", "lift", "n_customers", "model_version"):
        assert key in m
    assert m["roc_auc"] > m["baseline_roc_auc"]
    assert m["roc_auc"] < 0.99
    assert m["lift"] == pytest.approx(m["roc_auc"] - m["baseline_roc_auc"], abs=1e-3)
    assert date.fromisoformat(m["test_cutoff"]) > date.fromisoformat(m["train_cutoff"])
    assert set(result.tables) == {CUSTOMER_FEATURES.name, MODEL_METRICS.name, CHURN_SCORES.name}


def test_step_writes_features_scores_and_metrics(trained: tuple[Settings, StepResult]) -> None:
    settings, result = trained
    with Lake(settings) as lake:
        features = lake.read_arrow(CUSTOMER_FEATURES.name)
        scores = lake.read_arrow(CHURN_SCORES.name)
        metrics = lake.read_arrow(MODEL_METRICS.name)
        silver_last = pc.max(lake.read_arrow("silver/sales")["sale_date"]).as_py()
        history = lake.history(CHURN_SCORES.name)
    assert features.num_rows == result.metrics["n_customers"]
    assert set(features["as_of"].to_pylist()) == {silver_last}
    assert sorted(scores["customer_id"].to_pylist()) == sorted(features["customer_id"].to_pylist())
    probability = scores["churn_probability"]
    assert 0.0 <= pc.min(probability).as_py() <= pc.max(probability).as_py() <= 1.0
    assert set(scores["model_version"].to_pylist()) == {result.metrics["model_version"]}
    assert sorted(metrics["model"].to_pylist()) == ["random_forest", "recency_baseline"]
    forest = metrics.filter(pc.equal(metrics["model"], "random_forest")).to_pylist()[0]
    assert forest["roc_auc"] == pytest.approx(result.metrics["roc_auc"], abs=1e-4)
    assert history[0]["run_id"] == "r1" and history[0]["step"] == "ml"


def test_model_folder_has_card_curves_and_latest(trained: tuple[Settings, StepResult]) -> None:
    settings, result = trained
    folder = cards.latest_model_dir(settings.models_path)
    assert folder.name == result.metrics["model_version"]
    card = cards.read_card(folder)
    assert card["metrics"]["roc_auc"] == result.metrics["roc_auc"]
    for key in ("cutoffs", "features", "libraries", "seed", "rows", "class_balance", "data"):
        assert card[key], key
    assert card["libraries"]["scikit-learn"] == "1.9.1"
    markdown = (folder / cards.CARD_MD).read_text()
    assert "Confusion matrix" in markdown and "recency baseline" in markdown
    curves = json.loads((folder / cards.CURVES_JSON).read_text())
    for model in ("random_forest", "recency_baseline"):
        roc, pr = curves[model]["roc"], curves[model]["pr"]
        assert len(roc["fpr"]) == len(roc["tpr"]) > 2
        assert len(pr["precision"]) == len(pr["recall"]) > 2
        assert roc["fpr"] == sorted(roc["fpr"])


def test_cli_score_rewrites_scores_with_the_latest_model(
    trained: tuple[Settings, StepResult],
) -> None:
    settings, result = trained
    out = runner.invoke(app, ["score", "-w", str(settings.workspace), "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["model_version"] == result.metrics["model_version"]
    assert summary["customers"] == result.metrics["n_customers"]
    with Lake(settings) as lake:
        assert lake.history(CHURN_SCORES.name)[0]["step"] == "score"


# -- data that cannot support a model ---------------------------------------------------------
def seed_silver(seed_dir: Path) -> pa.Table:
    """The seed file, typed just enough for the features (every customer buys once)."""
    from pyarrow import csv

    raw = csv.read_csv(
        seed_dir / "raw_sales.csv",
        convert_options=csv.ConvertOptions(column_types={"total": pa.float64()}),
    )
    status = pc.utf8_lower(pc.utf8_trim_whitespace(pc.fill_null(raw["status"], "unknown")))
    return pa.table(
        {
            "sale_id": pa.array([f"seed-{i}" for i in range(raw.num_rows)]),
            "sale_date": raw["sale_date"].cast(pa.date32()),
            "customer_id": raw["customer_id"],
            "product": raw["product"],
            "quantity": raw["quantity"].cast(pa.int64()),
            "total": pc.round(raw["total"], 2).cast(pa.decimal128(12, 2)),
            "status": pc.if_else(pc.equal(status, ""), "unknown", status),
        }
    )


def test_seed_data_skips_with_a_reason_and_still_writes_features(
    tmp_path: Path, seed_dir: Path
) -> None:
    settings = workspace(tmp_path, seed_silver(seed_dir))
    result = run_ml(settings)
    assert result.status == "skipped"
    assert "0 returning" in (result.message or "")  # every seed customer bought exactly once
    assert "roc_auc" not in result.metrics
    assert list(result.tables) == [CUSTOMER_FEATURES.name]
    assert not Path(settings.models_path, cards.LATEST).exists()


@pytest.mark.parametrize(
    ("sales", "reason"),
    [
        (None, "silver/sales is empty"),
        (simulate_silver(SimulationOptions(days=200, customers=300)), "Not enough history"),
        (simulate_silver(SimulationOptions(customers=120)), "at least 200 are needed"),
    ],
    ids=["empty", "short-history", "few-customers"],
)
def test_insufficient_data_skips(tmp_path: Path, sales: pa.Table | None, reason: str) -> None:
    result = run_ml(workspace(tmp_path, sales))
    assert result.status == "skipped"
    assert reason in (result.message or "")


def test_cli_train_exits_4_with_the_reason(tmp_path: Path) -> None:
    settings = workspace(tmp_path, simulate_silver(SimulationOptions(days=200, customers=300)))
    out = runner.invoke(app, ["train", "-w", str(settings.workspace)])
    assert out.exit_code == 4
    assert "Not enough history" in out.output


def test_cli_score_without_a_model_says_what_to_do(tmp_path: Path) -> None:
    settings = workspace(tmp_path, simulate_silver(SimulationOptions(customers=100, days=60)))
    out = runner.invoke(app, ["score", "-w", str(settings.workspace)])
    assert out.exit_code == 2
    assert "medallion train" in out.output


def test_cli_train_json(tmp_path: Path) -> None:
    settings = workspace(tmp_path, simulate_silver(SimulationOptions(customers=300, seed=9)))
    out = runner.invoke(
        app,
        ["train", "-w", str(settings.workspace), "--horizon", "60", "--as-of", "2025-12-01"]
        + ["--min-customers", "100", "--json"],
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["metrics"]["horizon_days"] == 60
    assert data["metrics"]["test_cutoff"] == "2025-10-02"  # 2025-12-01 - 60 days
    assert data["metrics"]["train_cutoff"] == "2025-08-03"
    assert Path(data["model_dir"], cards.CARD_JSON).is_file()


# -- reruns ------------------------------------------------------------------------------------
def _ml_versions(lake: Lake) -> dict[str, int | None]:
    return {
        t: lake.version(t) for t in (CUSTOMER_FEATURES.name, CHURN_SCORES.name, MODEL_METRICS.name)
    }


def test_rerun_on_unchanged_silver_writes_nothing(tmp_path: Path) -> None:
    settings = workspace(tmp_path, simulate_silver(SimulationOptions(seed=3)))
    first = run_ml(settings, "r1")
    assert first.status == "ok" and set(first.tables) >= {CUSTOMER_FEATURES.name, CHURN_SCORES.name}
    with Lake(settings) as lake:
        before = _ml_versions(lake)
        # The plan reads what is built from which silver version, and writes nothing.
        assert plan(lake).up_to_date
        assert not plan(lake, full_refresh=True).features_current
        assert _ml_versions(lake) == before

    again = run_ml(settings, "r2")
    assert again.status == "ok" and again.tables == {}
    assert "unchanged" in (again.message or "")
    with Lake(settings) as lake:
        assert _ml_versions(lake) == before

    # --full-refresh retrains and rescores even so.
    with Lake(settings) as lake:
        forced = run(lake, StepContext(run_id="r3", full_refresh=True))
        assert set(forced.tables) >= {CUSTOMER_FEATURES.name, CHURN_SCORES.name}
        after_forced = _ml_versions(lake)
    assert all((after_forced[t] or 0) > (before[t] or 0) for t in before)

    # A new silver version makes the step work again.
    with Lake(settings) as lake:
        write_silver(lake, simulate_silver(SimulationOptions(seed=4)))
        stale = plan(lake)
        assert not stale.features_current and not stale.scores_current
    changed = run_ml(settings, "r4")
    assert set(changed.tables) >= {CUSTOMER_FEATURES.name, CHURN_SCORES.name}


def test_rerun_on_seed_keeps_features_and_retries_nothing(tmp_path: Path, seed_dir: Path) -> None:
    settings = workspace(tmp_path, seed_silver(seed_dir))
    run_ml(settings, "r1")
    with Lake(settings) as lake:
        before = lake.version(CUSTOMER_FEATURES.name)
    again = run_ml(settings, "r2")
    assert again.status == "skipped"  # still no model to be had, and said so
    assert again.tables == {}
    with Lake(settings) as lake:
        assert lake.version(CUSTOMER_FEATURES.name) == before


def test_training_frame_order_does_not_depend_on_file_layout() -> None:
    from medallion_lakehouse.ml.model import to_frame

    table = pa.table({"customer_id": ["c3", "c1", "c2"], "x": pa.array([3, 1, 2])})
    reversed_table = table.take(pa.array([2, 1, 0]))
    assert to_frame(table).equals(to_frame(reversed_table))
    assert list(to_frame(table)["customer_id"]) == ["c1", "c2", "c3"]
