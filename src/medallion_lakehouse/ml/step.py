"""The ml step and the `train`/`score` commands: lake IO around the pure churn code.

`run(lake, ctx)` writes gold/customer_features at the newest sale date, trains and evaluates
out of time, saves the model folder, appends `_meta/model_metrics`, and writes gold/churn_scores.
Data that cannot support a model gives a skipped step with the reason, never a fake metric.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from medallion_lakehouse import quality as quality
from medallion_lakehouse.faults import checkpoint
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.ml import card as cards
from medallion_lakehouse.ml.contract import CHURN_SCORES, CUSTOMER_FEATURES, MODEL_METRICS
from medallion_lakehouse.ml.evaluate import InsufficientDataError, ModelEvaluation, plan_cutoffs
from medallion_lakehouse.ml.features import customer_features, sale_date_range
from medallion_lakehouse.ml.labels import labelled_snapshot
from medallion_lakehouse.ml.model import (
    ChurnConfig,
    ChurnModel,
    TrainingOutcome,
    to_frame,
    train_and_evaluate,
)
from medallion_lakehouse.pipeline.context import StepContext, StepResult
from medallion_lakehouse.storage.delta import CommitInfo

if TYPE_CHECKING:
    import ibis.expr.types as ir

SILVER = "silver/sales"
STEP = "ml"


def sales_window(lake: Lake, silver: ir.Table) -> tuple[date, date]:
    """(oldest, newest) sale date in silver; InsufficientDataError if silver is empty."""
    row = lake.engine.to_arrow(sale_date_range(silver)).to_pylist()
    first, last = (row[0]["first_sale"], row[0]["last_sale"]) if row else (None, None)
    if first is None or last is None:
        raise InsufficientDataError(
            "silver/sales is empty: ingest and clean some sales first (`medallion run`)."
        )
    return first, last


@dataclass
class TrainResult:
    outcome: TrainingOutcome
    model_dir: Path
    version: str
    card: dict[str, Any]
    metrics_version: int | None

    def metrics(self) -> dict[str, Any]:
        return self.outcome.metrics() | {"model_version": self.version}


def _metrics_rows(
    outcome: TrainingOutcome,
    *,
    run_id: str,
    version: str,
    trained_at: datetime,
    model_dir: Path,
    sha256: str,
) -> pa.Table:
    cut = outcome.cutoffs

    def row(ev: ModelEvaluation) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "model_version": version,
            "model": ev.model,
            "trained_at": trained_at,
            "train_cutoff": cut.train_cutoff,
            "test_cutoff": cut.test_cutoff,
            "horizon_days": cut.horizon_days,
            "n_train": outcome.n_train,
            "n_test": outcome.n_test,
            "test_churn_rate": outcome.test_churn_rate,
            "roc_auc": ev.roc_auc,
            "pr_auc": ev.pr_auc,
            "threshold": ev.threshold,
            "precision": ev.precision,
            "recall": ev.recall,
            "f1": ev.f1,
            "model_dir": str(model_dir),
            "model_sha256": sha256,
        }

    return pa.Table.from_pylist(
        [row(outcome.forest), row(outcome.baseline)], schema=MODEL_METRICS.schema
    )


def train(
    lake: Lake,
    *,
    run_id: str,
    as_of: date | None = None,
    cfg: ChurnConfig | None = None,
    commit: CommitInfo | None = None,
) -> TrainResult:
    """Train and evaluate out of time on silver as it is now, save the model, log metrics.

    `as_of` is the newest date the run may use (default: the newest sale): the test cutoff is
    as_of - horizon, the training cutoff one horizon earlier.
    """
    cfg = cfg or ChurnConfig.from_settings(lake.settings)
    silver = lake.read(SILVER)
    first, last = sales_window(lake, silver)
    as_of = as_of or last
    if as_of > last:
        raise InsufficientDataError(
            f"--as-of {as_of} is after the newest sale ({last}): labels after it are unknown."
        )
    cutoffs = plan_cutoffs(
        first, as_of, horizon_days=cfg.horizon_days, min_history_days=cfg.min_history_days
    )
    engine = lake.engine
    train_frame = to_frame(
        engine.to_arrow(labelled_snapshot(silver, cutoffs.train_cutoff, cfg.horizon_days))
    )
    test_frame = to_frame(
        engine.to_arrow(labelled_snapshot(silver, cutoffs.test_cutoff, cfg.horizon_days))
    )
    outcome = train_and_evaluate(train_frame, test_frame, cutoffs, cfg)
    trained_at = datetime.now(UTC)
    folder, card = cards.save_model(
        lake.settings.models_path,
        outcome,
        run_id=run_id,
        engine=engine.name,
        silver_version=lake.version(SILVER),
        trained_at=trained_at,
    )
    checkpoint("ml.after_model_saved")
    version = folder.name
    written = lake.write_arrow(
        MODEL_METRICS.name,
        _metrics_rows(
            outcome,
            run_id=run_id,
            version=version,
            trained_at=trained_at,
            model_dir=folder,
            sha256=cards.file_sha256(folder / cards.MODEL_FILE),
        ),
        commit=commit or CommitInfo(run_id=run_id, step="train"),
        mode="append",
    )
    checkpoint("ml.after_metrics")
    # Only an evaluated model (its metrics and sha256 committed) is ever put in use.
    cards.point_latest(lake.settings.models_path, version)
    return TrainResult(outcome, folder, version, card, written.version)


def trusted_model(lake: Lake, model_dir: str | Path | None = None) -> tuple[Path, ChurnModel]:
    """The model `score` may use: `model_dir`, or the one `latest` names, loaded only if this
    lake's `_meta/model_metrics` recorded its version and its file's sha256 matches."""
    folder = Path(model_dir) if model_dir else cards.latest_model_dir(lake.settings.models_path)
    recorded = lake.read_arrow(
        MODEL_METRICS.name,
        columns=["model_version", "model_sha256"],
        where={"model_version": [folder.name]},
    )
    sums = {s for s in recorded.column("model_sha256").to_pylist() if s}
    if len(sums) != 1:
        raise cards.ModelNotFoundError(
            f"{folder} is not a model this lake trained and evaluated (no sha256 for "
            f"{folder.name[:80]!r} in {MODEL_METRICS.name}): refusing to load it. Retrain with "
            "`medallion train`."
        )
    return folder, cards.load_model(folder, sha256=sums.pop())


@dataclass
class ScoreResult:
    version: str
    as_of: date | None
    customers: int
    at_risk: int
    table_version: int | None
    extra: dict[str, Any] = field(default_factory=dict)


def score(
    lake: Lake,
    *,
    run_id: str,
    model_dir: str | Path | None = None,
    as_of: date | None = None,
    features: ir.Table | None = None,
    commit: CommitInfo | None = None,
) -> ScoreResult:
    """Score every active customer at `as_of` (default: newest sale) into gold/churn_scores.

    `features` may pass a ready gold/customer_features snapshot (the ml step just wrote it);
    otherwise they are rebuilt from silver. One overwrite commit.
    """
    folder, model = trusted_model(lake, model_dir)
    if features is None:
        silver = lake.read(SILVER)
        as_of = as_of or sales_window(lake, silver)[1]
        features = customer_features(silver, as_of)
    frame = to_frame(lake.engine.to_arrow(features))
    probability = model.predict_proba(frame) if len(frame) else np.empty(0)
    snapshot_date = frame["as_of"].iloc[0] if len(frame) else as_of
    scores = pa.table(
        {
            "customer_id": pa.array(frame["customer_id"], pa.string()),
            "churn_probability": pa.array(probability, pa.float64()),
            "is_at_risk": pa.array(probability >= model.threshold, pa.bool_()),
            "model_version": pa.array([model.version or folder.name] * len(frame), pa.string()),
            "as_of": pa.array([snapshot_date] * len(frame), pa.date32()),
            "horizon_days": pa.array([model.horizon_days] * len(frame), pa.int64()),
            "scored_at": pa.array(
                [datetime.now(UTC)] * len(frame), CHURN_SCORES.schema.field("scored_at").type
            ),
        },
        schema=CHURN_SCORES.schema,
    )
    commit = commit or CommitInfo(run_id=run_id, step="score")
    _checked(lake, CHURN_SCORES.name, scores, commit)
    written = lake.write_arrow(
        CHURN_SCORES.name, scores, commit=commit, **CHURN_SCORES.write_args()
    )
    return ScoreResult(
        version=model.version or folder.name,
        as_of=snapshot_date,
        customers=len(frame),
        at_risk=int(np.sum(probability >= model.threshold)),
        table_version=written.version,
    )


def _checked(lake: Lake, table: str, data: pa.Table, commit: CommitInfo) -> None:
    """Run the table's contract checks on the rows about to be written; record them; a broken
    `fail` check stops before the commit."""
    outcomes = quality.evaluate(lake.engine, lake.contract(table), lake.engine.from_arrow(data))
    quality.write(lake, outcomes, commit)
    quality.raise_if_broken(outcomes, table)


def _built_from(lake: Lake, table: str, silver_version: int | None) -> bool:
    """Whether `table`'s newest commit was built by the ml step from this silver version."""
    last = lake.history(table, limit=1)
    return bool(last) and last[0].get("silver_version") == str(silver_version)


@dataclass(frozen=True)
class MlPlan:
    """What the ml step will write, decided from the lake before anything is written.

    The step's outputs depend on silver alone, so its incremental state is the silver version
    each output's newest commit records (`silver_version` in the commit metadata): unchanged
    silver means nothing to write, as for bronze, silver and gold.
    """

    silver_version: int | None
    features_current: bool  # gold/customer_features was built from this silver version
    scores_current: bool  # gold/churn_scores too

    @property
    def up_to_date(self) -> bool:
        return self.features_current and self.scores_current


def plan(lake: Lake, *, full_refresh: bool = False) -> MlPlan:
    """Read-only: which of the step's outputs are already built from silver as it is now."""
    silver_version = lake.version(SILVER)
    features = not full_refresh and _built_from(lake, CUSTOMER_FEATURES.name, silver_version)
    scores = features and _built_from(lake, CHURN_SCORES.name, silver_version)
    return MlPlan(silver_version, features_current=features, scores_current=scores)


def run(lake: Lake, ctx: StepContext) -> StepResult:
    """Customer features -> out-of-time training -> scores; skipped when data cannot support it.

    Commits in this order, each a checkpoint a crash may stop at: customer features, the model
    folder, its `_meta/model_metrics` row (with the model file's sha256), the `latest` pointer,
    the scores. A rerun after a crash redoes what the plan finds not built from this silver.
    """
    started = time.perf_counter()
    result = StepResult(step=STEP)
    cfg = ChurnConfig.from_settings(lake.settings)
    planned = plan(lake, full_refresh=ctx.full_refresh)
    commit = ctx.commit(STEP, silver_version=str(planned.silver_version))
    if planned.up_to_date:
        result.message = (
            f"silver/sales unchanged (version {planned.silver_version}): "
            "features and scores are current"
        )
        result.metrics["up_to_date"] = True
        result.seconds = time.perf_counter() - started
        return result
    silver = lake.read(SILVER)
    try:
        _, last = sales_window(lake, silver)
    except InsufficientDataError as exc:
        result.status, result.message = "skipped", str(exc)
        result.seconds = time.perf_counter() - started
        return result
    result.rows_in = lake.engine.count(silver)

    ctx.report(0, 3, "customer features")
    if planned.features_current:
        n_customers = lake.engine.count(lake.read(CUSTOMER_FEATURES.name))
    else:
        # One row per customer: small enough to check on the driver before it is committed.
        features = lake.engine.to_arrow(customer_features(silver, last))
        _checked(lake, CUSTOMER_FEATURES.name, features, commit)
        written = lake.write_arrow(
            CUSTOMER_FEATURES.name, features, commit=commit, **CUSTOMER_FEATURES.write_args()
        )
        result.tables[CUSTOMER_FEATURES.name] = written.version
        n_customers = written.rows
    result.rows_out = n_customers
    result.metrics["n_customers"] = n_customers
    result.metrics["features_as_of"] = last.isoformat()
    checkpoint("ml.after_features")

    ctx.report(1, 3, "train churn model (out-of-time)")
    try:
        trained = train(lake, run_id=ctx.run_id, cfg=cfg, commit=commit)
    except InsufficientDataError as exc:
        result.status, result.message = "skipped", f"churn model skipped: {exc}"
        result.seconds = time.perf_counter() - started
        return result
    result.tables[MODEL_METRICS.name] = trained.metrics_version
    result.metrics.update(trained.metrics())
    result.metrics["model_dir"] = str(trained.model_dir)

    ctx.report(2, 3, "score customers")
    checkpoint("ml.before_scores")
    scored = score(
        lake,
        run_id=ctx.run_id,
        model_dir=trained.model_dir,
        features=lake.read(CUSTOMER_FEATURES.name),
        commit=commit,
    )
    result.tables[CHURN_SCORES.name] = scored.table_version
    # rows_out stays one row per customer: features and scores are two views of the same rows.
    result.metrics["scored_customers"] = scored.customers
    result.metrics["at_risk"] = scored.at_risk
    ctx.report(3, 3, "done")
    result.message = (
        f"ROC AUC {trained.outcome.forest.roc_auc:.3f} vs recency baseline "
        f"{trained.outcome.baseline.roc_auc:.3f} (out-of-time, test cutoff "
        f"{trained.outcome.cutoffs.test_cutoff})"
    )
    result.seconds = time.perf_counter() - started
    return result
