"""Hypothesis: conservation, unique sale_id, idempotence and arrival order, against a model.

Random small sets of files (sales with and without ids, status updates, moves between months,
exact duplicates, invalid quantities) arrive in a random order; silver runs after each file.
A plain-Python model says what silver must hold: per sale, the last valid version to arrive.
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medallion_lakehouse.bronze.ingest import ingest
from medallion_lakehouse.config import load_settings
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.pipeline.context import StepContext, new_run_id
from medallion_lakehouse.silver import step
from medallion_lakehouse.silver.audit import audit

pytestmark = pytest.mark.slow

HEADER = [
    "sale_id",
    "sale_date",
    "store_id",
    "customer_id",
    "product",
    "quantity",
    "price",
    "total",
    "status",
]
DATES = ["2025-01-31", "2025-02-01", "15/03/2025", "Mar 20 2025"]
ISO = {
    "2025-01-31": "2025-01-31",
    "2025-02-01": "2025-02-01",
    "15/03/2025": "2025-03-15",
    "Mar 20 2025": "2025-03-20",
}
STATUSES = ["Pending", "completed", " Returned", ""]

record = st.fixed_dictionaries(
    {
        "sale_id": st.sampled_from(["S1", "S2", "S3", ""]),
        "sale_date": st.sampled_from(DATES),
        "customer_id": st.sampled_from(["c1", "c2"]),
        "quantity": st.sampled_from(["1", "1", "1", "0"]),  # "0" is quarantined
        "status": st.sampled_from(STATUSES),
    }
)
files_strategy = st.lists(st.lists(record, min_size=1, max_size=5), min_size=1, max_size=3)


def key(r: dict[str, str]) -> tuple[str, ...]:
    """The model's identity of a sale: its id, else its content without status."""
    return (r["sale_id"],) if r["sale_id"] else ("h", ISO[r["sale_date"]], r["customer_id"])


def model(files: list[list[dict[str, str]]]) -> dict[tuple[str, ...], tuple[str, str]]:
    """key -> (sale_date, status) of the last valid version in arrival order."""
    expected: dict[tuple[str, ...], tuple[str, str]] = {}
    for rows in files:
        for r in rows:
            if r["quantity"] != "0":
                status = r["status"].strip().lower() or "unknown"
                expected[key(r)] = (ISO[r["sale_date"]], status)
    return expected


def run_files(ws: Path, files: list[list[dict[str, str]]]) -> Lake:
    landing = ws / "data" / "landing"
    landing.mkdir(parents=True)
    lake = Lake(load_settings(ws, quarantine_fail_share=1.0))
    for i, rows in enumerate(files):
        path = landing / f"f{i}.csv"
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=HEADER)
            w.writeheader()
            for r in rows:
                w.writerow(
                    {**r, "store_id": "NW-7", "product": "Laptop", "price": "5", "total": "5"}
                )
        ingest(lake, run_id=new_run_id(), files=[path])
        step.run(lake, StepContext(run_id=new_run_id()))
    return lake


def observed(lake: Lake) -> dict[tuple[str, ...], tuple[str, str]]:
    out = {}
    for r in lake.read_arrow("silver/sales").to_pylist():
        k = (
            (r["sale_id"],)
            if not r["sale_id"].startswith("h-")
            else ("h", str(r["sale_date"]), r["customer_id"])
        )
        assert k not in out, f"duplicate sale in silver: {k}"
        out[k] = (str(r["sale_date"]), r["status"])
    return out


def snapshot(lake: Lake) -> list[tuple[Any, ...]]:
    return sorted(tuple(r.values()) for r in lake.read_arrow("silver/sales").to_pylist())


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=files_strategy, order=st.randoms())
def test_silver_matches_model_conserves_and_is_idempotent(
    files: list[list[dict[str, str]]], order: Any
) -> None:
    arrival = list(files)
    order.shuffle(arrival)  # any arrival order: the model follows the same order
    with tempfile.TemporaryDirectory() as tmp, run_files(Path(tmp), arrival) as lake:
        total = sum(len(f) for f in files)
        report = audit(lake)
        assert report.violations == []
        assert report.current + report.superseded + report.quarantined == total
        assert report.quarantined == sum(r["quantity"] == "0" for f in files for r in f)
        assert observed(lake) == model(arrival)

        # Idempotent: nothing new -> no commit; full refresh -> the same content, is_late included.
        before, version = snapshot(lake), lake.version("silver/sales")
        assert step.run(lake, StepContext(run_id=new_run_id())).status == "skipped"
        assert lake.version("silver/sales") == version
        step.run(lake, StepContext(run_id=new_run_id(), full_refresh=True))
        assert snapshot(lake) == before
        assert audit(lake).violations == []


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=st.lists(st.lists(record, min_size=1, max_size=4), min_size=2, max_size=3))
def test_arrival_order_only_matters_through_latest_wins(files: list[list[dict[str, str]]]) -> None:
    # Give every file its own sales (ids and customers), so no sale has versions in two files:
    # then "latest wins" never depends on the order and silver content must not either.
    distinct = [
        [
            {
                **r,
                "sale_id": f"{r['sale_id']}-{i}" if r["sale_id"] else "",
                "customer_id": f"{r['customer_id']}-{i}",
            }
            for r in rows
        ]
        for i, rows in enumerate(files)
    ]
    drop = ("_batch_id", "_source_file", "_source_line", "_ingested_at", "_batch_seq", "is_late")

    def content(order: list[list[dict[str, str]]]) -> list[tuple[Any, ...]]:
        with tempfile.TemporaryDirectory() as tmp, run_files(Path(tmp), order) as lake:
            rows = lake.read_arrow("silver/sales").to_pylist()
            return sorted(tuple(v for k, v in r.items() if k not in drop) for r in rows)

    assert content(distinct) == content(list(reversed(distinct)))
