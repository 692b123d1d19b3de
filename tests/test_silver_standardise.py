"""Given/expected tables for each standardisation function and each silver rule (DuckDB)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pytest

from medallion_lakehouse.bronze.contract import BRONZE_SALES
from medallion_lakehouse.engines.duckdb_engine import DuckDBEngine
from medallion_lakehouse.silver import standardise as std
from medallion_lakehouse.silver import transform
from medallion_lakehouse.silver.rules import (
    DEFAULT_RULES,
    DROP_RULES,
    PRODUCT_RULE,
    QUARANTINE_SHARE_RULE,
    RULES,
    BatchShare,
    breaches,
    build,
    reason_of,
)


@pytest.fixture(scope="module")
def engine() -> Iterator[DuckDBEngine]:
    with DuckDBEngine() as eng:
        yield eng


def apply(engine: DuckDBEngine, fn: Callable[..., ir.Value], *columns: list[Any]) -> list[Any]:
    """Evaluate fn over string columns a, b, ... and return the result in input order."""
    data = {f"c{i}": pa.array(col, pa.string()) for i, col in enumerate(columns)}
    data["i"] = pa.array(range(len(columns[0])), pa.int64())
    t = engine.from_arrow(pa.table(data))
    args = [t[f"c{i}"] for i in range(len(columns))]
    out = engine.to_arrow(t.select("i", out=fn(*args)).order_by("i"))
    return out.column("out").to_pylist()


STORE_CASES = [
    ("NW-7", "NW-007"),
    ("NW-07", "NW-007"),
    ("NW007", "NW-007"),
    ("007-NW", "NW-007"),
    ("7", "NW-007"),
    ("nw 007", "NW-007"),
    (" NW-166 ", "NW-166"),
    ("NW-999", "NW-999"),
    ("NW_12", "NW-012"),
    ("NW-XX", None),  # no digits
    ("NW-", None),
    ("UNKNOWN", None),
    ("NW-0", None),  # outside 1-999
    ("NW-1500", None),
    ("1200-NW", None),
    ("AB-7", None),  # not a store id shape
    ("", None),
    (None, None),
]


@pytest.mark.parametrize(("raw", "expected"), STORE_CASES, ids=[repr(c[0]) for c in STORE_CASES])
def test_store_id(engine: DuckDBEngine, raw: str | None, expected: str | None) -> None:
    assert apply(engine, std.store_id, [raw]) == [expected]


DATE_CASES = [
    ("2025-01-15", date(2025, 1, 15)),
    (" 2025-01-15 ", date(2025, 1, 15)),
    ("2025/01/15", date(2025, 1, 15)),
    ("2025-1-5", date(2025, 1, 5)),
    ("2025-01-15T10:30:00", date(2025, 1, 15)),
    ("15/01/2025", date(2025, 1, 15)),
    ("15-01-2025", date(2025, 1, 15)),
    ("01/15/2025", date(2025, 1, 15)),  # month first: unambiguous because 15 > 12
    ("05/06/2025", date(2025, 6, 5)),  # ambiguous: read day first
    ("Jan 15 2025", date(2025, 1, 15)),
    ("January 15, 2025", date(2025, 1, 15)),
    ("15 Jan 2025", date(2025, 1, 15)),
    ("2025-02-30", None),  # not a real date
    ("2025-13-01", None),
    ("31/02/2025", None),
    ("Foo 15 2025", None),
    ("not a date", None),
    ("", None),
    (None, None),
]


@pytest.mark.parametrize(("raw", "expected"), DATE_CASES, ids=[repr(c[0]) for c in DATE_CASES])
def test_sale_date(engine: DuckDBEngine, raw: str | None, expected: date | None) -> None:
    assert apply(engine, std.sale_date, [raw]) == [expected]


def test_sale_month(engine: DuckDBEngine) -> None:
    got = apply(engine, lambda s: std.sale_month(std.sale_date(s)), ["2025-01-15", "5 Dec 2024"])
    assert got == ["2025-01", "2024-12"]


QUANTITY_CASES = [
    ("1", 1),
    (" 3 ", 3),
    ("+2", 2),
    ("2.0", 2),
    ("0", 0),  # parses; the rule rejects it
    ("-1", None),
    ("2.5", None),
    ("two", None),
    ("N/A", None),
    ("1e3", None),
    ("", None),
    (None, None),
]


@pytest.mark.parametrize(
    ("raw", "expected"), QUANTITY_CASES, ids=[repr(c[0]) for c in QUANTITY_CASES]
)
def test_quantity(engine: DuckDBEngine, raw: str | None, expected: int | None) -> None:
    assert apply(engine, std.quantity, [raw]) == [expected]


AMOUNT_CASES = [
    ("1190.42", Decimal("1190.42")),
    ("3306.3999999999996", Decimal("3306.40")),  # float noise rounds to cents
    ("321.45000000000005", Decimal("321.45")),
    (" 5 ", Decimal("5.00")),
    ("", None),
    ("abc", None),
    (None, None),
    ("99999999999", None),  # does not fit decimal(10,2)
]


@pytest.mark.parametrize(("raw", "expected"), AMOUNT_CASES, ids=[repr(c[0]) for c in AMOUNT_CASES])
def test_price_amount(engine: DuckDBEngine, raw: str | None, expected: Decimal | None) -> None:
    assert apply(engine, lambda s: std.amount(s, std.PRICE_TYPE), [raw]) == [expected]


STATUS_CASES = [
    ("Completed", "completed", True),
    (" PENDING ", "pending", True),
    ("canceled", "cancelled", True),
    ("Returned", "returned", True),
    ("", "unknown", False),
    (None, "unknown", False),
    ("refunded", "unknown", False),
]


@pytest.mark.parametrize(
    ("raw", "expected", "recognised"), STATUS_CASES, ids=[repr(c[0]) for c in STATUS_CASES]
)
def test_status(engine: DuckDBEngine, raw: str | None, expected: str, recognised: bool) -> None:
    assert apply(engine, std.status, [raw]) == [expected]
    assert apply(engine, std.status_recognised, [raw]) == [recognised]


PRODUCT_CASES = [
    ("Laptop", "Laptop", True),
    (" laptop ", "Laptop", True),
    ("SMARTPHONE", "Smartphone", True),
    ("headphones", "Headphones", True),
    ("Extra Batch Product", "Extra Batch Product", False),
    ("  Extra   Batch Product ", "Extra   Batch Product", False),  # trimmed, else as sent
    ("", None, False),
]


@pytest.mark.parametrize(
    ("raw", "expected", "known"), PRODUCT_CASES, ids=[repr(c[0]) for c in PRODUCT_CASES]
)
def test_product(engine: DuckDBEngine, raw: str, expected: str | None, known: bool) -> None:
    assert apply(engine, std.product, [raw]) == [expected]
    assert apply(engine, lambda s: std.in_catalogue(std.product(s)), [raw]) == [known]


IMPUTE_CASES = [
    ("575.75", "1", Decimal("575.75")),
    ("575.75", "3", Decimal("191.92")),  # 191.916.. rounds up
    ("321.45", "2", Decimal("160.73")),  # exactly half a cent: half up
    ("100.01", "2", Decimal("50.01")),  # 50.005 (a double would give 50.00)
    ("0.10", "3", Decimal("0.03")),
]


@pytest.mark.parametrize(("total", "qty", "expected"), IMPUTE_CASES, ids=lambda v: str(v))
def test_imputed_price(engine: DuckDBEngine, total: str, qty: str, expected: Decimal) -> None:
    def fn(t: ir.StringValue, q: ir.StringValue) -> ir.Value:
        return std.imputed_price(std.amount(t, std.TOTAL_TYPE), std.quantity(q))

    assert apply(engine, fn, [total], [qty]) == [expected]


def test_content_hash_is_deterministic_and_separates_fields(engine: DuckDBEngine) -> None:
    got = apply(engine, std.content_hash, ["a", "a", "ab", None], ["bc", "bc", "c", "x"])
    assert got[0] == got[1]
    assert got[0] != got[2]  # the separator keeps "a|bc" apart from "ab|c"
    assert all(h.startswith("h-") and len(h) == 34 for h in got)


# -- rules on whole bronze rows -----------------------------------------------------------
GOOD = {
    "sale_id": None,
    "sale_date": "2025-01-15",
    "store_id": "NW-7",
    "customer_id": "c1",
    "product": "Laptop",
    "quantity": "2",
    "price": "10.00",
    "total": "20.00",
    "status": "Completed",
}

RULE_CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("valid", {}, None),
    ("store_no_digits", {"store_id": "NW-XX"}, "store_id_valid"),
    ("store_out_of_range", {"store_id": "NW-1500"}, "store_id_valid"),
    ("date_unparseable", {"sale_date": "2025-02-30"}, "sale_date_parseable"),
    ("date_missing", {"sale_date": ""}, "sale_date_parseable"),
    ("quantity_zero", {"quantity": "0"}, "quantity_positive_integer"),
    ("quantity_text", {"quantity": "two"}, "quantity_positive_integer"),
    ("customer_missing", {"customer_id": " "}, "customer_id_present"),
    ("no_amount", {"price": "", "total": ""}, "amount_present"),
    ("first_rule_wins", {"store_id": "X", "quantity": "0"}, "store_id_valid"),
    ("unknown_product_is_kept", {"product": "Widget"}, None),
    ("missing_status_is_kept", {"status": ""}, None),
    ("missing_price_is_kept", {"price": ""}, None),
]


def bronze_rows(engine: DuckDBEngine, rows: list[dict[str, Any]]) -> ir.Table:
    """A bronze/sales table with the given source values and generated lineage."""
    full = []
    for i, row in enumerate(rows, 1):
        full.append(
            {
                **dict.fromkeys(BRONZE_SALES.column_names),
                **GOOD,
                "_source_file": "f.csv",
                "_source_file_sha256": "sha",
                "_source_line": i,
                "_batch_id": "b1",
                "_ingested_at": pa.scalar(0, pa.timestamp("us", tz="UTC")).as_py(),
                "_ingest_date": "2025-01-01",
                **row,
            }
        )
    return engine.from_arrow(pa.Table.from_pylist(full, schema=BRONZE_SALES.schema))


@pytest.mark.parametrize(
    ("changes", "rule"), [c[1:] for c in RULE_CASES], ids=[c[0] for c in RULE_CASES]
)
def test_drop_rule_attribution(
    engine: DuckDBEngine, changes: dict[str, Any], rule: str | None
) -> None:
    parsed = transform.parse(bronze_rows(engine, [changes]), DEFAULT_RULES)
    got = engine.to_arrow(
        parsed.select("_drop_rule", reason=reason_of(parsed._drop_rule, DEFAULT_RULES))
    )
    row = got.to_pylist()[0]
    assert row["_drop_rule"] == rule
    if rule is not None:
        assert row["reason"] == next(r.description for r in RULES if r.name == rule)


REPAIR_CASES = [
    # (price, total, quantity) -> (unit_price, total, price_imputed, total_recomputed)
    ("10.00", "20.00", "2", ("10.00", "20.00", False, False)),
    ("10.00", "20.01", "2", ("10.00", "20.01", False, False)),  # within 0.01
    ("10.00", "25.00", "2", ("10.00", "20.00", False, True)),
    ("10.00", "", "2", ("10.00", "20.00", False, True)),
    ("", "575.75", "3", ("191.92", "575.75", True, False)),  # the total stays
    ("1084.0", "5420.0", "5", ("1084.00", "5420.00", False, False)),
]


@pytest.mark.parametrize(("price", "total", "qty", "expected"), REPAIR_CASES, ids=str)
def test_repairs(
    engine: DuckDBEngine, price: str, total: str, qty: str, expected: tuple[Any, ...]
) -> None:
    parsed = transform.parse(
        bronze_rows(engine, [{"price": price, "total": total, "quantity": qty}]), DEFAULT_RULES
    )
    row = engine.to_arrow(transform.typed(parsed)).to_pylist()[0]
    got = (row["unit_price"], row["total"], row["price_imputed"], row["total_recomputed"])
    assert got == (Decimal(expected[0]), Decimal(expected[1]), expected[2], expected[3])


def test_sale_id_from_source_else_hash_without_status(engine: DuckDBEngine) -> None:
    rows = [
        {"sale_id": " S-1 "},
        {"status": "Completed"},
        {"status": "Returned"},  # same content, other status: same hashed sale_id
        {"quantity": "3", "total": "30.00"},
    ]
    typed = transform.typed(transform.parse(bronze_rows(engine, rows), DEFAULT_RULES))
    ids = engine.to_arrow(typed.order_by("_source_line")).column("sale_id").to_pylist()
    assert ids[0] == "S-1"
    assert ids[1] == ids[2]
    assert ids[1] != ids[3]
    assert ids[1].startswith("h-")


def test_latest_version_wins(engine: DuckDBEngine) -> None:
    base = {"sale_id": "S-1"}
    typed = transform.typed(
        transform.parse(
            bronze_rows(
                engine,
                [
                    {**base, "status": "Pending"},
                    {**base, "status": "Completed"},
                    {"sale_id": "S-2"},
                ],
            ),
            DEFAULT_RULES,
        )
    )
    latest = transform.latest(typed.mutate(is_late=False, _priority=1))
    got = {r["sale_id"]: r["status"] for r in engine.to_arrow(latest).to_pylist()}
    assert got == {"S-1": "completed", "S-2": "completed"}


def test_sequenced_order_picks_the_same_versions_as_the_full_order(engine: DuckDBEngine) -> None:
    """Versions of one sale across batches, lines and priorities: with every batch numbered,
    the short sort (seq, line, priority) keeps the row the full VERSION_ORDER keeps."""
    from datetime import UTC, datetime

    when = datetime(2025, 1, 1, tzinfo=UTC)
    versions = {  # sale -> its versions (batch seq, line, priority)
        "S-1": [(3, 5, 0), (2, 9, 1)],  # a later batch beats a later line
        "S-2": [(2, 9, 0), (2, 9, 1), (1, 9, 1)],  # equal lineage: the fresh row (priority 1)
        "S-3": [(4, 2, 1), (4, 7, 1), (1, 8, 1)],  # in one batch, the later line
    }
    rows = [
        {"sale_id": sale, "_batch_seq": seq, "_batch_id": f"b{seq}", "_source_line": line,
         "_ingested_at": when.replace(hour=seq), "_priority": prio, "tag": f"{seq}/{line}/{prio}"}
        for sale, vs in versions.items()
        for seq, line, prio in vs
    ]  # fmt: skip
    table = engine.from_arrow(pa.Table.from_pylist(rows))

    def winners(order: tuple[str, ...]) -> dict[str, str]:
        rank = ibis.row_number().over(
            group_by=table.sale_id, order_by=[ibis.desc(table[c]) for c in order]
        )
        top = table.mutate(r=rank).filter(lambda t: t.r == 0)
        return {r["sale_id"]: r["tag"] for r in engine.to_arrow(top).to_pylist()}

    assert transform.version_order(True) == transform.SEQUENCED_ORDER
    assert transform.version_order(False) == transform.VERSION_ORDER
    expected = {"S-1": "3/5/0", "S-2": "2/9/1", "S-3": "4/7/1"}
    assert winners(transform.VERSION_ORDER) == expected
    assert winners(transform.SEQUENCED_ORDER) == expected


def test_quarantine_share_gate_holds_a_batch_strictly_above_the_share() -> None:
    rules = build(quarantine_fail_share=0.20)
    assert breaches({"rows": 100, "dropped": 20}, rules) == []
    [held] = breaches({"rows": 100, "dropped": 21}, rules)
    assert (held.rule, held.failed, held.rows, held.threshold) == (
        QUARANTINE_SHARE_RULE,
        21,
        100,
        0.20,
    )
    assert breaches({"rows": 0, "dropped": 0}, rules) == []
    assert BatchShare("c", 0, 0).share == 0.0


def test_a_rule_with_its_own_fail_share_is_gated_apart_from_the_quarantine_share() -> None:
    rules = build({PRODUCT_RULE: (None, 0.05)}, quarantine_fail_share=0.20)
    # 6 % of rows break the product rule: over its own 5 %, while the other drop rules' 1 % is not
    # over the quarantine share (which no longer counts the product rule's rows).
    stats = {"rows": 100, "dropped": 7, "dropped_ungated": 1, f"failed__{PRODUCT_RULE}": 6}
    assert [(b.rule, b.failed) for b in breaches(stats, rules)] == [(PRODUCT_RULE, 6)]


def test_every_drop_rule_has_a_predicate_and_a_reason() -> None:
    assert DROP_RULES
    assert all(r.passes is not None and r.description for r in DROP_RULES)
    assert len({r.name for r in RULES}) == len(RULES)
