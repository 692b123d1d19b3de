"""Out-of-time evaluation: which cutoffs, whether the data can support a model, and the metrics.

Train at T1, test at T2 = T1 + horizon: the training labels end exactly where the test features
end, so nothing the model learnt from can come from the test period. A random row split of one
snapshot would not show how the model ages, and is not used anywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    classification_report,
    confusion_matrix,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from medallion_lakehouse.errors import MedallionError

CLASS_NAMES = ("active", "churned")
MAX_CURVE_POINTS = 400  # enough to draw a smooth curve, small enough for a report page


class InsufficientDataError(MedallionError):
    """The data cannot support an honest churn model (too little history, too few customers)."""

    exit_code = 4


@dataclass(frozen=True)
class Cutoffs:
    """The dates a training run uses; see `plan_cutoffs`."""

    first_sale: date  # oldest sale in silver
    as_of: date  # newest date the run may see (labels of the test snapshot end here)
    train_cutoff: date  # T1
    test_cutoff: date  # T2 = T1 + horizon
    horizon_days: int

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in asdict(self).items()}


def plan_cutoffs(
    first_sale: date, as_of: date, *, horizon_days: int, min_history_days: int
) -> Cutoffs:
    """T2 = as_of - horizon (its labels need the horizon after it), T1 = T2 - horizon.

    Raises InsufficientDataError when there are fewer than `min_history_days` of sales before T1.
    """
    test_cutoff = as_of - timedelta(days=horizon_days)
    train_cutoff = test_cutoff - timedelta(days=horizon_days)
    history = (train_cutoff - first_sale).days + 1
    if history < min_history_days:
        need = 2 * horizon_days + min_history_days
        have = (as_of - first_sale).days + 1
        raise InsufficientDataError(
            f"Not enough history for an out-of-time churn evaluation: it needs {need} days of "
            f"sales ({min_history_days} days before the training cutoff, then two "
            f"{horizon_days}-day label windows), the data covers {have} days "
            f"({first_sale} to {as_of}). Load more history, or use a shorter horizon "
            "(`medallion train --horizon N`; churn_horizon_days for `medallion run`)."
        )
    return Cutoffs(first_sale, as_of, train_cutoff, test_cutoff, horizon_days)


def snapshot_problem(
    labels: np.ndarray, *, name: str, cutoff: date, min_customers: int, min_per_class: int
) -> str | None:
    """Why a labelled snapshot cannot train or test a model, or None if it can."""
    n = len(labels)
    churned = int(np.sum(labels == 1))
    active = n - churned
    if n < min_customers:
        return (
            f"The {name} snapshot at {cutoff} has {n} active customers; at least {min_customers} "
            "are needed (customers with a completed purchase on or before the cutoff)."
        )
    if min(churned, active) < min_per_class:
        return (
            f"The {name} snapshot at {cutoff} has {churned} churned and {active} returning "
            f"customers; each class needs at least {min_per_class}. With one class (e.g. every "
            "customer bought once) there is nothing to learn."
        )
    return None


def choose_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold with the best churn-class F1 (call it on training data only)."""
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    # precision/recall have one more entry than thresholds (the final point has no threshold).
    p, r = precision[:-1], recall[:-1]
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    return float(thresholds[int(np.argmax(f1))])


def _thin(*arrays: np.ndarray) -> list[list[float]]:
    """At most MAX_CURVE_POINTS evenly spaced points of each array (same indices, ends kept)."""
    n = len(arrays[0])
    if n > MAX_CURVE_POINTS:
        index = np.unique(np.linspace(0, n - 1, MAX_CURVE_POINTS).round().astype(int))
        arrays = tuple(a[index] for a in arrays)
    return [[round(float(v), 6) for v in a] for a in arrays]


@dataclass
class ModelEvaluation:
    """How one model's scores did on the test snapshot."""

    model: str
    roc_auc: float
    pr_auc: float
    threshold: float
    precision: float
    recall: float
    f1: float
    confusion: list[list[int]]  # rows true (active, churned), columns predicted
    report: dict[str, Any]
    report_text: str
    roc: dict[str, list[float]] = field(default_factory=dict)  # fpr, tpr
    pr: dict[str, list[float]] = field(default_factory=dict)  # precision, recall

    def summary(self) -> dict[str, Any]:
        """The scalar metrics (no curves)."""
        keys = ("model", "roc_auc", "pr_auc", "threshold", "precision", "recall", "f1")
        return {k: getattr(self, k) for k in keys} | {"confusion": self.confusion}


def evaluate_scores(
    model: str, labels: np.ndarray, scores: np.ndarray, threshold: float
) -> ModelEvaluation:
    """ROC AUC, PR AUC, curves, and the classification report at `threshold`."""
    predicted = (scores >= threshold).astype(int)
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predicted, labels=[1], average=None, zero_division=0
    )
    fpr, tpr, _ = roc_curve(labels, scores)
    pr_precision, pr_recall, _ = precision_recall_curve(labels, scores)
    kwargs: dict[str, Any] = {"labels": [0, 1], "target_names": list(CLASS_NAMES)}
    return ModelEvaluation(
        model=model,
        roc_auc=float(roc_auc_score(labels, scores)),
        pr_auc=float(average_precision_score(labels, scores)),
        threshold=float(threshold),
        precision=float(precision[0]),
        recall=float(recall[0]),
        f1=float(f1[0]),
        confusion=confusion_matrix(labels, predicted, labels=[0, 1]).tolist(),
        report=classification_report(
            labels, predicted, output_dict=True, zero_division=0, **kwargs
        ),
        report_text=classification_report(labels, predicted, zero_division=0, **kwargs),
        roc=dict(zip(("fpr", "tpr"), _thin(fpr, tpr), strict=True)),
        pr=dict(zip(("precision", "recall"), _thin(pr_precision, pr_recall), strict=True)),
    )
