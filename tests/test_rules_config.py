"""Issue 19: rules, reference data, source column aliases and freshness from medallion.toml.

Real Delta tables on both engines (the Spark cases are `slow`, as in tests/test_parity.py): a
feed with renamed columns and a catalogue of its own goes through bronze and silver; changing a
rule's severity and running a full refresh moves rows between silver and the quarantine, and
the audit still proves conservation.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from medallion_lakehouse.bronze.ingest import ingest
from medallion_lakehouse.cli.main import app
from medallion_lakehouse.config import load_settings
from medallion_lakehouse.engines.base import Engine
from medallion_lakehouse.errors import ConfigError
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.look.plan import rule_changes
from medallion_lakehouse.pipeline.context import StepContext
from medallion_lakehouse.pipeline.runner import run_pipeline
from medallion_lakehouse.silver import step as silver_step
from medallion_lakehouse.silver.audit import audit

NO_JAVA = shutil.which("java") is None and not os.environ.get("JAVA_HOME")
ENGINES = [
    "duckdb",
    pytest.param(
        "spark",
        marks=[
            pytest.mark.spark,
            pytest.mark.slow,
            pytest.mark.skipif(NO_JAVA, reason="no Java"),
        ],
    ),
]

# A shop whose feed calls the columns Date, Qty and Unit_Price, and sells what the seed's
# catalogue has never heard of.
FEED = """sale_id,Date,store_id,customer_id,product,Qty,Unit_Price,total,status
A1,2025-03-01,NW-1,C1,Widget,2,5.00,10.00,completed
A2,2025-03-02,NW-2,C2,gadget ,1,7.50,7.50,completed
A3,2025-03-02,NW-3,C3,Laptop,1,900.00,900.00,completed
A4,2025-03-03,XX,C4,Widget,3,5.00,15.00,pending
A5,2025-03-04,NW-9,C5,Widget,1,5.00,5.00,completed
"""
COLUMNS = """
[columns]
sale_date = ["date", "order_date"]
quantity = ["qty"]
price = ["unit_price"]
"""
REFERENCE = """
[reference]
products = "reference/products.csv"
stores = "reference/stores.csv"
"""


@pytest.fixture(scope="module")
def spark_engine() -> Iterator[Engine]:
    from medallion_lakehouse.engines import spark_engine as se

    # Same master and conf as tests/test_parity.py, so the session is shared.
    engine = se.SparkEngine(master="local[2]", conf={"spark.sql.shuffle.partitions": "4"})
    yield engine
    engine.close()


@pytest.fixture
def engine_for(request: pytest.FixtureRequest) -> Any:
    def make(name: str) -> Engine | None:
        return request.getfixturevalue("spark_engine") if name == "spark" else None

    return make


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("MEDALLION_") and key != "MEDALLION_SEED_DATA":
            monkeypatch.delenv(key)


def shop(ws: Path, toml: str, products: list[str] | None = None) -> Path:
    (ws / "data" / "landing").mkdir(parents=True, exist_ok=True)
    (ws / "reference").mkdir(exist_ok=True)
    (ws / "data" / "landing" / "shop.csv").write_text(FEED)
    rows = products if products is not None else ["Widget", "Gadget"]
    (ws / "reference" / "products.csv").write_text(
        "product,category\n" + "".join(f"{p},tools\n" for p in rows)
    )
    (ws / "reference" / "stores.csv").write_text("store_id\nNW-001\n2\nNW-003\n")
    (ws / "medallion.toml").write_text(toml)
    return ws


def silver(ws: Path, engine: Engine | None, *, full: bool = False) -> dict[str, Any]:
    """Run bronze and silver; the silver rows and quarantine rules by sale_id."""
    with Lake(load_settings(ws, engine=engine.name if engine else None), engine=engine) as lake:
        ctx = StepContext(run_id=f"t-{full}-{os.urandom(3).hex()}", full_refresh=full)
        ingest(lake, run_id=ctx.run_id)
        result = silver_step.run(lake, ctx)
        rows = lake.engine.to_arrow(lake.read("silver/sales")).to_pylist()
        quarantine = lake.read_arrow("silver/sales_quarantine").to_pylist()
        quality = lake.read_arrow("_meta/quality").to_pylist()
        report = audit(lake)
        products = lake.read_arrow("silver/products").column("product").to_pylist()
        stores = lake.read_arrow("silver/stores").column("store_id").to_pylist()
    return {
        "result": result,
        "silver": {r["sale_id"]: r for r in rows},
        "quarantine": {r["sale_id"]: r["rule"] for r in quarantine},
        "quality": [q for q in quality if q["run_id"] == ctx.run_id],
        "audit": report,
        "products": sorted(products),
        "stores": sorted(stores),
    }


@pytest.mark.parametrize("engine_name", ENGINES)
def test_renamed_columns_catalogue_and_stores(
    tmp_path: Path, engine_name: str, engine_for: Any
) -> None:
    engine = engine_for(engine_name)
    toml = COLUMNS + REFERENCE + '\n[rules.store_id_valid]\nseverity = "warn"\n'
    ws = shop(tmp_path / "ws", toml)
    got = silver(ws, engine)
    assert got["result"].status == "ok", got["result"].message
    # Qty, Date and Unit_Price were read through their aliases: nothing quarantined for them.
    assert got["quarantine"] == {}
    a1 = got["silver"]["A1"]
    assert (str(a1["sale_date"]), a1["quantity"], str(a1["unit_price"])) == (
        "2025-03-01",
        2,
        "5.00",
    )
    # The reference catalogue's spelling; Laptop is not in this shop's catalogue.
    assert got["silver"]["A2"]["product"] == "Gadget"
    rules = {q["rule"]: q for q in got["quality"]}
    assert rules["product_in_catalogue"]["rows_failed"] == 1
    # store_id_valid is `warn`: XX (no number) and NW-009 (not a known store) are kept.
    assert rules["store_id_valid"]["severity"] == "warn"
    assert rules["store_id_valid"]["rows_failed"] == 2
    assert got["silver"]["A4"]["store_id"] == "XX"
    assert got["silver"]["A5"]["store_id"] == "NW-009"
    assert got["products"] == ["Gadget", "Widget"]
    assert got["stores"] == ["NW-001", "NW-002", "NW-003"]
    assert got["audit"].ok

    # The same rule as `drop`, then a full refresh: both rows move to the quarantine.
    (ws / "medallion.toml").write_text(
        toml.replace('severity = "warn"', 'severity = "drop"\nfail_share = 0.5')
    )
    again = silver(ws, engine, full=True)
    assert again["result"].status == "ok", again["result"].message
    assert again["quarantine"] == {"A4": "store_id_valid", "A5": "store_id_valid"}
    assert sorted(again["silver"]) == ["A1", "A2", "A3"]
    rules = {q["rule"]: q for q in again["quality"]}
    assert (rules["store_id_valid"]["severity"], rules["store_id_valid"]["threshold"]) == (
        "drop",
        0.5,
    )
    assert again["audit"].ok


@pytest.mark.parametrize("engine_name", ENGINES)
def test_a_reference_change_moves_rows_on_a_full_refresh(
    tmp_path: Path, engine_name: str, engine_for: Any
) -> None:
    """Laptop is not in the shop's catalogue and product_in_catalogue is `drop`: quarantined.
    Once the catalogue lists it, a full refresh moves the row to silver; the audit balances."""
    engine = engine_for(engine_name)
    toml = (
        COLUMNS
        + REFERENCE
        + '[rules.store_id_valid]\nseverity = "warn"\n'
        + '[rules.product_in_catalogue]\nseverity = "drop"\nfail_share = 0.5\n'
    )
    ws = shop(tmp_path / "ws", toml)
    first = silver(ws, engine)
    assert first["quarantine"] == {"A3": "product_in_catalogue"} and "A3" not in first["silver"]
    (ws / "reference" / "products.csv").write_text("product\nWidget\nGadget\nLaptop\n")
    again = silver(ws, engine, full=True)
    assert again["quarantine"] == {} and again["silver"]["A3"]["product"] == "Laptop"
    assert again["products"] == ["Gadget", "Laptop", "Widget"]
    assert first["audit"].ok and again["audit"].ok


def test_without_aliases_the_feed_is_quarantined(tmp_path: Path) -> None:
    """The failure the aliases fix: Qty and Date go to _rescued_data, every row is dropped."""
    ws = shop(tmp_path / "ws", REFERENCE)
    got = silver(ws, None)
    assert got["result"].metrics.get("held_batches")  # 100 % quarantined: held by the gate


@pytest.mark.parametrize("engine_name", ENGINES)
def test_big_catalogue_is_joined(tmp_path: Path, engine_name: str, engine_for: Any) -> None:
    """Above CASE_CATALOGUE_LIMIT products the catalogue is a joined table: same answers."""
    products = ["Widget", "Gadget", *(f"Product {i:04d}" for i in range(200))]
    ws = shop(tmp_path / "ws", COLUMNS + '[reference]\nproducts = "reference/products.csv"\n',
              products)  # fmt: skip
    got = silver(ws, engine_for(engine_name))
    assert got["silver"]["A2"]["product"] == "Gadget"
    assert got["silver"]["A3"]["product"] == "Laptop"  # unknown: kept as sent
    rules = {q["rule"]: q for q in got["quality"]}
    assert rules["product_in_catalogue"]["rows_failed"] == 1
    assert len(got["products"]) == 202


def test_per_rule_fail_share(tmp_path: Path) -> None:
    # 1 of 5 rows (20 %) has an unknown product: a warn rule with fail_share 0.1 holds the batch.
    ws = shop(
        tmp_path / "ws",
        COLUMNS
        + '[reference]\nproducts = "reference/products.csv"\n'
        + "[rules.product_in_catalogue]\nfail_share = 0.1\n",
    )
    got = silver(ws, None)
    assert got["result"].metrics["held_batches"]
    assert "product_in_catalogue" in got["result"].message
    assert got["silver"] == {}
    # Raised above the share: the batch goes through on the next run (held batches are retried).
    (ws / "medallion.toml").write_text((ws / "medallion.toml").read_text().replace("0.1", "0.25"))
    assert silver(ws, None)["result"].status == "ok"


def test_a_rule_with_its_own_share_leaves_the_global_gate(tmp_path: Path) -> None:
    # Stores XX and NW-9 break store_id_valid (2 of 5 = 40 % > quarantine_fail_share 20 %);
    # with a fail_share of its own, the global share no longer weighs that rule.
    toml = COLUMNS + REFERENCE
    held = silver(shop(tmp_path / "a", toml), None)
    assert held["result"].metrics.get("held_batches")
    ok = silver(shop(tmp_path / "b", toml + "[rules.store_id_valid]\nfail_share = 0.5\n"), None)
    assert ok["result"].status == "ok" and not ok["result"].metrics.get("held_batches")
    assert ok["quarantine"] == {"A4": "store_id_valid", "A5": "store_id_valid"}


def test_plan_sees_a_severity_change_from_config(tmp_path: Path) -> None:
    ws = shop(tmp_path / "ws", COLUMNS + '[rules.store_id_valid]\nseverity = "warn"\n')
    silver(ws, None)
    (ws / "medallion.toml").write_text(COLUMNS + '[rules.status_recognised]\nseverity = "drop"\n')
    with Lake(load_settings(ws)) as lake:
        changes = rule_changes(lake)
    assert "rule store_id_valid: severity warn -> drop" in changes
    assert "rule status_recognised: severity warn -> drop" in changes


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[rules.store_valid]\nseverity = "warn"\n', "unknown rule 'store_valid'"),
        ('[rules.sale_date_parseable]\nseverity = "warn"\n', "cannot be 'warn'"),
        ("[rules.store_id_valid]\nfail_share = 2\n", "fail_share"),
        ('[freshness]\nwarn_after = "2 days"\n', "is not a duration"),
        ('[reference]\nproducts = "nope.csv"\n', "no such file"),
        ('[columns]\nqty = ["q"]\n', "'qty' is not a source column"),
        ('[columns]\nquantity = ["sale_id"]\n', "is itself a source column"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, toml: str, expected: str) -> None:
    (tmp_path / "medallion.toml").write_text(toml)
    with pytest.raises(ConfigError, match=r"medallion\.toml") as err:
        load_settings(tmp_path)
    assert expected in str(err.value)
    result = CliRunner().invoke(app, ["rules", "-w", str(tmp_path)])
    assert result.exit_code == 2


def test_rules_command_shows_values_and_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = shop(tmp_path / "ws", '[rules.store_id_valid]\nseverity = "warn"\nfail_share = 0.3\n')
    monkeypatch.setenv("MEDALLION_RULES", json.dumps({"total_consistent": {"fail_share": 0.5}}))
    result = CliRunner().invoke(app, ["rules", "-w", str(ws), "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["rule"]: r for r in json.loads(result.output)["rules"]}
    store = rows["store_id_valid"]
    assert (store["severity"], store["fail_share"]) == ("warn", 0.3)
    assert (store["severity_source"], store["fail_share_source"]) == (
        "medallion.toml:2",
        "medallion.toml:3",
    )
    assert rows["total_consistent"]["fail_share_source"] == "MEDALLION_RULES"
    assert rows["sale_date_parseable"]["severity_source"] == "default"
    assert rows["quarantine_share"]["fail_share"] == 0.2
    table = CliRunner().invoke(app, ["--plain", "rules", "-w", str(ws)])
    assert "store_id_valid" in table.output and "medallion.toml:2" in table.output


@pytest.mark.parametrize("engine_name", ENGINES)
def test_freshness_fails_a_stale_run(
    tmp_path: Path, seed_dir: Path, engine_name: str, engine_for: Any
) -> None:
    engine_for(engine_name)  # the module's Spark session: the run's engine attaches to it
    ws = tmp_path / "ws"
    (ws / "data" / "landing").mkdir(parents=True)
    shutil.copyfile(seed_dir / "raw_sales.csv", ws / "data" / "landing" / "raw_sales.csv")
    (ws / "medallion.toml").write_text(
        f'engine = "{engine_name}"\n[freshness]\nwarn_after = "2d"\nerror_after = "7d"\n'
    )
    report = run_pipeline(load_settings(ws), steps=["bronze", "silver"])
    assert report.exit_code == 3
    assert "stale" in (report.error or "")
    levels = {f["rule"]: f["level"] for f in report.freshness}
    # The seed's sales are years old; the file was ingested just now.
    assert levels == {"freshness_sale_date": "error", "freshness_ingested": "ok"}
    with Lake(load_settings(ws)) as lake:
        quality = lake.read_arrow("_meta/quality").to_pylist()
    recorded = {q["rule"]: q for q in quality if q["run_id"] == report.run_id}
    assert recorded["freshness_sale_date"]["rows_failed"] == 1
    assert recorded["freshness_sale_date"]["severity"] == "fail"
    status = CliRunner().invoke(app, ["status", "-w", str(ws), "--json"])
    assert {f["rule"]: f["level"] for f in json.loads(status.output)["freshness"]} == levels


def test_no_freshness_setting_checks_nothing(tmp_path: Path, seed_dir: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "data" / "landing").mkdir(parents=True)
    shutil.copyfile(seed_dir / "raw_sales.csv", ws / "data" / "landing" / "raw_sales.csv")
    report = run_pipeline(load_settings(ws), steps=["bronze", "silver"])
    assert report.exit_code == 0 and report.freshness == []


def test_report_joins_the_reference_tables_with_gold(tmp_path: Path) -> None:
    """silver/products and silver/stores are joined with gold: the report names what the
    reference lists and no completed sale has (here a product the feed never sells)."""
    from medallion_lakehouse.report.data import reference_coverage

    toml = COLUMNS + REFERENCE + '\n[rules.store_id_valid]\nseverity = "warn"\n'
    ws = shop(tmp_path / "ws", toml, products=["Widget", "Gadget", "Sprocket"])
    result = CliRunner().invoke(app, ["run", "-w", str(ws), "--steps", "bronze,silver,gold,report"])
    assert result.exit_code == 0, result.stdout
    with Lake(load_settings(ws)) as lake:
        found = {c.what: c for c in reference_coverage(lake)}
    assert (found["products"].known, found["products"].sold) == (3, 2)
    assert found["products"].unsold == ["Sprocket"]
    assert found["products"].source.endswith("products.csv")
    assert (found["stores"].known, found["stores"].sold, found["stores"].unsold) == (3, 3, [])
    html = (ws / "data" / "reports" / "report.html").read_text()
    assert "Sprocket" in html[html.index('id="section-products-stores"') :]
