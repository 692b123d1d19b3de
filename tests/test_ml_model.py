"""Out-of-time evaluation, data sufficiency rules and the models on a world with known signal."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from medallion_lakehouse.engines.duckdb_engine import DuckDBEngine
from medallion_lakehouse.ml.evaluate import (
    InsufficientDataError,
    choose_threshold,
    evaluate_scores,
    plan_cutoffs,
    snapshot_problem,
)
from medallion_lakehouse.ml.labels import labelled_snapshot
from medallion_lakehouse.ml.model import ChurnConfig, TrainingOutcome, to_frame, train_and_evaluate
from medallion_lakehouse.ml.simulate import SimulationOptions, simulate_silver

D = date.fromisoformat


# -- cutoffs ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("first", "as_of", "horizon", "min_history", "train", "test"),
    [
        ("2025-01-01", "2025-12-31", 90, 60, "2025-07-04", "2025-10-02"),
        ("2025-01-01", "2025-12-31", 30, 60, "2025-11-01", "2025-12-01"),
        # exactly min_history days (inclusive) before the training cutoff
        ("2025-01-01", "2025-03-31", 30, 30, "2025-01-30", "2025-03-01"),
    ],
    ids=["one-year-90d", "one-year-30d", "just-enough"],
)
def test_cutoffs_leave_one_horizon_between_train_and_test(
    first: str, as_of: str, horizon: int, min_history: int, train: str, test: str
) -> None:
    cut = plan_cutoffs(D(first), D(as_of), horizon_days=horizon, min_history_days=min_history)
    assert (cut.train_cutoff, cut.test_cutoff) == (D(train), D(test))
    # The test snapshot's labels end on as_of; the training labels end at the test cutoff.
    assert (cut.as_of - cut.test_cutoff).days == horizon
    assert (cut.test_cutoff - cut.train_cutoff).days == horizon


@pytest.mark.parametrize(
    ("first", "as_of", "horizon", "min_history"),
    [
        ("2025-01-01", "2025-03-30", 30, 30),  # one day short
        ("2025-06-01", "2025-12-31", 90, 60),  # seven months cannot hold 2 x 90 + 60 days
    ],
    ids=["one-day-short", "half-year"],
)
def test_too_little_history_is_refused(
    first: str, as_of: str, horizon: int, min_history: int
) -> None:
    with pytest.raises(InsufficientDataError, match="Not enough history"):
        plan_cutoffs(D(first), D(as_of), horizon_days=horizon, min_history_days=min_history)


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        ([0] * 150 + [1] * 49, "199 active customers; at least 200"),
        ([1] * 500, "0 returning"),
        ([0] * 481 + [1] * 19, "19 churned"),
        ([0] * 480 + [1] * 20, None),
    ],
    ids=["too-few-customers", "one-class", "minority-too-small", "enough"],
)
def test_snapshot_problems(labels: list[int], problem: str | None) -> None:
    got = snapshot_problem(
        np.array(labels), name="test", cutoff=D("2025-10-02"), min_customers=200, min_per_class=20
    )
    if problem is None:
        assert got is None
    else:
        assert got is not None and problem in got


# -- threshold and metrics -------------------------------------------------------------------
def test_threshold_maximises_f1() -> None:
    # By hand: t=.8 -> F1 2/3; t=.4 -> 1/2; t=.35 -> P 2/3, R 1 -> 0.8; t=.1 -> 2/3.
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    assert choose_threshold(labels, scores) == pytest.approx(0.35)


def test_evaluation_of_known_scores() -> None:
    labels = np.array([0, 0, 1, 1])
    ev = evaluate_scores("m", labels, np.array([0.1, 0.4, 0.35, 0.8]), threshold=0.35)
    # Pairs (pos, neg) ranked right: (.35>.1), (.8>.1), (.8>.4); wrong: (.35<.4) -> 3/4.
    assert ev.roc_auc == pytest.approx(0.75)
    assert ev.confusion == [[1, 1], [0, 2]]
    assert (ev.precision, ev.recall) == (pytest.approx(2 / 3), 1.0)
    assert ev.report["churned"]["support"] == 2
    assert ev.roc["fpr"][0] == 0.0 and ev.roc["tpr"][-1] == 1.0


# -- the models on a world whose signal is known ------------------------------------------------
FAST = ChurnConfig(n_estimators=100, n_jobs=2)


def snapshots(
    sim: SimulationOptions, cfg: ChurnConfig
) -> tuple[pd.DataFrame, pd.DataFrame, object]:
    engine = DuckDBEngine()
    silver = engine.from_arrow(simulate_silver(sim))
    last = sim.start.fromordinal(sim.start.toordinal() + sim.days - 1)
    cut = plan_cutoffs(
        sim.start, last, horizon_days=cfg.horizon_days, min_history_days=cfg.min_history_days
    )
    train = to_frame(engine.to_arrow(labelled_snapshot(silver, cut.train_cutoff, 90)))
    test = to_frame(engine.to_arrow(labelled_snapshot(silver, cut.test_cutoff, 90)))
    engine.close()
    return train, test, cut


@pytest.fixture(scope="module")
def outcome() -> TrainingOutcome:
    train, test, cut = snapshots(SimulationOptions(seed=3), FAST)
    return train_and_evaluate(train, test, cut, FAST)  # type: ignore[arg-type]


def test_forest_beats_recency_out_of_time_without_a_perfect_score(
    outcome: TrainingOutcome,
) -> None:
    # The simulation's decliners trade down and return more before they stop: information
    # recency does not have, so the forest must beat it; label noise keeps it below 0.99.
    assert outcome.forest.roc_auc > outcome.baseline.roc_auc + 0.02
    assert outcome.forest.pr_auc > outcome.baseline.pr_auc
    assert 0.7 < outcome.forest.roc_auc < 0.99
    assert outcome.lift == pytest.approx(outcome.forest.roc_auc - outcome.baseline.roc_auc)


def test_importances_find_the_planted_signal(outcome: TrainingOutcome) -> None:
    top = [r["feature"] for r in outcome.importances[:3]]
    assert "ticket_ratio_90d" in top  # the decline halves the ticket
    assert {r["feature"] for r in outcome.importances} >= {"recency_days", "return_rate"}


def test_snapshots_are_different_customers_at_different_times(outcome: TrainingOutcome) -> None:
    assert outcome.cutoffs.test_cutoff > outcome.cutoffs.train_cutoff
    assert outcome.n_train != outcome.n_test
    assert outcome.final_model.train_cutoff == outcome.cutoffs.test_cutoff
    assert outcome.forest.confusion[0][0] + outcome.forest.confusion[0][1] == round(
        outcome.n_test * (1 - outcome.test_churn_rate)
    )


def test_threshold_never_looks_at_the_test_labels() -> None:
    train, test, cut = snapshots(SimulationOptions(seed=5, customers=600), FAST)
    cfg = replace(FAST, min_customers=100)
    flipped = test.assign(churned=1 - test["churned"])
    a = train_and_evaluate(train, test, cut, cfg)  # type: ignore[arg-type]
    b = train_and_evaluate(train, flipped, cut, cfg)  # type: ignore[arg-type]
    assert a.forest.threshold == b.forest.threshold
    assert a.forest.roc_auc == pytest.approx(1 - b.forest.roc_auc)


def test_the_originals_setup_scores_a_perfect_auc_for_the_wrong_reason() -> None:
    """Label = recency > 90 on one snapshot, recency a feature, random row split: AUC 1.0."""
    train, _, _ = snapshots(SimulationOptions(seed=3), FAST)
    label = (train["recency_days"] > 90).astype(int)
    x = train[["recency_days", "frequency", "monetary"]].to_numpy(float)
    x_tr, x_te, y_tr, y_te = train_test_split(x, label, test_size=0.3, random_state=0)
    forest = RandomForestClassifier(50, random_state=0).fit(x_tr, y_tr)
    assert roc_auc_score(y_te, forest.predict_proba(x_te)[:, 1]) == 1.0
