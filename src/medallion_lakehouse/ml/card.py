"""Model artifacts: a versioned folder per training run, a model card, curves, a `latest` pointer.

Layout under `settings.models_path`:
    churn-<run_id>/model.joblib   the fitted ChurnModel (joblib: loaded only after its sha256
                                  matches the one `_meta/model_metrics` recorded at training)
    churn-<run_id>/card.json      data window, cutoffs, features, metrics, versions, seed, counts
    churn-<run_id>/card.md        the same for people
    churn-<run_id>/curves.json    ROC (fpr/tpr) and PR (precision/recall) points, model + baseline
    latest                        the name of the newest evaluated folder
The pointer is replaced atomically, and only after the folder is complete *and* its evaluation is
in `_meta/model_metrics` (ml/step.py), so a crash at any point leaves the previous model in use.
A pointer or folder name that is not a model version of this layout is refused before anything
is read from it.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from dataclasses import asdict
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import joblib

from medallion_lakehouse.errors import MedallionError
from medallion_lakehouse.ml.evaluate import ModelEvaluation
from medallion_lakehouse.ml.model import BASELINE_FEATURES, ChurnModel, TrainingOutcome

LATEST = "latest"
MODEL_FILE = "model.joblib"
CARD_JSON = "card.json"
CARD_MD = "card.md"
CURVES_JSON = "curves.json"
VERSION_PATTERN = re.compile(r"churn-[0-9A-Za-z_-]{1,100}")
_LIBRARIES = ("medallion-lakehouse", "scikit-learn", "numpy", "pandas", "pyarrow", "ibis-framework")


class ModelNotFoundError(MedallionError):
    """No trained churn model in the models folder."""

    exit_code = 2


def model_version(run_id: str) -> str:
    return f"churn-{run_id}"


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            out[name] = package_version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def build_card(
    outcome: TrainingOutcome,
    *,
    version: str,
    run_id: str,
    trained_at: datetime,
    engine: str,
    silver_version: int | None,
) -> dict[str, Any]:
    """Everything needed to judge and reproduce the model, as JSON-friendly data."""
    cfg = outcome.config
    cut = outcome.cutoffs
    return {
        "model_version": version,
        "run_id": run_id,
        "trained_at": trained_at.isoformat(),
        "task": (
            f"P(no completed purchase in the {cut.horizon_days} days after the cutoff) "
            "for customers with at least one completed purchase on or before it"
        ),
        "data": {
            "source": "silver/sales",
            "silver_version": silver_version,
            "engine": engine,
            "first_sale": cut.first_sale.isoformat(),
            "as_of": cut.as_of.isoformat(),
        },
        "cutoffs": cut.to_dict(),
        "evaluation": (
            "out-of-time: fit on the snapshot at train_cutoff (labels from the horizon after it), "
            "evaluated on the snapshot at test_cutoff = train_cutoff + horizon"
        ),
        "deployed_model": (
            "the same recipe refit on the test_cutoff snapshot (newest labels); "
            f"threshold {outcome.final_model.threshold:.4f} chosen on its out-of-bag scores"
        ),
        "threshold_rule": (
            "the probability maximising churn-class F1 on the training snapshot's out-of-bag "
            "predictions (the test snapshot is never used to choose it)"
        ),
        "features": list(outcome.final_model.features),
        "baseline_features": list(BASELINE_FEATURES),
        "rows": {"train": outcome.n_train, "test": outcome.n_test},
        "class_balance": {
            "train_churn_rate": round(outcome.train_churn_rate, 4),
            "test_churn_rate": round(outcome.test_churn_rate, 4),
        },
        "metrics": outcome.metrics(),
        "random_forest": outcome.forest.summary() | {"report": outcome.forest.report},
        "recency_baseline": outcome.baseline.summary() | {"report": outcome.baseline.report},
        "feature_importances": outcome.importances,
        "config": asdict(cfg),
        "seed": cfg.seed,
        "libraries": library_versions(),
        "notes": outcome.notes,
    }


def _confusion_md(confusion: list[list[int]]) -> str:
    (tn, fp), (fn, tp) = confusion
    return (
        "| true \\ predicted | active | churned |\n|---|---:|---:|\n"
        f"| active | {tn} | {fp} |\n| churned | {fn} | {tp} |"
    )


def _metric_row(name: str, ev: ModelEvaluation) -> str:
    return (
        f"| {name} | {ev.roc_auc:.4f} | {ev.pr_auc:.4f} | {ev.precision:.3f} | {ev.recall:.3f} "
        f"| {ev.f1:.3f} | {ev.threshold:.3f} |"
    )


def render_markdown(card: dict[str, Any], outcome: TrainingOutcome) -> str:
    """The model card for people."""
    m = card["metrics"]
    cut = card["cutoffs"]
    importances = "\n".join(
        f"| {r['feature']} | {r['permutation_auc_drop']:.4f} | {r['impurity']:.4f} |"
        for r in card["feature_importances"]
    )
    libs = ", ".join(f"{k} {v}" for k, v in card["libraries"].items())
    notes = "".join(f"\n> **Note:** {n}\n" for n in card["notes"])
    return f"""# Churn model card — {card["model_version"]}
{notes}
**Task.** {card["task"]}.

**Data.** `silver/sales` version {card["data"]["silver_version"]} ({card["data"]["engine"]}),
sales from {cut["first_sale"]} to {cut["as_of"]}.

**Evaluation.** {card["evaluation"]}: train cutoff **{cut["train_cutoff"]}**
({card["rows"]["train"]} customers, churn rate {card["class_balance"]["train_churn_rate"]:.1%}),
test cutoff **{cut["test_cutoff"]}** ({card["rows"]["test"]} customers,
churn rate {card["class_balance"]["test_churn_rate"]:.1%}), horizon {cut["horizon_days"]} days.

| model | ROC AUC | PR AUC | precision | recall | F1 | threshold |
|---|---:|---:|---:|---:|---:|---:|
{_metric_row("RandomForest", outcome.forest)}
{_metric_row("recency baseline", outcome.baseline)}

Lift over the baseline: ROC AUC {m["lift"]:+.4f}, PR AUC {m["pr_auc_lift"]:+.4f}.

**Threshold.** {card["threshold_rule"]}.

**Confusion matrix (RandomForest, test snapshot).**

{_confusion_md(outcome.forest.confusion)}

**Classification report (RandomForest, test snapshot).**

```
{outcome.forest.report_text}```

**Feature importances** (permutation: ROC AUC lost on the test snapshot when the feature is
shuffled; impurity: from training, biased towards many-valued features).

| feature | permutation AUC drop | impurity |
|---|---:|---:|
{importances}

**Deployed model.** {card["deployed_model"]}.

**Reproduce.** seed {card["seed"]}; config `{json.dumps(card["config"])}`; {libs}.
"""


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def save_model(
    models_path: str | Path,
    outcome: TrainingOutcome,
    *,
    run_id: str,
    engine: str,
    silver_version: int | None,
    trained_at: datetime | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Write the versioned model folder (not yet in use: see `point_latest`). Returns
    (folder, card)."""
    trained_at = trained_at or datetime.now(UTC)
    version = model_version(run_id)
    root = Path(models_path)
    folder = root / version
    folder.mkdir(parents=True, exist_ok=True)
    model = outcome.final_model
    model.version = version
    joblib.dump(model, folder / MODEL_FILE)
    card = build_card(
        outcome,
        version=version,
        run_id=run_id,
        trained_at=trained_at,
        engine=engine,
        silver_version=silver_version,
    )
    curves = {
        "test_cutoff": outcome.cutoffs.test_cutoff.isoformat(),
        "random_forest": {"roc_auc": outcome.forest.roc_auc, "pr_auc": outcome.forest.pr_auc}
        | {"roc": outcome.forest.roc, "pr": outcome.forest.pr},
        "recency_baseline": {
            "roc_auc": outcome.baseline.roc_auc,
            "pr_auc": outcome.baseline.pr_auc,
        }
        | {"roc": outcome.baseline.roc, "pr": outcome.baseline.pr},
    }
    _write_text(folder / CURVES_JSON, json.dumps(curves))
    _write_text(folder / CARD_JSON, json.dumps(card, indent=2))
    _write_text(folder / CARD_MD, render_markdown(card, outcome))
    return folder, card


def point_latest(models_path: str | Path, version: str) -> None:
    """Make `version` the model `score` uses (an atomic replace of the pointer)."""
    _check_version(version, Path(models_path) / LATEST)
    _write_text(Path(models_path) / LATEST, version + "\n")


def _check_version(name: str, source: Path | str) -> None:
    if not VERSION_PATTERN.fullmatch(name):
        raise ModelNotFoundError(
            f"{source} names {name[:80]!r}, which is not a model version (churn-<run id>): "
            "refusing to read it. Retrain with `medallion train`."
        )


def latest_model_dir(models_path: str | Path) -> Path:
    """The folder `latest` points at; ModelNotFoundError if there is none or the pointer is not
    the name of a model folder directly under the models folder (no paths, no `..`)."""
    root = Path(models_path)
    pointer = root / LATEST
    if not pointer.is_file():
        raise ModelNotFoundError(
            f"No churn model in {root}: run `medallion train` (or `medallion run`) first."
        )
    name = pointer.read_text(encoding="utf-8", errors="replace").strip()
    _check_version(name, pointer)
    folder = root / name
    if folder.is_symlink() or not (folder / MODEL_FILE).is_file():
        raise ModelNotFoundError(
            f"{pointer} names {name}, which is not a model folder with a {MODEL_FILE}: retrain "
            "with `medallion train`."
        )
    return folder


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def load_model(folder: str | Path, *, sha256: str) -> ChurnModel:
    """Load a saved ChurnModel, after checking its bytes are the ones recorded at training.

    joblib runs code from the file while loading, so nothing is loaded whose sha256 differs
    from `sha256` (a planted or altered file).
    """
    path = Path(folder) / MODEL_FILE
    found = file_sha256(path)
    if found != sha256:
        raise ModelNotFoundError(
            f"{path} is not the model this lake trained (sha256 {found[:12]}..., recorded "
            f"{sha256[:12]}...): refusing to load it. Retrain with `medallion train`."
        )
    model = joblib.load(path)
    if not isinstance(model, ChurnModel):
        raise ModelNotFoundError(f"{folder} does not hold a churn model.")
    return model


def read_card(folder: str | Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((Path(folder) / CARD_JSON).read_text(encoding="utf-8"))
    return data
