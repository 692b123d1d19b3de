"""Gold: exact values against an independent pandas computation, incremental rebuilds, checks.

The pandas reference (`reference_silver`, `reference_daily`, `reference_product_store`) is written
from DESIGN.md's contract text, not from the pipeline's code: parse the CSVs, standardise per the
contract, dedup (latest wins), then aggregate in integer cents.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from medallion_lakehouse.config import Settings
from medallion_lakehouse.contracts import get_contract
from medallion_lakehouse.errors import QualityGateError
from medallion_lakehouse.gold import step as gold_step
from medallion_lakehouse.gold.tables.daily_sales import DAILY_SALES
from medallion_lakehouse.gold.tables.product_store_daily import PRODUCT_STORE_DAILY
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.pipeline.context import StepContext
from medallion_lakehouse.storage.delta import CommitInfo

CENT = Decimal("0.01")
CATALOGUE = {p.lower(): p for p in ("Laptop", "Smartphone", "Tablet", "Monitor", "Headphones")}
STATUSES = {"completed", "pending", "cancelled", "returned"}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


# -- independent reference -----------------------------------------------------------------
def _money(text: str) -> Decimal | None:
    text = text.strip()
    if not text:
        return None
    try:
        return Decimal(text).quantize(CENT, ROUND_HALF_UP)
    except ArithmeticError:
        return None


def _store(text: str) -> str | None:
    # NW-7, NW-07, NW007, 007-NW, 7, nw 007 -> NW-007; no digits or outside 1..999 -> invalid.
    m = re.fullmatch(r"(?:NW[\s_-]*)?(\d+)(?:[\s_-]*NW)?", text.strip().upper())
    if not m or not 1 <= int(m.group(1)) <= 999:
        return None
    return f"NW-{int(m.group(1)):03d}"


def _quantity(text: str) -> int | None:
    m = re.fullmatch(r"\+?(\d+)(?:\.0*)?", text.strip())
    return int(m.group(1)) if m and int(m.group(1)) >= 1 else None


def reference_silver(files: list[Path]) -> pd.DataFrame:
    """Current silver rows from CSV files ingested in this order, per DESIGN.md section 4."""
    rows: list[dict[str, Any]] = []
    for order, path in enumerate(files):
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        for line, rec in enumerate(raw.to_dict("records"), start=1):
            sale_date = pd.to_datetime(rec["sale_date"].strip(), format="%Y-%m-%d", errors="coerce")
            store = _store(rec["store_id"])
            qty = _quantity(rec["quantity"])
            if pd.isna(sale_date) or store is None or qty is None:
                continue  # quarantined
            price, total = _money(rec["price"]), _money(rec["total"])
            if price is None and total is not None:
                price = (total / qty).quantize(CENT, ROUND_HALF_UP)
            if price is not None and (total is None or abs(total - price * qty) > CENT):
                total = price * qty
            status = " ".join(rec["status"].split()).lower()
            product = " ".join(rec["product"].split())
            product = CATALOGUE.get(product.lower(), product)
            customer = rec["customer_id"].strip()
            d = sale_date.date()
            # No id column in the seed: identity is the normalised content without status.
            ident = "|".join(map(str, (d, store, customer, product, qty, price, total)))
            rows.append(
                {
                    "sale_id": rec.get("sale_id") or hashlib.sha256(ident.encode()).hexdigest(),
                    "sale_date": d,
                    "store_id": store,
                    "customer_id": customer,
                    "product": product,
                    "quantity": qty,
                    "total": total,
                    "status": status if status in STATUSES else "unknown",
                    "_order": (order, line),
                }
            )
    frame = pd.DataFrame(rows).sort_values("_order", kind="stable")
    return frame.drop_duplicates("sale_id", keep="last").drop(columns="_order")


def _half_up(cents: int, n: int) -> Decimal:
    return (Decimal(cents) / n / 100).quantize(CENT, ROUND_HALF_UP)


def reference_daily(silver: pd.DataFrame) -> dict[date, dict[str, Any]]:
    out: dict[date, dict[str, Any]] = {}
    for day, g in silver.groupby("sale_date"):
        done = g[g.status == "completed"]
        amount = {s: sum(g.total[g.status == s], Decimal("0.00")) for s in STATUSES | {"unknown"}}
        revenue = amount["completed"]
        out[day] = {
            "orders": len(g),
            "completed_orders": len(done),
            "units": int(done.quantity.sum()),
            "revenue": revenue,
            "pending_amount": amount["pending"],
            "cancelled_amount": amount["cancelled"],
            "returned_amount": amount["returned"],
            "unknown_amount": amount["unknown"],
            "average_ticket": _half_up(int(revenue * 100), len(done)) if len(done) else None,
            "distinct_customers": done.customer_id.nunique(),
            "sale_month": f"{day:%Y-%m}",
        }
    return out


def reference_product_store(silver: pd.DataFrame) -> dict[tuple, dict[str, Any]]:
    done = silver[silver.status == "completed"]
    return {
        key: {
            "revenue": sum(g.total, Decimal("0.00")),
            "units": int(g.quantity.sum()),
            "orders": len(g),
            "sale_month": f"{key[0]:%Y-%m}",
        }
        for key, g in done.groupby(["sale_date", "product", "store_id"])
    }


# -- helpers ---------------------------------------------------------------------------------
def silver_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Silver rows with defaults for the columns gold does not read."""
    full = []
    for i, r in enumerate(rows):
        d = r["sale_date"]
        full.append(
            {
                "sale_id": r.get("sale_id", f"s{i}"),
                "sale_date": d,
                "sale_month": f"{d:%Y-%m}",
                "store_id": r.get("store_id", "NW-001"),
                "customer_id": r.get("customer_id", f"c{i}"),
                "product": r.get("product", "Laptop"),
                "quantity": r.get("quantity", 1),
                "unit_price": None,
                "total": Decimal(str(r["total"])),
                "status": r.get("status", "completed"),
                "is_late": False,
                "price_imputed": False,
                "total_recomputed": False,
                "_batch_id": r.get("_batch_id", "b1"),
                "_source_file": "f.csv",
                "_source_line": i + 1,
                "_ingested_at": r.get("_ingested_at", T0),
            }
        )
    return pa.Table.from_pylist(full, schema=get_contract("silver/sales").schema)


def put_silver(lake: Lake, frame: pd.DataFrame | list[dict[str, Any]], run: str) -> None:
    """Replace silver/sales wholesale (stands in for the silver step)."""
    rows = frame.to_dict("records") if isinstance(frame, pd.DataFrame) else frame
    lake.write_arrow(
        "silver/sales", silver_table(rows), commit=CommitInfo(run, "silver"), mode="overwrite"
    )


def run_gold(lake: Lake, run: str = "r", **kw: Any):  # type: ignore[no-untyped-def]
    return gold_step.run(lake, StepContext(run_id=run, **kw))


def gold_rows(lake: Lake, name: str, key: tuple[str, ...]) -> dict[Any, dict[str, Any]]:
    out = {}
    for row in lake.read_arrow(name).to_pylist():
        k = row[key[0]] if len(key) == 1 else tuple(row[c] for c in key)
        out[k] = {c: v for c, v in row.items() if c not in key}
    return out


def assert_matches_reference(lake: Lake, ref: pd.DataFrame) -> None:
    assert gold_rows(lake, DAILY_SALES.name, DAILY_SALES.key) == reference_daily(ref)
    assert gold_rows(
        lake, PRODUCT_STORE_DAILY.name, PRODUCT_STORE_DAILY.key
    ) == reference_product_store(ref)


# -- exact values on hand-made cases ---------------------------------------------------------
D1, D2 = date(2025, 3, 1), date(2025, 3, 2)


def test_daily_sales_hand_computed(lake: Lake) -> None:
    put_silver(
        lake,
        [
            {"sale_date": D1, "total": "10.00", "quantity": 1, "customer_id": "a"},
            {"sale_date": D1, "total": "20.01", "quantity": 3, "customer_id": "a"},
            {"sale_date": D1, "total": "5.50", "status": "pending", "customer_id": "b"},
            {"sale_date": D1, "total": "3.00", "status": "cancelled"},
            {"sale_date": D1, "total": "2.25", "status": "returned"},
            {"sale_date": D1, "total": "1.00", "status": "unknown"},
            {"sale_date": D2, "total": "7.00", "status": "cancelled"},
        ],
        "s1",
    )
    result = run_gold(lake)
    assert result.status == "ok"
    rows = gold_rows(lake, DAILY_SALES.name, ("sale_date",))
    # 30.01 / 2 = 15.005 -> 15.01 (half up); one distinct customer among completed sales.
    assert rows[D1] == {
        "orders": 6,
        "completed_orders": 2,
        "units": 4,
        "revenue": Decimal("30.01"),
        "pending_amount": Decimal("5.50"),
        "cancelled_amount": Decimal("3.00"),
        "returned_amount": Decimal("2.25"),
        "unknown_amount": Decimal("1.00"),
        "average_ticket": Decimal("15.01"),
        "distinct_customers": 1,
        "sale_month": "2025-03",
    }
    # A day without completed sales: zero revenue, no average ticket.
    assert rows[D2]["revenue"] == Decimal("0.00")
    assert rows[D2]["average_ticket"] is None
    assert rows[D2]["cancelled_amount"] == Decimal("7.00")
    assert rows[D2]["distinct_customers"] == 0  # no completed (day, customer) pair to join
    ps = gold_rows(lake, PRODUCT_STORE_DAILY.name, PRODUCT_STORE_DAILY.key)
    assert ps == {
        (D1, "Laptop", "NW-001"): {
            "revenue": Decimal("30.01"),
            "units": 4,
            "orders": 2,
            "sale_month": "2025-03",
        }
    }
    schema = lake.read_arrow(DAILY_SALES.name).schema
    assert schema.field("revenue").type == pa.decimal128(14, 2)


def test_quality_rows_written_per_rule(lake: Lake) -> None:
    put_silver(lake, [{"sale_date": D1, "total": "1.00"}], "s1")
    run_gold(lake, run="g1")
    quality = lake.read_arrow("_meta/quality").to_pylist()
    mine = {(q["table"], q["rule"]): q for q in quality if q["run_id"] == "g1"}
    for table in (DAILY_SALES.name, PRODUCT_STORE_DAILY.name):
        assert (table, "revenue_reconciles_with_silver") in mine
        assert (table, "non_negative") in mine
        assert all(q["rows_failed"] == 0 for q in mine.values())


def test_negative_amount_fails_the_gate_and_commits_nothing(lake: Lake) -> None:
    put_silver(lake, [{"sale_date": D1, "total": "-4.00"}], "s1")
    with pytest.raises(QualityGateError, match="non_negative"):
        run_gold(lake, run="bad")
    assert not lake.exists(DAILY_SALES.name)
    failed = [q for q in lake.read_arrow("_meta/quality").to_pylist() if q["rows_failed"]]
    assert {q["rule"] for q in failed} == {"non_negative"}


# -- seed data: gold equals the independent computation to the cent -----------------------------
@pytest.mark.slow
def test_seed_gold_equals_pandas_reference(lake: Lake, seed_dir: Path) -> None:
    raw, late = seed_dir / "raw_sales.csv", seed_dir / "late_sales.csv"
    first = reference_silver([raw])
    put_silver(lake, first.assign(_ingested_at=T0), "s1")
    run_gold(lake, run="g1")
    assert_matches_reference(lake, first)

    both = reference_silver([raw, late])
    late_rows = both.merge(first[["sale_id"]], how="left", indicator=True)
    late_rows = late_rows[late_rows._merge == "left_only"].drop(columns="_merge")
    assert len(late_rows) == 500  # the late file holds only new sales
    put_silver(
        lake,
        pd.concat(
            [first.assign(_ingested_at=T0), late_rows.assign(_ingested_at=T0 + timedelta(1))]
        ),
        "s2",
    )
    result = run_gold(lake, run="g2")
    late_months = sorted({f"{d:%Y-%m}" for d in late_rows.sale_date})
    assert result.metrics["rebuilt_months"] == {
        DAILY_SALES.name: late_months,
        PRODUCT_STORE_DAILY.name: late_months,
    }
    assert_matches_reference(lake, both)


# -- incremental behaviour --------------------------------------------------------------------
def _three_months() -> list[dict[str, Any]]:
    return [
        {"sale_id": f"id{m}{d}", "sale_date": date(2025, m, d), "total": f"{m}{d}.25"}
        for m in (1, 2, 3)
        for d in (1, 15)
    ]


def test_rerun_without_silver_change_commits_nothing(lake: Lake) -> None:
    put_silver(lake, _three_months(), "s1")
    run_gold(lake, run="g1")
    versions = {n: lake.version(n) for n in ("gold/daily_sales", "gold/product_store_daily",
                                              "_meta/gold_watermark", "_meta/quality")}  # fmt: skip
    again = run_gold(lake, run="g2")
    assert again.tables == {}
    assert "up to date" in (again.message or "")
    assert {n: lake.version(n) for n in versions} == versions


def test_only_changed_month_is_rebuilt_and_equals_full_refresh(lake: Lake) -> None:
    rows = _three_months()
    put_silver(lake, rows, "s1")
    run_gold(lake, run="g1")
    # A status update in February arrives later: only 2025-02 changes.
    rows[2] = {**rows[2], "status": "returned", "_ingested_at": T0 + timedelta(hours=1)}
    put_silver(lake, rows, "s2")
    result = run_gold(lake, run="g2")
    assert result.metrics["rebuilt_months"][DAILY_SALES.name] == ["2025-02"]
    incremental = gold_rows(lake, DAILY_SALES.name, ("sale_date",))
    assert incremental[date(2025, 2, 1)]["returned_amount"] == Decimal("21.25")
    history = lake.history(DAILY_SALES.name, limit=1)[0]
    assert history["run_id"] == "g2"

    full = run_gold(lake, run="g3", full_refresh=True)
    assert full.metrics["rebuilt_months"][DAILY_SALES.name] == ["2025-01", "2025-02", "2025-03"]
    assert gold_rows(lake, DAILY_SALES.name, ("sale_date",)) == incremental


def _replace_silver_months(
    lake: Lake, rows: list[dict[str, Any]], months: set[str], run: str
) -> None:
    """Replace only these sale_month partitions of silver/sales (as the silver step does)."""
    keep = [r for r in rows if f"{r['sale_date']:%Y-%m}" in months]
    contract = get_contract("silver/sales")
    lake.write_arrow(
        "silver/sales",
        silver_table(keep),
        commit=CommitInfo(run, "silver"),
        **contract.write_args(values=months),
    )


def _fingerprinted_months(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record the months each fingerprint aggregate of the gold step reads."""
    seen: list[list[str]] = []
    original = gold_step.month_fingerprints

    def spy(silver):  # type: ignore[no-untyped-def]
        months = lake.engine.to_arrow(silver.select("sale_month").distinct())
        seen.append(sorted(months.column(0).to_pylist()))
        return original(silver)

    monkeypatch.setattr(gold_step, "month_fingerprints", spy)
    return seen


def test_fingerprints_aggregate_only_the_months_whose_files_changed(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _three_months()
    put_silver(lake, rows, "s1")
    run_gold(lake, run="g1")
    rows[2] = {**rows[2], "status": "returned", "_ingested_at": T0 + timedelta(hours=1)}
    _replace_silver_months(lake, rows, {"2025-02"}, "s2")
    seen = _fingerprinted_months(lake, monkeypatch)

    result = run_gold(lake, run="g2")

    assert seen == [["2025-02"]]
    assert result.metrics["rebuilt_months"][DAILY_SALES.name] == ["2025-02"]
    silver = lake.read("silver/sales")
    everything = gold_step._fingerprint_rows(
        lake.engine.to_arrow(gold_step.month_fingerprints(silver))
    )
    stored = gold_step._watermark(lake)[DAILY_SALES.name]["months"]
    assert stored == everything  # the kept fingerprints are the ones a full aggregate gives
    assert gold_rows(lake, DAILY_SALES.name, ("sale_date",))[date(2025, 2, 1)][
        "returned_amount"
    ] == Decimal("21.25")


def test_fingerprints_of_a_recreated_silver_are_not_trusted(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Silver deleted and rebuilt: its versions start again, so the version gold consumed now
    names another snapshot. A month whose log row count disagrees with the stored fingerprint
    is aggregated again."""
    import shutil

    rows = _three_months()
    put_silver(lake, rows, "s1")
    run_gold(lake, run="g1")  # consumed silver v0
    shutil.rmtree(lake.uri("silver/sales"))
    more = [*rows, {"sale_id": "extra", "sale_date": date(2025, 1, 20), "total": "5.00"}]
    put_silver(lake, more, "s2")  # a new v0: January holds one more sale
    _replace_silver_months(lake, more, {"2025-03"}, "s3")  # v1: March rewritten
    seen = _fingerprinted_months(lake, monkeypatch)

    result = run_gold(lake, run="g2")

    assert seen == [["2025-01", "2025-03"]]  # March for its new files, January for its count
    # March was rewritten with the same rows: its fingerprint is unchanged, so only January.
    assert result.metrics["rebuilt_months"][DAILY_SALES.name] == ["2025-01"]
    assert gold_rows(lake, DAILY_SALES.name, ("sale_date",))[date(2025, 1, 20)]["orders"] == 1


def test_vanished_month_is_removed(lake: Lake) -> None:
    rows = _three_months()
    put_silver(lake, rows, "s1")
    run_gold(lake)
    put_silver(lake, [r for r in rows if r["sale_date"].month != 3], "s2")
    result = run_gold(lake, run="g2")
    assert result.metrics["rebuilt_months"][DAILY_SALES.name] == ["2025-03"]
    months = {r["sale_month"] for r in lake.read_arrow(DAILY_SALES.name).to_pylist()}
    assert months == {"2025-01", "2025-02"}


@pytest.mark.parametrize(
    ("date_from", "date_to", "expected"),
    [
        (date(2025, 2, 10), date(2025, 2, 20), ["2025-02"]),
        (date(2025, 1, 31), date(2025, 2, 1), ["2025-01", "2025-02"]),
        (date(2025, 3, 1), None, ["2025-03"]),
        (None, date(2025, 1, 5), ["2025-01"]),
        (date(2024, 1, 1), date(2024, 12, 31), []),
    ],
    ids=["inside-one-month", "spans-two", "open-end", "open-start", "no-data-in-range"],
)
def test_backfill_range_rebuilds_covering_months(
    lake: Lake, date_from: date | None, date_to: date | None, expected: list[str]
) -> None:
    put_silver(lake, _three_months(), "s1")
    run_gold(lake)
    result = run_gold(lake, run="g2", date_from=date_from, date_to=date_to)
    assert result.metrics["rebuilt_months"].get(DAILY_SALES.name, []) == expected


def test_missing_silver_skips(lake: Lake) -> None:
    result = run_gold(lake)
    assert result.status == "skipped"
    assert "silver" in (result.message or "")


def test_months_between() -> None:
    assert gold_step.months_between(date(2024, 11, 30), date(2025, 2, 1)) == [
        "2024-11",
        "2024-12",
        "2025-01",
        "2025-02",
    ]


# -- property: incremental == one-shot == reference --------------------------------------------
_row = st.fixed_dictionaries(
    {
        "sale_date": st.dates(date(2025, 1, 1), date(2025, 4, 30)),
        "total": st.decimals(min_value=0, max_value=5000, places=2),
        "status": st.sampled_from(["completed", "pending", "cancelled", "returned", "unknown"]),
        "product": st.sampled_from(["Laptop", "Tablet"]),
        "store_id": st.sampled_from(["NW-001", "NW-002"]),
        "customer_id": st.sampled_from(["a", "b", "c"]),
        "quantity": st.integers(1, 5),
    }
)


@pytest.mark.slow
@hyp_settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=st.lists(_row, min_size=1, max_size=25), second=st.lists(_row, max_size=10))
def test_incremental_equals_reference(settings: Settings, first: list, second: list) -> None:  # type: ignore[type-arg]
    import shutil

    shutil.rmtree(settings.lake_path, ignore_errors=True)
    rows = [{**r, "sale_id": f"a{i}"} for i, r in enumerate(first)]
    more = [
        {**r, "sale_id": f"b{i}", "_ingested_at": T0 + timedelta(1)} for i, r in enumerate(second)
    ]
    with Lake(settings) as lake:
        put_silver(lake, rows, "s1")
        run_gold(lake, run="g1")
        put_silver(lake, rows + more, "s2")
        run_gold(lake, run="g2")
        frame = pd.DataFrame(rows + more)
        frame["total"] = frame.total.map(lambda v: Decimal(v).quantize(CENT))
        assert_matches_reference(lake, frame)
