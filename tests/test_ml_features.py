"""gold/customer_features and the churn label: hand-checked values, no peeking past the cutoff."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medallion_lakehouse.engines.duckdb_engine import DuckDBEngine
from medallion_lakehouse.ml.contract import CUSTOMER_FEATURES
from medallion_lakehouse.ml.features import customer_features
from medallion_lakehouse.ml.labels import labelled_snapshot

T = date(2025, 6, 30)
STATUSES = ("completed", "pending", "cancelled", "returned", "unknown")
SALES_SCHEMA = pa.schema(
    [
        ("sale_id", pa.string()),
        ("sale_date", pa.date32()),
        ("customer_id", pa.string()),
        ("product", pa.string()),
        ("total", pa.decimal128(12, 2)),
        ("status", pa.string()),
    ]
)


@pytest.fixture(scope="module")
def engine() -> DuckDBEngine:
    return DuckDBEngine()


def sales(*rows: tuple[str, int, str, str, str]) -> pa.Table:
    """Rows of (customer, days before T (negative = after T), product, total, status)."""
    return pa.Table.from_pylist(
        [
            {
                "sale_id": f"s{i}",
                "sale_date": T - timedelta(days=days),
                "customer_id": customer,
                "product": product,
                "total": Decimal(total),
                "status": status,
            }
            for i, (customer, days, product, total, status) in enumerate(rows)
        ],
        schema=SALES_SCHEMA,
    )


def features_of(engine: DuckDBEngine, table: pa.Table, as_of: date = T) -> dict[str, dict]:
    out = engine.to_arrow(customer_features(engine.from_arrow(table), as_of)).to_pylist()
    return {row["customer_id"]: row for row in out}


# -- hand-computed values ------------------------------------------------------------------
ALICE = (
    ("alice", 0, "Laptop", "100.00", "completed"),  # on the cutoff itself: in every window
    ("alice", 29, "Tablet", "50.00", "completed"),  # last day inside 30d
    ("alice", 30, "Tablet", "20.00", "completed"),  # first day outside 30d, inside 90d
    ("alice", 120, "Laptop", "30.00", "completed"),  # previous 90 days
    ("alice", 150, "Monitor", "40.00", "returned"),
    ("alice", 10, "Laptop", "999.00", "cancelled"),
    ("alice", 5, "Laptop", "7.00", "pending"),
    ("alice", -1, "Laptop", "500.00", "completed"),  # after the cutoff: invisible
)


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        ("recency_days", 0),
        ("frequency", 4),
        ("monetary", Decimal("200.00")),
        ("avg_ticket", Decimal("50.00")),
        ("tenure_days", 120),  # first *completed* purchase
        ("distinct_products", 2),  # Laptop, Tablet (completed); Monitor was returned
        ("return_rate", 1 / 5),  # 1 returned of 4 completed + 1 returned
        ("cancel_rate", 1 / 7),  # 1 cancelled of 7 orders up to T
        ("orders_30d", 2),
        ("orders_90d", 3),
        ("orders_prev_90d", 1),
        ("spend_30d", Decimal("150.00")),
        ("spend_90d", Decimal("170.00")),
        ("spend_prev_90d", Decimal("30.00")),
        ("order_trend", 2),
        ("returns_90d", 0),
        ("cancels_90d", 1),
        ("ticket_ratio_90d", (170 / 3) / 50),
        ("mean_gap_days", 120 / 3),
        ("as_of", T),
    ],
    ids=lambda v: str(v),
)
def test_feature_values(engine: DuckDBEngine, column: str, expected: object) -> None:
    got = features_of(engine, sales(*ALICE))["alice"][column]
    if isinstance(expected, float):
        assert got == pytest.approx(expected)
    else:
        assert got == expected


def test_only_customers_with_a_completed_purchase_by_the_cutoff(engine: DuckDBEngine) -> None:
    table = sales(
        ("bob", 3, "Laptop", "10.00", "pending"),  # never completed
        ("carol", -5, "Laptop", "10.00", "completed"),  # first purchase after T
        ("dave", 40, "Laptop", "10.00", "completed"),
    )
    got = features_of(engine, table)
    assert set(got) == {"dave"}
    assert got["dave"]["mean_gap_days"] is None  # one purchase: no gap
    assert got["dave"]["ticket_ratio_90d"] == pytest.approx(1.0)


def test_schema_matches_the_contract(engine: DuckDBEngine) -> None:
    expr = customer_features(engine.from_arrow(sales(*ALICE)), T)
    result = engine.to_arrow(expr)
    assert result.column_names == CUSTOMER_FEATURES.column_names
    for field in CUSTOMER_FEATURES.schema:
        assert result.schema.field(field.name).type == field.type, field.name


def test_label_is_decided_by_the_horizon_after_the_cutoff(engine: DuckDBEngine) -> None:
    table = sales(
        ("back", 10, "Laptop", "10.00", "completed"),
        ("back", -90, "Laptop", "10.00", "completed"),  # last day of the horizon: returned
        ("late", 10, "Laptop", "10.00", "completed"),
        ("late", -91, "Laptop", "10.00", "completed"),  # one day too late: churned
        ("pend", 10, "Laptop", "10.00", "completed"),
        ("pend", -5, "Laptop", "10.00", "pending"),  # not a completed purchase: churned
        ("gone", 200, "Laptop", "10.00", "completed"),
    )
    rows = engine.to_arrow(labelled_snapshot(engine.from_arrow(table), T, 90)).to_pylist()
    assert {r["customer_id"]: r["churned"] for r in rows} == {
        "back": 0,
        "late": 1,
        "pend": 1,
        "gone": 1,
    }


# -- leakage: nothing after the cutoff may change a feature -------------------------------
FeatureFn = Callable[[ir.Table, date], ir.Table]

sale_rows = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d"]),
        st.integers(min_value=-200, max_value=200),  # days before T; negative = after T
        st.sampled_from(["Laptop", "Tablet", "Monitor"]),
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal("5000"), places=2).map(str),
        st.sampled_from(STATUSES),
    ),
    max_size=40,
)


def both_results(
    engine: DuckDBEngine,
    fn: FeatureFn,
    a: list[tuple[str, int, str, str, str]],
    b: list[tuple[str, int, str, str, str]],
) -> tuple[list[dict], list[dict]]:
    """`fn` at T on data sets `a` and `b`, in one query (customers prefixed `A:`/`B:`; every
    output row is per customer), which halves the cost of each Hypothesis example."""
    both = sales(*[(f"A:{r[0]}", *r[1:]) for r in a], *[(f"B:{r[0]}", *r[1:]) for r in b])
    rows = engine.to_arrow(fn(engine.from_arrow(both), T)).to_pylist()

    def side(prefix: str) -> list[dict]:
        picked = [
            r | {"customer_id": r["customer_id"][2:]} for r in rows if r["customer_id"][0] == prefix
        ]
        return sorted(picked, key=lambda r: r["customer_id"])

    return side("A"), side("B")


def peeks_past_cutoff(
    engine: DuckDBEngine,
    fn: FeatureFn,
    past: list[tuple[str, int, str, str, str]],
    future: list[tuple[str, int, str, str, str]],
    other_future: list[tuple[str, int, str, str, str]],
) -> bool:
    """True if two data sets that agree up to T give different features at T."""
    past = [r for r in past if r[1] >= 0]
    a, b = both_results(
        engine,
        fn,
        [*past, *[r for r in future if r[1] < 0]],
        [*past, *[r for r in other_future if r[1] < 0]],
    )
    return a != b


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(past=sale_rows, future=sale_rows, other_future=sale_rows)
def test_changing_sales_after_the_cutoff_never_changes_features(
    engine: DuckDBEngine, past: list, future: list, other_future: list
) -> None:
    assert not peeks_past_cutoff(engine, customer_features, past, future, other_future)


def _leaky_features(silver: ir.Table, as_of: date) -> ir.Table:
    """A plausible bug: recency measured against the newest sale in the whole table."""
    features = customer_features(silver, as_of)
    last = silver.filter(silver.status == "completed").group_by("customer_id")
    last = last.aggregate(last_sale=silver.sale_date.max())
    joined = features.join(last, "customer_id")
    return joined.mutate(recency_days=ibis.date(as_of).delta(joined.last_sale, unit="day")).drop(
        "last_sale"
    )


def test_the_leakage_check_catches_a_feature_that_peeks(engine: DuckDBEngine) -> None:
    past = [("a", 10, "Laptop", "10.00", "completed")]
    future = [("a", -30, "Laptop", "10.00", "completed")]
    assert peeks_past_cutoff(engine, _leaky_features, past, future, [])
    assert not peeks_past_cutoff(engine, customer_features, past, future, [])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=sale_rows, later=sale_rows)
def test_a_labelled_snapshot_ignores_everything_after_its_horizon(
    engine: DuckDBEngine, rows: list, later: list
) -> None:
    """Training at T1 uses sales up to T1 + horizon only, so the test period stays unseen."""
    horizon = 60
    kept = [r for r in rows if r[1] >= -horizon]
    beyond = [r for r in later if r[1] < -horizon]
    a, b = both_results(
        engine, lambda silver, t: labelled_snapshot(silver, t, horizon), kept, [*kept, *beyond]
    )
    assert a == b


@pytest.mark.spark
@pytest.mark.slow
def test_features_and_labels_are_identical_on_spark(engine: DuckDBEngine) -> None:
    """The same Ibis expressions give the same snapshot on Spark as on DuckDB."""
    from medallion_lakehouse.engines.spark_engine import SparkEngine
    from medallion_lakehouse.ml.simulate import SimulationOptions, simulate_silver

    data = simulate_silver(SimulationOptions(customers=150, seed=2))
    cutoff = date(2025, 9, 1)

    def rows(eng: DuckDBEngine | SparkEngine) -> list[dict]:
        out = eng.to_arrow(labelled_snapshot(eng.from_arrow(data), cutoff, 90)).to_pylist()
        return sorted(out, key=lambda r: r["customer_id"])

    spark = SparkEngine(master="local[2]")
    try:
        on_spark, on_duckdb = rows(spark), rows(engine)
    finally:
        spark.close()
    assert len(on_duckdb) > 100
    assert on_spark == on_duckdb
