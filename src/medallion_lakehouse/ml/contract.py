"""Contracts of the churn tables: gold/customer_features, gold/churn_scores, _meta/model_metrics."""

from __future__ import annotations

import pyarrow as pa

from medallion_lakehouse.checks import between, not_null, row_check, unique_key
from medallion_lakehouse.contracts import Column, TableContract, register

TIMESTAMP = pa.timestamp("us", tz="UTC")
MONEY = pa.decimal128(18, 2)

CUSTOMER_FEATURES = TableContract(
    name="gold/customer_features",
    grain="one row per customer as of a cutoff date",
    key=("customer_id", "as_of"),
    description=(
        "Point-in-time features: built only from silver sales with sale_date <= as_of, for "
        "customers with at least one completed purchase by then. The pipeline keeps the newest "
        "cutoff (the newest sale date); training snapshots are rebuilt from silver on demand."
    ),
    write_mode="overwrite",
    write_note="one snapshot, the newest cutoff",
    upstream=("silver/sales",),
    written_by="ml",
    columns=(
        Column("customer_id", pa.string(), "Customer.", nullable=False, unique=True),
        Column("as_of", pa.date32(), "Cutoff date T: only sales on or before it are used."),
        Column("recency_days", pa.int64(), "Days from the last completed purchase to as_of."),
        Column("frequency", pa.int64(), "Completed orders up to as_of."),
        Column("monetary", MONEY, "Completed revenue up to as_of."),
        Column("avg_ticket", MONEY, "monetary / frequency."),
        Column("tenure_days", pa.int64(), "Days from the first completed purchase to as_of."),
        Column("distinct_products", pa.int64(), "Distinct products bought (completed)."),
        Column("return_rate", pa.float64(), "returned / (completed + returned) orders."),
        Column("cancel_rate", pa.float64(), "cancelled / all orders up to as_of."),
        Column("orders_30d", pa.int64(), "Completed orders in (as_of - 30, as_of]."),
        Column("orders_90d", pa.int64(), "Completed orders in (as_of - 90, as_of]."),
        Column("orders_prev_90d", pa.int64(), "Completed orders in (as_of - 180, as_of - 90]."),
        Column("spend_30d", MONEY, "Completed revenue in (as_of - 30, as_of]."),
        Column("spend_90d", MONEY, "Completed revenue in (as_of - 90, as_of]."),
        Column("spend_prev_90d", MONEY, "Completed revenue in (as_of - 180, as_of - 90]."),
        Column("order_trend", pa.int64(), "orders_90d - orders_prev_90d (falling < 0)."),
        Column("returns_90d", pa.int64(), "Returned orders in (as_of - 90, as_of]."),
        Column("cancels_90d", pa.int64(), "Cancelled orders in (as_of - 90, as_of]."),
        Column(
            "ticket_ratio_90d",
            pa.float64(),
            "Average completed ticket in the last 90 days / lifetime average; null if none.",
        ),
        Column(
            "mean_gap_days",
            pa.float64(),
            "Mean days between completed purchases; null with a single purchase.",
        ),
    ),
    checks=(
        unique_key(),
        not_null(),
        row_check(
            "frequency_and_recency",
            "frequency >= 1 and 0 <= recency_days <= tenure_days",
            lambda t: (t.frequency < 1) | (t.recency_days < 0) | (t.recency_days > t.tenure_days),
        ),
        row_check(
            "order_windows_nested",
            "orders_30d <= orders_90d <= frequency",
            lambda t: (t.orders_30d > t.orders_90d) | (t.orders_90d > t.frequency),
        ),
    ),
)

CHURN_SCORES = TableContract(
    name="gold/churn_scores",
    grain="one row per customer (the newest scoring cutoff)",
    key=("customer_id",),
    description=(
        "Probability that the customer makes no completed purchase in the horizon after as_of, "
        "from the model version named in each row."
    ),
    write_mode="overwrite",
    write_note="one commit per scoring run",
    upstream=("gold/customer_features",),
    written_by="ml",
    columns=(
        Column("customer_id", pa.string(), "Customer.", nullable=False, unique=True),
        Column("churn_probability", pa.float64(), "Model probability of churn in the horizon."),
        Column("is_at_risk", pa.bool_(), "churn_probability >= the model's chosen threshold."),
        Column("model_version", pa.string(), "Model folder name under data/models/."),
        Column("as_of", pa.date32(), "Feature cutoff the scores are for."),
        Column("horizon_days", pa.int64(), "Churn horizon the model was trained for."),
        Column("scored_at", TIMESTAMP, "When the scores were computed (UTC)."),
    ),
    checks=(unique_key(), not_null(), between("churn_probability", 0, 1)),
)

MODEL_METRICS = TableContract(
    name="_meta/model_metrics",
    grain="one row per model (random_forest, recency_baseline) per training run",
    key=("run_id", "model"),
    description=(
        "Out-of-time evaluation: trained on the snapshot at train_cutoff, evaluated on the "
        "snapshot at test_cutoff (>= train_cutoff + horizon). Curves live in the model folder."
    ),
    write_mode="append",
    columns=(
        Column("run_id", pa.string(), "Run that trained the model."),
        Column("model_version", pa.string(), "Model folder name under data/models/."),
        Column("model", pa.string(), "random_forest | recency_baseline."),
        Column("trained_at", TIMESTAMP, "When (UTC)."),
        Column("train_cutoff", pa.date32(), "T1: features up to it, label window after it."),
        Column("test_cutoff", pa.date32(), "T2: the out-of-time evaluation cutoff."),
        Column("horizon_days", pa.int64(), "Label horizon."),
        Column("n_train", pa.int64(), "Customers in the training snapshot."),
        Column("n_test", pa.int64(), "Customers in the test snapshot."),
        Column("test_churn_rate", pa.float64(), "Share of churners in the test snapshot."),
        Column("roc_auc", pa.float64(), "ROC AUC on the test snapshot."),
        Column("pr_auc", pa.float64(), "Average precision on the test snapshot."),
        Column("threshold", pa.float64(), "Decision threshold (chosen on training data)."),
        Column("precision", pa.float64(), "Churn-class precision at the threshold."),
        Column("recall", pa.float64(), "Churn-class recall at the threshold."),
        Column("f1", pa.float64(), "Churn-class F1 at the threshold."),
        Column("model_dir", pa.string(), "Folder holding the model, card and curves.json."),
        Column(
            "model_sha256",
            pa.string(),
            "sha256 of the saved model file: checked before the model is ever loaded.",
        ),
    ),
)

register(CUSTOMER_FEATURES, CHURN_SCORES, MODEL_METRICS)
