"""One quality system: contracts carry executable checks; a gold table is one module.

The measure of issue 17: adding a gold table touches one module (plus its test), and a new check
is one declaration. These tests add a gold table the way a developer would, as a module in the
`gold/tables` package, and watch the step, the checks, the docs and the lineage pick it up.
"""

from __future__ import annotations

import importlib
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from medallion_lakehouse import contracts
from medallion_lakehouse import quality as quality
from medallion_lakehouse.errors import QualityGateError
from medallion_lakehouse.gold import step as gold_step
from medallion_lakehouse.gold import tables as gold_tables_pkg
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.ml.contract import CHURN_SCORES
from medallion_lakehouse.report import data as report_data
from medallion_lakehouse.silver import reference
from medallion_lakehouse.silver.contract import SILVER_BATCHES, SILVER_QUARANTINE, SILVER_SALES
from tests.test_docs import GEN
from tests.test_gold import put_silver, run_gold

D1, D2 = date(2025, 3, 1), date(2025, 3, 2)

STORE_DAILY = '''
"""gold/store_daily: completed sales per day and store (a table added in one module)."""

import pyarrow as pa

from medallion_lakehouse.contracts import Column, TableContract
from medallion_lakehouse.gold.checks import SILVER, revenue_reconciles
from medallion_lakehouse.gold.contract import MONEY, SALE_DATE, SALE_MONTH
from medallion_lakehouse.gold.model import GoldTable
from medallion_lakehouse.gold.money import money_sum
from medallion_lakehouse.checks import not_null, row_check, unique_key

CONTRACT = TableContract(
    name="gold/store_daily",
    grain="one row per (sale_date, store_id) with a completed sale",
    key=("sale_date", "store_id"),
    partition_by=("sale_month",),
    write_mode="replace_partitions",
    upstream=(SILVER,),
    columns=(
        SALE_DATE,
        Column("store_id", pa.string(), "Store.", nullable=False),
        Column("revenue", MONEY, "Completed revenue.", nullable=False),
        SALE_MONTH,
    ),
    checks=(
        unique_key(),
        not_null(),
        revenue_reconciles(),
        row_check("revenue_below_limit", "revenue < LIMIT", lambda t: t.revenue >= LIMIT),
    ),
)


def build(silver):
    done = silver.filter(silver.status == "completed")
    return done.group_by(["sale_date", "store_id", "sale_month"]).aggregate(
        revenue=money_sum(done.total)
    ).select("sale_date", "store_id", "revenue", "sale_month")


TABLE = GoldTable(CONTRACT, build)
'''


@pytest.fixture
def store_daily(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Put a new module in the gold/tables package (on a temporary path) and rediscover."""

    def add(limit: int) -> Any:
        folder = tmp_path / "extra_tables"
        folder.mkdir(exist_ok=True)
        (folder / "store_daily.py").write_text(
            STORE_DAILY.replace("LIMIT", str(limit)), encoding="utf-8"
        )
        monkeypatch.setattr(gold_tables_pkg, "__path__", [*gold_tables_pkg.__path__, str(folder)])
        sys.modules.pop(f"{gold_tables_pkg.__name__}.store_daily", None)
        found = gold_tables_pkg.gold_tables()
        monkeypatch.setattr(gold_step, "GOLD_TABLES", found)
        table = next(t for t in found if t.contract.name == "gold/store_daily")
        monkeypatch.setitem(contracts._REGISTRY, table.contract.name, table.contract)
        return table

    yield add
    sys.modules.pop(f"{gold_tables_pkg.__name__}.store_daily", None)
    importlib.invalidate_caches()


def _sales(lake: Lake) -> None:
    put_silver(
        lake,
        [
            {"sale_date": D1, "total": "10.00", "store_id": "NW-001"},
            {"sale_date": D1, "total": "5.00", "store_id": "NW-002"},
            {"sale_date": D2, "total": "7.50", "store_id": "NW-001"},
        ],
        "s1",
    )


def test_a_gold_table_added_as_one_module_is_built_checked_documented_and_drawn(
    lake: Lake, store_daily: Any
) -> None:
    table = store_daily(limit=1000)
    _sales(lake)
    result = run_gold(lake, run="g1")
    assert result.status == "ok"
    rows = {(r["sale_date"], r["store_id"]): r["revenue"] for r in lake.read_arrow(
        "gold/store_daily").to_pylist()}  # fmt: skip
    assert {k: str(v) for k, v in rows.items()} == {
        (D1, "NW-001"): "10.00",
        (D1, "NW-002"): "5.00",
        (D2, "NW-001"): "7.50",
    }
    checked = {
        q["rule"]: q["rows_failed"]
        for q in lake.read_arrow("_meta/quality").to_pylist()
        if q["table"] == "gold/store_daily"
    }
    assert checked == {
        "unique_key(sale_date, store_id)": 0,
        "not_null": 0,
        "revenue_reconciles_with_silver": 0,
        "revenue_below_limit": 0,
    }
    # The docs and the report's lineage read the same declaration.
    docs = GEN.contracts_markdown()
    assert "### `gold/store_daily`" in docs and "`revenue_below_limit` [fail]" in docs
    assert ("silver/sales", "gold/store_daily") in report_data.lineage_edges()
    gold_column = dict(report_data.lineage_columns())["gold"]
    assert table.contract.name in gold_column


def test_a_new_check_is_one_declaration_and_a_broken_one_commits_nothing(
    lake: Lake, store_daily: Any
) -> None:
    store_daily(limit=8)  # D1 / NW-001 has revenue 10.00: breaks the check
    _sales(lake)
    with pytest.raises(QualityGateError, match="revenue_below_limit"):
        run_gold(lake, run="g1")
    assert not lake.exists("gold/store_daily")
    failed = [
        q
        for q in lake.read_arrow("_meta/quality").to_pylist()
        if q["table"] == "gold/store_daily" and q["rows_failed"]
    ]
    assert [(q["rule"], q["rows_failed"]) for q in failed] == [("revenue_below_limit", 1)]


def test_a_declared_contract_check_runs_churn_probability_between_0_and_1(lake: Lake) -> None:
    # ml/contract.py said "0 <= churn_probability <= 1" in prose that never ran.
    scores = CHURN_SCORES.empty().to_pylist() + [
        {"customer_id": "c1", "churn_probability": 0.4},
        {"customer_id": "c2", "churn_probability": 1.5},
    ]
    data = pa.Table.from_pylist(scores, schema=CHURN_SCORES.schema)
    outcomes = quality.evaluate(lake.engine, CHURN_SCORES, lake.engine.from_arrow(data))
    by_rule = {o.rule: o.rows_failed for o in outcomes}
    assert by_rule == {"unique_key(customer_id)": 0, "not_null": 0, "between(churn_probability)": 1}
    with pytest.raises(QualityGateError, match=r"between\(churn_probability\) \(1 rows\)"):
        quality.raise_if_broken(outcomes, CHURN_SCORES.name)


@pytest.mark.parametrize(
    ("contract", "full", "values", "expected"),
    [
        (SILVER_SALES, False, ["2025-02", "2025-01"],
         {"mode": "append", "replace": {"sale_month": ["2025-01", "2025-02"]}}),
        (SILVER_SALES, True, ["2025-01"], {"mode": "overwrite"}),
        (SILVER_QUARANTINE, False, ["b2", "b1"],
         {"mode": "append", "replace": {"_batch_id": ["b1", "b2"]}}),
        (SILVER_BATCHES, False, None, {"mode": "append"}),
        (CHURN_SCORES, False, None, {"mode": "overwrite"}),
    ],
)  # fmt: skip
def test_the_contract_write_mode_decides_the_write(
    contract: contracts.TableContract, full: bool, values: list[str] | None, expected: Any
) -> None:
    assert contract.write_args(full=full, values=values) == expected


def test_every_table_declares_what_it_is_built_from() -> None:
    data_tables = [c for c in contracts.all_contracts() if c.layer != "_meta"]
    # Built from files outside the lake: landing files (bronze), the workspace's reference files.
    from_files = {c.name for c in data_tables if c.layer == "bronze"} | {
        reference.PRODUCTS.name,
        reference.STORES.name,
    }
    for contract in data_tables:
        assert contract.name in from_files or contract.upstream, contract.name
        for upstream in contract.upstream:
            assert contracts.get_contract(upstream).name == upstream
