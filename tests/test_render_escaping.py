"""Text that came from data is shown, never interpreted: matplotlib mathtext, HTML, Rich markup.

A product named `$\\frac{1}{$` used to fail the report step for as long as it stayed in gold
(matplotlib parsed it as mathtext), and `medallion show` crashed on a cell holding
`[link=x]y[/link] [/]` (Rich parsed it as markup).
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from medallion_lakehouse.cli import app as cli_app
from medallion_lakehouse.cli import run as cli_run
from medallion_lakehouse.cli.main import app
from medallion_lakehouse.config import load_settings
from medallion_lakehouse.contracts import get_contract
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.pipeline.context import StepResult
from medallion_lakehouse.pipeline.runner import RunReport
from medallion_lakehouse.report import data, plots, step
from medallion_lakehouse.storage.delta import CommitInfo
from tests.conftest import seed_data_dir
from tests.test_report import SECTION_IDS, T0, _default, put

FRAC = "$\\frac{1}{$"  # unbalanced \frac: mathtext raises on it
SQUARE = "$x^2$"  # valid mathtext: would be drawn as x², not as typed
NEWLINE = "a\\nb"  # a backslash and an n, as typed
REAL_NEWLINE = "line1\nline2"
SCRIPT = "<script>alert(1)</script>"
ESCAPED_DOLLAR = "price \\$5 & <em>"
LONG = "very long " * 300  # 3,000 characters
EVIL = [FRAC, SQUARE, NEWLINE, REAL_NEWLINE, SCRIPT, ESCAPED_DOLLAR, LONG, "_hidden"]


# -- the helper ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", EVIL)
def test_text_reads_back_literally_in_matplotlib(value: str) -> None:
    import matplotlib.pyplot as plt

    shown = plots.text(value, limit=None)
    fig = plt.figure()
    try:
        label = fig.text(0, 0, shown)
        # What matplotlib draws: plain text (no mathtext) equal to the value, minus control chars.
        drawn, math = label._preprocess_math(label.get_text())  # type: ignore[attr-defined]
    finally:
        plt.close(fig)
    assert math is False
    assert drawn == value.replace("\n", " ")


def test_text_clips_long_labels_and_keeps_legend_labels_visible() -> None:
    assert len(plots.text(LONG)) == plots.LABEL_CHARS and plots.text(LONG).endswith("…")
    assert plots.text("_step", legend=True) == " _step"  # legends drop labels starting with _
    assert plots.text("a\x00b\tc\r\nd") == "a b c  d"  # XML forbids NUL in the SVG


# -- every plot, with hostile labels ---------------------------------------------------------------
def _frame(**columns: list[object]) -> pd.DataFrame:
    return pd.DataFrame(columns)


def _all_plots() -> dict[str, str]:
    n = len(EVIL)
    runs = [f"run {v}" for v in EVIL]
    curves = data.ChurnCurves(
        roc=[data.Curve(v, [0.0, 1.0], [0.0, 1.0], 0.5) for v in EVIL],
        pr=[data.Curve(v, [1.0, 0.0], [0.3, 1.0], None) for v in EVIL],
        prevalence=0.3,
        source=SCRIPT,
    )
    return {
        "funnel": plots.funnel_plot(
            _frame(
                run_id=runs,
                files=[1] * n,
                silver=[5] * n,
                superseded=[1] * n,
                quarantined=[1] * n,
                not_processed=[0] * n,
                rejected_lines=[1] * n,
            )
        ),
        "quarantine": plots.quarantine_plot(
            _frame(rule=EVIL, reason=EVIL, rows=list(range(1, n + 1)))
        ),
        "quality": plots.quality_plot(
            _frame(
                run_id=runs,
                table=EVIL,
                rule=EVIL,
                severity=EVIL,
                rows_failed=[1] * n,
                rows_checked=[10] * n,
                failed_share=[0.1] * n,
            )
        ),
        "product": plots.product_plot(_frame(product=EVIL, revenue=[float(k) for k in range(n)])),
        "store": plots.store_plot(
            _frame(store_id=EVIL, revenue=[1.0] * n, rank_group=["top", "bottom"] * (n // 2))
        ),
        "late": plots.late_plot(
            _frame(_batch_id=EVIL, source_file=EVIL, on_time=[3] * n, late=[1] * n)
        ),
        "late-no-file": plots.late_plot(_frame(_batch_id=EVIL, on_time=[3] * n, late=[1] * n)),
        "durations": plots.durations_plot(
            _frame(run_id=runs, step=EVIL, status=["failed"] * n, seconds=[1.0] * n)
        ),
        "roc": plots.curve_plot(curves, "roc"),
        "pr": plots.curve_plot(curves, "pr"),
        "bar": plots.bar_plot(EVIL, [1.0] * n, xlabel="x"),
        "buckets": plots.buckets_plot(EVIL, [1.0] * n, xlabel="x"),
    }


def test_every_plot_draws_hostile_labels_as_plain_text() -> None:
    svgs = _all_plots()
    for name, svg in svgs.items():
        assert svg.startswith("<svg"), name
        assert "<script" not in svg, name  # matplotlib escapes text content in the SVG
        assert "\x00" not in svg
    # Product names: a tick label each, drawn exactly as typed (mathtext would split them into
    # glyphs and lose the dollars), HTML-escaped by the SVG writer.
    product = svgs["product"]
    for value in (FRAC, SQUARE, NEWLINE, "_hidden"):
        assert f">{value}<" in product, value
    assert f">{html.escape(SCRIPT, quote=False)}<" in product
    assert f">{html.escape(ESCAPED_DOLLAR, quote=False)}<" in product
    assert ">line1 line2<" in product
    clipped = LONG[: plots.LABEL_CHARS - 1] + "…"
    assert f">{clipped}<" in product  # clipped, not thousands of pixels wide
    # Legends keep labels that start with "_" (matplotlib hides those by default).
    assert "_hidden" in svgs["durations"] and "_hidden" in svgs["roc"]


# -- the whole page on a lake full of them ---------------------------------------------------------
@pytest.fixture
def hostile_lake(tmp_path: Path) -> Iterator[Lake]:
    ws = tmp_path / "ws"
    with Lake(load_settings(ws)) as lake:
        batches = [f"batch {v}" for v in EVIL]
        put(
            lake,
            "bronze/sales",
            [{"_batch_id": b, "_source_line": i} for b in batches for i in range(3)],
        )
        put(
            lake,
            "_meta/ingested_files",
            [
                {"batch_id": b, "run_id": f"run {v}", "source_file": v}
                for b, v in zip(batches, EVIL, strict=True)
            ],
        )
        put(
            lake,
            "silver/sales",
            [
                {
                    "sale_id": f"s{k}",
                    "_batch_id": b,
                    "_source_file": v,
                    "_ingested_at": T0 + timedelta(hours=k),
                    "is_late": k % 2 == 0,
                    "product": v,
                    "store_id": v,
                }
                for k, (b, v) in enumerate(zip(batches, EVIL, strict=True))
            ],
        )
        put(
            lake,
            "silver/sales_quarantine",
            [{"_batch_id": batches[0], "rule": v, "reason": f"reason {v}"} for v in EVIL],
        )
        put(
            lake,
            "_meta/quality",
            [
                {"run_id": "r1", "table": v, "rule": f"rule {v}", "severity": v,
                 "rows_checked": 10, "rows_failed": k, "description": f"checks {v}"}
                for k, v in enumerate(EVIL)
            ],
        )  # fmt: skip
        put(
            lake,
            "_meta/runs",
            [
                {"run_id": f"run {v}", "step": v, "status": "failed", "seconds": 1.0, "message": v}
                for v in EVIL
            ],
        )
        put(
            lake,
            "gold/product_store_daily",
            [
                {"product": v, "store_id": v, "sale_date": date(2025, 1, 1),
                 "revenue": Decimal(10 + k), "sale_month": "2025-01"}
                for k, v in enumerate(EVIL)
            ],
        )  # fmt: skip
        put(
            lake,
            "gold/daily_sales",
            [{"sale_date": date(2025, 1, d), "revenue": Decimal(d)} for d in range(1, 4)],
        )
        curves = {
            v: {"roc_auc": 0.5, "roc": {"fpr": [0, 1], "tpr": [0, 1]},
                "pr": {"precision": [0.3, 1.0], "recall": [1.0, 0.0]}}
            for v in EVIL
        }  # fmt: skip
        # The report shows only the model `latest` names, and a pointer must name a folder of
        # the form churn-<run id>: hostile text reaches the curves through their labels.
        model = Path(lake.settings.models_path) / "churn-hostile"
        model.mkdir(parents=True)
        (model / "curves.json").write_text(json.dumps(curves), encoding="utf-8")
        (model / "model.joblib").write_bytes(b"not loaded by the report")
        (model.parent / "latest").write_text("churn-hostile\n", encoding="utf-8")
        landing = Path(lake.settings.landing_path)
        landing.mkdir(parents=True, exist_ok=True)
        with (landing / "sales $x^2$ <i>.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["sale_date", "store_id", "product", "total", "status", FRAC, SCRIPT])
            for v in EVIL:
                writer.writerow(["2025-01-01", v, v, "1.00", "", "", ""])
        yield lake


def test_report_on_hostile_data_renders_every_section_and_shows_text_literally(
    hostile_lake: Lake,
) -> None:
    output = step.write_report(hostile_lake)
    page = Path(output.path).read_text(encoding="utf-8")
    assert output.errors == {}, output.errors
    assert set(output.sections.values()) == {"ok"}, output.sections
    assert set(output.sections) == set(SECTION_IDS)
    for plot in (
        "lineage", "funnel", "quarantine-reasons", "quality", "daily-revenue",
        "revenue-by-product", "revenue-by-store", "late-arrivals", "run-durations",
        "churn-roc", "churn-pr", "explore-nulls", "explore-totals",
    ):  # fmt: skip
        assert f'data-plot="{plot}"' in page, plot
    # No markup from data: the only tags are the report's own.
    assert not re.search(r"<(script|em|u|i)>", page)
    assert html.escape(SCRIPT) in page
    # Tables (quarantine reasons, quality rules and descriptions) show the text in full, escaped.
    for value in (FRAC, SQUARE, NEWLINE, LONG, ESCAPED_DOLLAR):
        assert f"<td>{html.escape(value)}</td>" in page, value[:20]
        assert f"<td>reason {html.escape(value)}</td>" in page, value[:20]
        assert f"<td>checks {html.escape(value)}</td>" in page, value[:20]
    assert "churn-hostile" in page  # the model folder (a hostile name cannot be `latest`)
    # Plots draw data labels exactly as typed (an SVG <text> per label).
    assert f">{FRAC}<" in page and f">{SQUARE}<" in page


def test_report_step_succeeds_with_a_mathtext_product_in_gold(hostile_lake: Lake) -> None:
    from medallion_lakehouse.pipeline.context import StepContext

    result = step.run(hostile_lake, StepContext(run_id="r-hostile"))
    assert result.status == "ok", result.message


# -- the CLI: Rich markup and emoji codes in data --------------------------------------------------
LINK = "[link=x]y[/link] [/]"  # a closing tag with nothing open: Rich raised MarkupError
RED = "[red]r[/red]"  # would be drawn as a red "r"
EMOJI = ":x: :thumbs_up:"  # would become ❌ 👍
ESC = "esc \x1b[31m"  # a terminal colour code in a value...
ESC_SHOWN = "esc \\x1b[31m"  # ...is shown as an escape, not sent to the terminal


def _assert_literal(output: str, *values: str) -> None:
    for value in values:
        assert value in output, (value, output)
    assert "❌" not in output and "👍" not in output  # emoji codes were not replaced
    assert "\x1b" not in output  # no escape codes, neither ours nor the data's


@pytest.fixture
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wide enough that no cell wraps, so the output can be searched for whole values."""
    for key in [k for k in os.environ if k.startswith("MEDALLION_")]:
        monkeypatch.delenv(key)
    for console in (cli_app.console, cli_app.err_console):
        monkeypatch.setattr(console, "width", 400)


@pytest.fixture
def markup_ws(tmp_path: Path, wide_console: None) -> Path:
    """A workspace whose tables and commit metadata hold markup, emoji codes and escapes."""
    ws = tmp_path / "ws"
    with Lake(load_settings(ws)) as lake:
        put(
            lake,
            "_meta/quality",
            [
                {"run_id": "r1", "table": RED, "rule": LINK, "severity": EMOJI,
                 "rows_checked": 10, "rows_failed": 1, "description": f"{LINK} {ESC}"},
                {"run_id": "r1", "table": "t", "rule": "dropped", "severity": "drop",
                 "rows_checked": 10, "rows_failed": 2, "description": None},
            ],
        )  # fmt: skip
        put(
            lake,
            "_meta/runs",
            [{"run_id": f"r1 {RED}", "step": LINK, "status": EMOJI, "message": ESC}],
        )
        # The newest commit of _meta/quality carries markup in its run and step metadata.
        schema = get_contract("_meta/quality").schema
        row = {f.name: _default(f) for f in schema} | {"run_id": "r0"}
        lake.write_arrow(
            "_meta/quality",
            pa.Table.from_pylist([row], schema=schema),
            commit=CommitInfo(run_id=f"run {LINK}", step=f"step {EMOJI}"),
        )
    return ws


def test_show_prints_markup_and_emoji_codes_literally(cli: CliRunner, markup_ws: Path) -> None:
    result = cli.invoke(app, ["show", "_meta/quality", "-w", str(markup_ws)])
    assert result.exit_code == 0, result.output
    _assert_literal(result.output, LINK, RED, EMOJI, ESC_SHOWN, "null")
    result = cli.invoke(app, ["show", "_meta/runs", "-w", str(markup_ws)])
    assert result.exit_code == 0, result.output
    _assert_literal(result.output, f"r1 {RED}", LINK, EMOJI, ESC_SHOWN)


def test_quality_prints_rules_and_descriptions_literally(cli: CliRunner, markup_ws: Path) -> None:
    result = cli.invoke(app, ["quality", "--run", "r1", "-w", str(markup_ws)])
    assert result.exit_code == 0, result.output
    _assert_literal(result.output, f"{RED}: {LINK}", EMOJI, f"{LINK} {ESC_SHOWN}", "t: dropped")


def test_status_and_history_print_commit_metadata_literally(
    cli: CliRunner, markup_ws: Path
) -> None:
    result = cli.invoke(app, ["status", "-w", str(markup_ws)])
    assert result.exit_code == 0, result.output
    _assert_literal(result.output, f"run {LINK}", f"Last run r1 {RED}: {LINK}={EMOJI}")
    result = cli.invoke(app, ["history", "_meta/quality", "-w", str(markup_ws)])
    assert result.exit_code == 0, result.output
    _assert_literal(result.output, f"run {LINK}", f"step {EMOJI}")


def test_an_error_message_holding_markup_is_one_literal_line(
    cli: CliRunner, markup_ws: Path
) -> None:
    result = cli.invoke(app, ["quality", "--run", f"{LINK} {EMOJI}", "-w", str(markup_ws)])
    assert result.exit_code == 2, result.output
    _assert_literal(result.stderr, f"error: No quality results for run '{LINK} {EMOJI}'")
    assert "Traceback" not in result.output


def test_ingest_prints_file_names_and_reasons_literally(
    cli: CliRunner, tmp_path: Path, wide_console: None
) -> None:
    ws = tmp_path / "ws"
    landing = ws / "data" / "landing"
    landing.mkdir(parents=True)
    good, bad = "[red]r [bold]b :x:.csv", "[link=x]y :thumbs_up:.parquet"  # no "/" in a file name
    # An extra column is rescued, and its name shown in the note.
    lines = (seed_data_dir() / "late_sales.csv").read_text(encoding="utf-8").splitlines()
    extra = [f"{lines[0]},[red]extra :x:"] + [f"{line},1" for line in lines[1:]]
    (landing / good).write_text("\n".join(extra) + "\n", encoding="utf-8")
    (landing / bad).write_bytes(b"not parquet at all")
    result = cli.invoke(app, ["ingest", "-w", str(ws)])
    assert result.exit_code == 1, result.output  # the unreadable file fails; the other lands
    _assert_literal(
        result.output, good, bad, "rescued: [red]extra :x:", "not a readable Parquet file"
    )


def test_run_summary_prints_step_messages_literally(
    cli: CliRunner, tmp_path: Path, wide_console: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = RunReport(
        run_id="r1",
        engine="duckdb",
        steps=[
            StepResult("bronze", "skipped", message=f"skipped {LINK} {EMOJI}"),
            StepResult("silver", "failed", message=f"failed {RED} {ESC}"),
        ],
        exit_code=1,
        failed_step="silver",
        error=f"bad value {LINK}",
        lock_note=f"waited for {RED}",
    )
    monkeypatch.setattr(cli_run, "run_pipeline", lambda *a, **k: report)
    (tmp_path / "ws" / "data" / "landing").mkdir(parents=True)  # a workspace, not a typo
    result = cli.invoke(app, ["run", "--steps", "bronze,silver", "-w", str(tmp_path / "ws")])
    assert result.exit_code == 1, result.output
    _assert_literal(
        result.output,
        f"bronze skipped: skipped {LINK} {EMOJI}",
        f"failed {RED} {ESC_SHOWN}",
        f"error: step silver failed: bad value {LINK}",
        f"note: waited for {RED}",
    )


def test_markup_helper_keeps_our_styles_and_number_formats() -> None:
    text = cli_app.markup("[bold]{}[/] {:,} rows, {n:.1f} s", "ends in \\", 12345, n=1.25)
    assert text.plain == "ends in \\ 12,345 rows, 1.2 s"
    assert [str(span.style) for span in text.spans] == ["bold"]
    assert cli_app.plain(f"{EMOJI} {LINK}").plain == f"{EMOJI} {LINK}"
