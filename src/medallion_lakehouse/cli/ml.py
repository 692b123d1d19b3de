"""`medallion train` and `medallion score`: the churn model outside a full pipeline run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from medallion_lakehouse.cli.app import (
    EngineOpt,
    JsonOpt,
    SparkConfOpt,
    SparkMasterOpt,
    WaitOpt,
    WorkspaceOpt,
    app,
    emit_json,
    handle_errors,
    say,
    settings_from,
    show_table,
    write_step,
)
from medallion_lakehouse.cli.args import parse_day
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.pipeline.context import StepContext, StepResult

AsOfOpt = Annotated[
    str | None,
    typer.Option("--as-of", help="Newest date to use, YYYY-MM-DD (default: the newest sale)."),
]


def _metrics_table(metrics: dict[str, Any]) -> Table:
    table = Table(title="churn model (out-of-time test snapshot)")
    for col in ("model", "ROC AUC", "PR AUC", "precision", "recall", "F1"):
        table.add_column(col, justify="left" if col == "model" else "right")
    table.add_row(
        "RandomForest",
        f"{metrics['roc_auc']:.4f}",
        f"{metrics['pr_auc']:.4f}",
        f"{metrics['precision']:.3f}",
        f"{metrics['recall']:.3f}",
        f"{metrics['f1']:.3f}",
    )
    table.add_row(
        "recency baseline",
        f"{metrics['baseline_roc_auc']:.4f}",
        f"{metrics['baseline_pr_auc']:.4f}",
    )
    return table


@app.command("train")
def train_command(
    workspace: WorkspaceOpt = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
    spark_conf: SparkConfOpt = None,
    as_of: AsOfOpt = None,
    horizon: Annotated[
        int | None,
        typer.Option("--horizon", min=1, help="Churn horizon in days (default: settings, 90)."),
    ] = None,
    min_customers: Annotated[
        int | None, typer.Option("--min-customers", min=1, help="Per snapshot (default 200).")
    ] = None,
    wait: WaitOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Train the churn model out of time (fit at T1, test at T2 = T1 + horizon) and save it.

    Writes data/models/churn-<run_id>/ (model, card.md, card.json, curves.json), points
    data/models/latest at it and appends _meta/model_metrics. Exit code 4 when the data cannot
    support a model (too little history, too few customers, one class).

    Exit codes: 0 ok; 1 failed; 2 bad option or not a workspace; 4 too little data for an
    honest model; 75 another writer holds the lake.
    """
    with handle_errors():
        # scikit-learn is imported by these commands only, not at every CLI start-up.
        from medallion_lakehouse.ml.contract import MODEL_METRICS
        from medallion_lakehouse.ml.model import ChurnConfig
        from medallion_lakehouse.ml.step import TrainResult, train

        settings = settings_from(workspace, engine, spark_master, spark_conf)
        cfg = ChurnConfig.from_settings(settings, horizon_days=horizon, min_customers=min_customers)
        day = parse_day(as_of, "--as-of")
        trained: list[TrainResult] = []

        def train_step(lake: Lake, ctx: StepContext) -> StepResult:
            trained.append(train(lake, run_id=ctx.run_id, as_of=day, cfg=cfg))
            return StepResult(
                step="train",
                tables={MODEL_METRICS.name: trained[0].metrics_version},
                metrics=trained[0].metrics(),
            )

        write_step(settings, "train", train_step, command="medallion train", wait=wait)
        result = trained[0]
        metrics = result.metrics()
        if json_out:
            emit_json(
                {
                    "model_version": result.version,
                    "model_dir": str(result.model_dir),
                    "metrics": metrics,
                    "feature_importances": result.outcome.importances,
                    "confusion": result.outcome.forest.confusion,
                }
            )
            return
        show_table(_metrics_table(metrics))
        say(
            f"Train cutoff {metrics['train_cutoff']} ({metrics['n_train']:,} customers), test "
            f"cutoff {metrics['test_cutoff']} ({metrics['n_test']:,} customers), horizon "
            f"{metrics['horizon_days']} days. Lift over baseline: ROC AUC {metrics['lift']:+.4f}."
        )
        say(f"Saved {result.model_dir} (model card: {result.model_dir / 'card.md'}).")


@app.command("score")
def score_command(
    workspace: WorkspaceOpt = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
    spark_conf: SparkConfOpt = None,
    as_of: AsOfOpt = None,
    model: Annotated[
        Path | None,
        typer.Option("--model", help="Model folder (default: the one data/models/latest names)."),
    ] = None,
    wait: WaitOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Score every active customer at the newest sale date into gold/churn_scores (overwrite).

    Exit codes: 0 ok; 1 failed (no trained model, say); 2 bad option or not a workspace;
    75 another writer holds the lake.
    """
    with handle_errors():
        from medallion_lakehouse.ml.contract import CHURN_SCORES
        from medallion_lakehouse.ml.step import ScoreResult, score

        settings = settings_from(workspace, engine, spark_master, spark_conf)
        day = parse_day(as_of, "--as-of")
        scored: list[ScoreResult] = []

        def score_step(lake: Lake, ctx: StepContext) -> StepResult:
            scored.append(score(lake, run_id=ctx.run_id, model_dir=model, as_of=day))
            return StepResult(
                step="score",
                rows_out=scored[0].customers,
                tables={CHURN_SCORES.name: scored[0].table_version},
                metrics={"model_version": scored[0].version, "at_risk": scored[0].at_risk},
            )

        write_step(settings, "score", score_step, command="medallion score", wait=wait)
        result = scored[0]
        summary = {
            "model_version": result.version,
            "as_of": result.as_of,
            "customers": result.customers,
            "at_risk": result.at_risk,
            "table_version": result.table_version,
        }
        if json_out:
            emit_json(summary)
            return
        say(
            f"Scored {result.customers:,} customers as of {result.as_of} with {result.version}: "
            f"{result.at_risk:,} at risk. gold/churn_scores is at version {result.table_version}."
        )
