"""The HTML report: section queries on hand-built tables, placeholders, failures, the full page."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from medallion_lakehouse.cli.main import app
from medallion_lakehouse.config import load_settings
from medallion_lakehouse.contracts import get_contract
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.pipeline.context import StepContext
from medallion_lakehouse.report import data, step
from medallion_lakehouse.report.html import Section
from medallion_lakehouse.storage.delta import CommitInfo
from tests.conftest import seed_data_dir

SEED = seed_data_dir()
COMMIT = CommitInfo(run_id="test", step="test")
T0 = datetime(2025, 3, 1, tzinfo=UTC)


def _default(field: pa.Field) -> Any:
    t = field.type
    if pa.types.is_string(t):
        return "x"
    if pa.types.is_integer(t):
        return 0
    if pa.types.is_floating(t):
        return 0.0
    if pa.types.is_boolean(t):
        return False
    if pa.types.is_decimal(t):
        return Decimal("0")
    if pa.types.is_date(t):
        return date(2025, 1, 1)
    if pa.types.is_timestamp(t):
        return T0
    raise TypeError(t)


def put(lake: Lake, name: str, rows: list[dict[str, Any]]) -> None:
    """Append rows to a table; columns not given get a type-appropriate filler value."""
    schema = get_contract(name).schema
    full = [{f.name: row.get(f.name, _default(f)) for f in schema} for row in rows]
    lake.write_arrow(name, pa.Table.from_pylist(full, schema=schema), commit=COMMIT)


@pytest.fixture
def lake(tmp_path: Path) -> Iterator[Lake]:
    with Lake(load_settings(tmp_path / "ws")) as lk:
        yield lk


# -- funnel -------------------------------------------------------------------------------------
def _bronze(batch: str, n: int) -> list[dict[str, Any]]:
    return [{"_batch_id": batch, "_source_line": i + 1} for i in range(n)]


def test_funnel_splits_bronze_records_by_where_they_ended(lake: Lake) -> None:
    # run r1 ingested b1 (5 records) and b2 (4); run r2 ingested b3 (3), not processed by silver.
    put(lake, "bronze/sales", _bronze("b1", 5) + _bronze("b2", 4) + _bronze("b3", 3))
    put(
        lake,
        "_meta/ingested_files",
        [
            {"batch_id": "b1", "run_id": "r1"},
            {"batch_id": "b2", "run_id": "r1"},
            {"batch_id": "b3", "run_id": "r2"},
        ],
    )
    # b1: 3 current + 1 quarantined -> 1 superseded; b2: 2 current + 0 -> 2 superseded.
    put(
        lake,
        "silver/sales",
        [{"sale_id": f"s{i}", "_batch_id": b} for i, b in enumerate(["b1"] * 3 + ["b2"] * 2)],
    )
    put(lake, "silver/sales_quarantine", [{"_batch_id": "b1", "rule": "r", "reason": "why"}])
    put(lake, "bronze/sales_rejects", [{"_batch_id": "b2"}, {"_batch_id": "b2"}])
    put(lake, "_meta/silver_batches", [{"batch_id": "b1"}, {"batch_id": "b2"}])

    frame = data.funnel(lake)
    assert frame is not None
    got = frame.set_index("run_id")[
        [
            "files",
            "bronze",
            "silver",
            "superseded",
            "quarantined",
            "rejected_lines",
            "not_processed",
        ]
    ].to_dict("index")
    assert got == {
        "r1": {
            "files": 2,
            "bronze": 9,
            "silver": 5,
            "superseded": 3,
            "quarantined": 1,
            "rejected_lines": 2,
            "not_processed": 0,
        },
        "r2": {
            "files": 1,
            "bronze": 3,
            "silver": 0,
            "superseded": 0,
            "quarantined": 0,
            "rejected_lines": 0,
            "not_processed": 3,
        },
    }


def test_funnel_is_none_without_bronze(lake: Lake) -> None:
    assert data.funnel(lake) is None


# -- gold ---------------------------------------------------------------------------------------
def test_revenue_by_store_lists_top_and_bottom_without_overlap(lake: Lake) -> None:
    # Store k earns 10*k over two days; 25 stores -> top are 25..16, bottom 1..10.
    rows = [
        {
            "store_id": f"NW-{k:03d}",
            "product": "Laptop",
            "sale_date": day,
            "revenue": Decimal(5 * k),
        }
        for k in range(1, 26)
        for day in (date(2025, 1, 1), date(2025, 1, 2))
    ]
    put(lake, "gold/product_store_daily", rows)
    frame = data.revenue_by_store(lake, n=10)
    assert frame is not None
    top = frame[frame.rank_group == "top"]
    bottom = frame[frame.rank_group == "bottom"]
    assert top.store_id.tolist() == [f"NW-{k:03d}" for k in range(25, 15, -1)]
    assert bottom.store_id.tolist() == [f"NW-{k:03d}" for k in range(1, 11)]
    assert top.revenue.iloc[0] == 250.0


def test_revenue_by_store_with_few_stores_shows_each_once(lake: Lake) -> None:
    put(
        lake,
        "gold/product_store_daily",
        [{"store_id": f"NW-00{k}", "revenue": Decimal(k)} for k in range(1, 4)],
    )
    frame = data.revenue_by_store(lake, n=10)
    assert frame is not None
    assert sorted(frame.store_id) == ["NW-001", "NW-002", "NW-003"]
    assert set(frame.rank_group) == {"top"}


def test_daily_revenue_reads_the_gold_amount_columns(lake: Lake) -> None:
    put(
        lake,
        "gold/daily_sales",
        [
            {
                "sale_date": date(2025, 1, 2),
                "revenue": Decimal("100.50"),
                "pending_amount": Decimal("7"),
                "cancelled_amount": Decimal("3"),
                "returned_amount": Decimal("1.25"),
            },
            {"sale_date": date(2025, 1, 1), "revenue": Decimal("10")},
        ],
    )
    frame = data.daily_revenue(lake)
    assert frame is not None
    assert [str(d) for d in frame.sale_date] == ["2025-01-01", "2025-01-02"]
    assert frame.iloc[1][["revenue", "pending", "cancelled", "returned"]].tolist() == [
        100.5,
        7.0,
        3.0,
        1.25,
    ]


# -- late arrivals, quality, runs ---------------------------------------------------------------
def test_late_arrivals_count_late_rows_per_batch_in_arrival_order(lake: Lake) -> None:
    rows = [
        {"sale_id": f"a{i}", "_batch_id": "b2", "_ingested_at": T0 + timedelta(hours=1),
         "is_late": i < 2, "_source_file": "late.csv"}
        for i in range(5)
    ] + [
        {"sale_id": f"b{i}", "_batch_id": "b1", "_ingested_at": T0, "is_late": False,
         "_source_file": "first.csv"}
        for i in range(4)
    ]  # fmt: skip
    put(lake, "silver/sales", rows)
    frame = data.late_arrivals(lake)
    assert frame is not None
    assert frame[["_batch_id", "rows", "late", "on_time"]].values.tolist() == [
        ["b1", 4, 0, 4],
        ["b2", 5, 2, 3],
    ]


def test_quality_keeps_the_most_recent_runs_and_computes_failed_share(lake: Lake) -> None:
    put(
        lake,
        "_meta/quality",
        [
            {"run_id": f"r{k}", "table": "silver/sales", "rule": "q", "severity": "warn",
             "rows_checked": 200, "rows_failed": k}
            for k in range(1, 5)
        ] + [{"run_id": "r4", "table": "silver/sales", "rule": "empty", "rows_checked": 0}],
    )  # fmt: skip
    frame = data.quality(lake, runs=2)
    assert frame is not None
    assert sorted(set(frame.run_id)) == ["r3", "r4"]
    shares = dict(zip(frame.run_id + "/" + frame.rule, frame.failed_share, strict=True))
    assert shares == {"r3/q": 0.015, "r4/q": 0.02, "r4/empty": 0.0}


def test_run_durations_keep_the_newest_runs(lake: Lake) -> None:
    put(
        lake,
        "_meta/runs",
        [{"run_id": f"r{k}", "step": s, "seconds": float(k)} for k in range(5) for s in ("a", "b")],
    )
    frame = data.run_durations(lake, runs=3)
    assert frame is not None
    assert sorted(set(frame.run_id)) == ["r2", "r3", "r4"]


# -- churn curves -------------------------------------------------------------------------------
ML_CURVES = {
    "test_cutoff": "2025-06-01",
    "random_forest": {
        "roc_auc": 0.8,
        "pr_auc": 0.7,
        "roc": {"fpr": [0, 0.5, 1], "tpr": [0, 0.9, 1]},
        "pr": {"precision": [0.25, 0.6, 1.0], "recall": [1.0, 0.5, 0.0]},
    },
    "recency_baseline": {
        "roc_auc": 0.7,
        "pr_auc": 0.5,
        "roc": {"fpr": [0, 1], "tpr": [0, 1]},
        "pr": {"precision": [0.25, 1.0], "recall": [1.0, 0.0]},
    },
}


def test_parse_curves_reads_the_ml_steps_curves_json() -> None:
    curves = data.parse_curves(ML_CURVES)
    assert curves is not None
    assert [(c.name, c.area) for c in curves.roc] == [
        ("random_forest", 0.8),
        ("recency_baseline", 0.7),
    ]
    assert curves.pr[0].x == [1.0, 0.5, 0.0] and curves.pr[0].y == [0.25, 0.6, 1.0]
    # At recall 1 every customer is predicted to churn: precision is the churn rate.
    assert curves.prevalence == 0.25


@pytest.mark.parametrize(
    "doc",
    [{}, {"test_cutoff": "2025-01-01"}, {"model": {"roc": {"fpr": [0]}}}],
    ids=["empty", "scalars-only", "incomplete-curve"],
)
def test_parse_curves_without_curves_is_none(doc: dict[str, Any]) -> None:
    assert data.parse_curves(doc) is None


def test_churn_curves_follow_the_latest_pointer(lake: Lake) -> None:
    models = Path(lake.settings.models_path)
    for version, auc in (("churn-a", 0.6), ("churn-b", 0.9)):
        (models / version).mkdir(parents=True)
        doc = json.loads(json.dumps(ML_CURVES))
        doc["random_forest"]["roc_auc"] = auc
        (models / version / "curves.json").write_text(json.dumps(doc))
        (models / version / "model.joblib").write_bytes(b"not loaded by the report")
    (models / "latest").write_text("churn-a\n")
    curves = data.churn_curves(lake)
    assert curves is not None
    assert curves.source == "churn-a" and curves.roc[0].area == 0.6
    # A folder `latest` does not name (e.g. left by an interrupted training) is never shown.
    (models / "latest").unlink()
    assert data.churn_curves(lake) is None


# -- the page -----------------------------------------------------------------------------------
SECTION_IDS = [sid for sid, _, _ in step.SECTIONS]


def test_empty_workspace_renders_a_placeholder_in_every_section(lake: Lake) -> None:
    output = step.write_report(lake)
    html = Path(output.path).read_text(encoding="utf-8")
    assert output.sections == dict.fromkeys(SECTION_IDS, "empty")
    assert output.errors == {} and output.plots == []
    for sid in SECTION_IDS:
        assert f'id="section-{sid}"' in html
    assert html.count('data-empty="true"') == len(SECTION_IDS)
    assert "medallion run" in html
    assert output.copy is not None and Path(output.copy).read_text(encoding="utf-8") == html


def test_page_is_self_contained(lake: Lake) -> None:
    put(lake, "bronze/sales", _bronze("b1", 3))
    page, _ = step.render(lake)
    # No scripts, stylesheets, fonts or images from anywhere: only anchors and data: URIs.
    refs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert all(r.startswith(("#", "data:")) for r in refs), refs
    assert "<script" not in page
    assert "@import" not in page and "url(" not in page.split("<body>")[0]


def test_a_section_that_raises_is_shown_and_fails_the_step(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_: Lake) -> Section:
        raise ValueError("bad frame")

    sections = tuple((sid, t, broken if sid == "funnel" else fn) for sid, t, fn in step.SECTIONS)
    monkeypatch.setattr(step, "SECTIONS", sections)
    changed = frozenset({"silver/sales"})  # a run that changed a table keeps a dated copy
    result = step.run(lake, StepContext(run_id="r-test", tables_written=changed))
    assert result.status == "failed"
    assert "funnel" in (result.message or "") and "bad frame" in (result.message or "")
    html = Path(result.metrics["path"]).read_text(encoding="utf-8")
    assert 'data-error="true"' in html and "ValueError: bad frame" in html
    assert 'id="section-revenue"' in html  # the other sections still rendered
    assert Path(result.metrics["copy"]).name == "report-r-test.html"


def test_report_step_keeps_a_copy_only_when_the_run_changed_a_table(lake: Lake) -> None:
    unchanged = step.run(lake, StepContext(run_id="r-same"))
    assert unchanged.metrics["copy"] is None
    assert Path(unchanged.metrics["path"]).name == "report.html"  # always the latest
    changed = step.run(lake, StepContext(run_id="r-new", tables_written=frozenset({"gold/x"})))
    assert Path(changed.metrics["copy"]).name == "report-r-new.html"


def test_prune_keeps_the_newest_copies(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    names = [f"report-20250101T00000{i}Z-abc.html" for i in range(5)] + ["other.html"]
    for name in names:
        (tmp_path / name).write_text("x")
    removed = step.prune_copies(target, keep=2)
    assert sorted(p.name for p in removed) == names[:3]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[3:])


def test_cli_report_json_and_out(tmp_path: Path) -> None:
    out = tmp_path / "elsewhere" / "r.html"
    (tmp_path / "ws" / "data" / "landing").mkdir(parents=True)  # a workspace, not a typo
    result = CliRunner().invoke(
        app, ["report", "--workspace", str(tmp_path / "ws"), "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["path"] == str(out) and out.is_file()
    assert payload["copy"] is None  # an explicit --out writes exactly that file
    assert set(payload["sections"]) == set(SECTION_IDS)


# -- a real lake, end to end --------------------------------------------------------------------
@contextmanager
def build_full_lake(workspace: Path, rows: int = 20_000) -> Iterator[Lake]:
    """Generate data, run the whole pipeline twice (the second time with a late batch)."""
    from medallion_lakehouse.generate import GenerateOptions, generate
    from medallion_lakehouse.pipeline.runner import run_pipeline

    settings = load_settings(workspace)
    generate(GenerateOptions(rows=rows, files=2, seed=7), settings.landing_path)
    first = run_pipeline(settings)
    assert first.exit_code == 0, first.error
    shutil.copyfile(SEED / "late_sales.csv", Path(settings.landing_path) / "zz_late_sales.csv")
    second = run_pipeline(settings)
    assert second.exit_code == 0, second.error
    with Lake(settings) as lake:
        yield lake


@pytest.mark.slow
def test_full_pipeline_report_has_every_section_and_plot(tmp_path: Path) -> None:
    with build_full_lake(tmp_path / "ws") as lake:
        # The run's own report step wrote the page already.
        assert Path(lake.settings.reports_path, "report.html").is_file()
        output = step.write_report(lake)
        html = Path(output.path).read_text(encoding="utf-8")
    assert output.errors == {}
    assert output.sections == dict.fromkeys(SECTION_IDS, "ok")
    for plot in (
        "lineage", "funnel", "quarantine-reasons", "quality", "daily-revenue",
        "revenue-by-product", "revenue-by-store", "late-arrivals", "run-durations",
        "churn-roc", "churn-pr", "explore-nulls", "explore-store-shapes", "explore-totals",
    ):  # fmt: skip
        assert f'data-plot="{plot}"' in html, plot
    assert 'data-empty="true"' not in html
    # The late seed batch (500 rows, all older than the generated data) is counted as late.
    assert "500 late (100%)" in html
