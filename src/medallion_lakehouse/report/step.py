"""The report step: query every section, draw it, write one self-contained HTML file.

`run(lake, ctx)` is the `report` step of `medallion run`; `write_report` is what
`medallion report` calls. A section whose tables are missing shows a placeholder; a section that
raises shows the error in place, and the step still writes the page (and reports the failure).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd

from medallion_lakehouse.attention import needs_attention
from medallion_lakehouse.bronze import schema_changes
from medallion_lakehouse.bronze.contract import BRONZE_SALES
from medallion_lakehouse.bronze.schema_changes import SchemaChange
from medallion_lakehouse.gold.tables.daily_sales import DAILY_SALES
from medallion_lakehouse.gold.tables.product_store_daily import PRODUCT_STORE_DAILY
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.meta import INGESTED_FILES, QUALITY, RUNS
from medallion_lakehouse.pipeline.context import StepContext, StepResult
from medallion_lakehouse.report import data, plots
from medallion_lakehouse.report.html import (
    Section,
    badge,
    error_box,
    figure,
    kpis,
    placeholder,
    render_page,
    table,
)
from medallion_lakehouse.report.manifest import TITLE as MANIFEST_TITLE
from medallion_lakehouse.report.manifest import manifest_section
from medallion_lakehouse.silver.contract import SILVER_QUARANTINE, SILVER_SALES

REPORT_NAME = "report.html"
KEEP_COPIES = 30  # timestamped copies kept next to report.html (older ones are deleted)
TITLE = "Medallion lakehouse report"


@dataclass
class ReportOutput:
    """Where the report went and what each section showed."""

    path: str
    copy: str | None
    sections: dict[str, str]  # section id -> ok | empty | error
    plots: list[str]
    seconds: float
    errors: dict[str, str] = field(default_factory=dict)


def _fmt_int(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


# -- sections -------------------------------------------------------------------------------------
def overview_section(lake: Lake) -> Section:
    statuses = data.overview(lake)
    by_name = {s.name: s for s in statuses}
    section = Section(
        "overview",
        "Pipeline overview",
        "Every table of the lake with its current Delta version and row count. Data flows left "
        "to right: raw records land in <b>bronze</b> as received, <b>silver</b> keeps one clean "
        "row per sale (rejects go to quarantine), <b>gold</b> aggregates for analysis, and the "
        "churn model scores customers from gold features.",
    )
    if not any(s.exists for s in statuses):
        section.state = "empty"
        section.body = placeholder([BRONZE_SALES.name], "run <code>medallion run</code>")
        return section

    def rows(name: str) -> int | None:
        status = by_name.get(name)
        return status.rows if status is not None else None

    runs = data.read(lake, RUNS.name)
    last_run = "—"
    last_sub = "no run recorded yet"
    if runs is not None:
        newest = data.to_pandas(lake, runs.order_by(runs.run_id.desc()).limit(50))
        if not newest.empty:
            run_id = newest.run_id.iloc[0]
            mine = newest[newest.run_id == run_id]
            failed = (mine.status == "failed").any()
            last_run = "failed" if failed else "ok"
            last_sub = f"{run_id} · {mine.seconds.sum():.1f} s"
    cards = [
        ("bronze records", _fmt_int(rows(BRONZE_SALES.name)), "as received, append-only"),
        ("silver sales", _fmt_int(rows(SILVER_SALES.name)), "one row per sale_id"),
        ("quarantined", _fmt_int(rows(SILVER_QUARANTINE.name)), "failed a drop rule"),
        ("gold days", _fmt_int(rows(DAILY_SALES.name)), "gold/daily_sales rows"),
        ("last run", last_run, last_sub),
    ]
    listing = table(
        [
            (
                f'<span class="layer-{escape(s.name.split("/")[0])}">{escape(s.name)}</span>',
                s.version,
                s.rows,
                s.last_commit.replace("T", " ").replace("+00:00", " UTC")
                if s.last_commit
                else None,
                s.last_operation,
                s.last_run_id,
            )
            for s in statuses
        ],
        ["table", "version", "rows", "last commit", "operation", "run"],
        numeric=(1, 2),
        raw=(0,),
        row_class=lambda r: "" if r[1] is not None else "missing",
    )
    section.body = (
        kpis(cards)
        + '<div class="lineage">'
        + figure(
            "lineage", plots.lineage_svg(statuses), "Lineage: dashed boxes are not written yet."
        )
        + "</div>"
        + listing
    )
    section.plots = ["lineage"]
    return section


def attention_section(lake: Lake) -> Section:
    section = Section(
        "attention",
        "Needs attention",
        "Landing files the newest bronze step could not read (the other files went on) and "
        "bronze batches the quality gate holds back (later batches went on). Decide about a held "
        "batch with <code>medallion held</code>.",
    )
    found = needs_attention(lake)
    rows = [
        (badge("failed file", "bad"), f["source_file"], f["reason"] or "")
        for f in found["failed_files"]
    ] + [
        (
            badge("held batch", "warn"),
            f"{b['batch_id']} ({b['source_file'] or '?'})",
            b["reason"] or "",
        )
        for b in found["held_batches"]
    ]
    if not rows and not lake.exists(RUNS.name):
        section.state, section.body = "empty", placeholder([RUNS.name])
        return section
    if not rows:
        section.body = "<p>Nothing: every landing file was read and no batch is held.</p>"
        return section
    section.body = table(rows, ["what", "file or batch", "reason"], raw=(0,))
    return section


def schema_section(lake: Lake) -> Section:
    section = Section(
        "schema",
        "Source schema changes",
        "Batches whose columns differ from the previous batch of the same landing folder "
        "(<code>_meta/schema_changes</code>): bronze still ingests them, columns it does not know "
        "go to <code>_rescued_data</code>; map a renamed column with <code>[columns]</code> in "
        "medallion.toml.",
    )
    if not lake.exists(INGESTED_FILES.name):
        section.state, section.body = "empty", placeholder([INGESTED_FILES.name])
        return section
    changes = schema_changes.recorded(lake)
    if not changes:
        section.body = "<p>None: every source's batches have the same columns.</p>"
        return section
    rows = [
        (c["source"], c["source_file"], c["previous_file"], SchemaChange.from_row(c).describe())
        for c in changes[:_SCHEMA_ROWS]
    ]
    more = len(changes) - len(rows)
    section.body = table(rows, ["source", "file", "compared with", "change"]) + (
        f"<p>… and {more} earlier change(s): <code>medallion status --json</code>.</p>"
        if more
        else ""
    )
    return section


_SCHEMA_ROWS = 20  # newest first


def funnel_section(lake: Lake) -> Section:
    section = Section(
        "funnel",
        "Bronze → silver → quarantine funnel",
        "Where each ingest run's bronze records ended up. Every record lands in exactly one place: "
        "the current silver row of its sale, a superseded version (a later status update or an "
        "exact re-send replaced it), or the quarantine. Unparseable lines never became records; "
        "they are kept in <code>bronze/sales_rejects</code>.",
    )
    frame = data.funnel(lake)
    if frame is None or frame.empty:
        section.state, section.body = "empty", placeholder([BRONZE_SALES.name])
        return section
    totals = frame[["bronze", "silver", "superseded", "quarantined", "rejected_lines"]].sum()
    section.body = kpis(
        [
            ("bronze records", _fmt_int(int(totals.bronze)), f"{len(frame)} run(s) shown"),
            ("in silver", _fmt_int(int(totals.silver)), _share(totals.silver, totals.bronze)),
            (
                "superseded",
                _fmt_int(int(totals.superseded)),
                _share(totals.superseded, totals.bronze),
            ),
            (
                "quarantined",
                _fmt_int(int(totals.quarantined)),
                _share(totals.quarantined, totals.bronze),
            ),
            ("rejected lines", _fmt_int(int(totals.rejected_lines)), "could not be parsed"),
        ]
    ) + figure("funnel", plots.funnel_plot(frame), "One bar per ingest run (oldest at the top).")
    section.plots = ["funnel"]
    return section


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.1%} of bronze" if whole else ""


def quarantine_section(lake: Lake) -> Section:
    section = Section(
        "quarantine",
        "Quarantine reasons",
        "Rows that broke a <code>drop</code> rule are kept in <code>silver/sales_quarantine</code> "
        "with every source column as received, the rule and a reason: nothing is deleted silently.",
    )
    frame = data.quarantine_reasons(lake)
    if frame is None:
        section.state, section.body = "empty", placeholder([SILVER_QUARANTINE.name])
        return section
    if frame.empty:
        section.body = '<p><span class="badge ok">clean</span> No row has been quarantined.</p>'
        return section
    reasons = table(
        [
            (str(r["rule"]), str(r.get("reason", "")), int(r["rows"]))
            for r in frame.to_dict("records")
        ],
        ["rule", "reason", "rows"],
        numeric=(2,),
    )
    section.body = figure("quarantine-reasons", plots.quarantine_plot(frame)) + reasons
    section.plots = ["quarantine-reasons"]
    return section


def quality_section(lake: Lake) -> Section:
    section = Section(
        "quality",
        "Data-quality rules over recent runs",
        "Each run checks every rule and records rows checked and failed in "
        "<code>_meta/quality</code>. Severity works like Delta Live Tables expectations: "
        "<code>warn</code> keeps and counts, <code>drop</code> quarantines, <code>fail</code> "
        "stops the run.",
    )
    frame = data.quality(lake)
    if frame is None or frame.empty:
        section.state, section.body = "empty", placeholder([QUALITY.name])
        return section
    latest = frame[frame.run_id == frame.run_id.max()]
    tone = {"warn": "warn", "drop": "bad", "fail": "bad"}
    rows = [
        (
            r.table,
            r.rule,
            badge(str(r.severity), "muted"),
            int(r.rows_checked),
            int(r.rows_failed),
            f"{r.failed_share:.2%}",
            badge("pass", "ok")
            if r.rows_failed == 0
            else badge("flagged", tone.get(str(r.severity), "warn")),
            escape(str(r.description))
            if "description" in latest.columns and pd.notna(r.description)
            else "",
        )
        for r in latest.itertuples()
    ]
    section.body = figure("quality", plots.quality_plot(frame)) + (
        f"<h3>Latest run <code>{escape(str(latest.run_id.iloc[0]))}</code></h3>"
        + table(
            rows,
            ["table", "rule", "severity", "checked", "failed", "share", "result", "what it checks"],
            numeric=(3, 4, 5),
            raw=(2, 6, 7),
        )
    )
    section.plots = ["quality"]
    return section


def revenue_section(lake: Lake) -> Section:
    section = Section(
        "revenue",
        "Daily revenue",
        "Completed revenue per day from <code>gold/daily_sales</code>, with the amounts still "
        "pending and those cancelled or returned, which revenue deliberately excludes.",
    )
    frame = data.daily_revenue(lake)
    if frame is None or frame.empty:
        section.state, section.body = "empty", placeholder([DAILY_SALES.name])
        return section
    cards = [
        ("revenue", plots.money(float(frame.revenue.sum())), f"{len(frame):,} days"),
        (
            "best day",
            plots.money(float(frame.revenue.max())),
            str(frame.sale_date.iloc[int(frame.revenue.to_numpy().argmax())]),
        ),
    ]
    cards += [
        (c, plots.money(float(frame[c].sum())), "total")
        for c in ("pending", "cancelled", "returned")
        if c in frame
    ]
    section.body = kpis(cards) + figure("daily-revenue", plots.daily_revenue_plot(frame))
    section.plots = ["daily-revenue"]
    return section


def products_stores_section(lake: Lake) -> Section:
    section = Section(
        "products-stores",
        "Revenue by product and by store",
        "Completed revenue over the whole period from <code>gold/product_store_daily</code>: every "
        "product, and the strongest and weakest stores.",
    )
    products = data.revenue_by_product(lake)
    stores = data.revenue_by_store(lake)
    if products is None or stores is None or products.empty:
        section.state, section.body = "empty", placeholder([PRODUCT_STORE_DAILY.name])
        return section
    section.body = (
        figure("revenue-by-product", plots.product_plot(products))
        + figure("revenue-by-store", plots.store_plot(stores))
        + _coverage(data.reference_coverage(lake))
    )
    section.plots = ["revenue-by-product", "revenue-by-store"]
    return section


def _coverage(found: list[data.Coverage]) -> str:
    """The reference tables joined with gold: catalogue products and known stores never sold."""
    rows = [
        (
            c.what,
            c.source,
            _fmt_int(c.known),
            _fmt_int(c.sold),
            ", ".join(c.unsold) + (" …" if c.known - c.sold > len(c.unsold) else ""),
        )
        for c in found
    ]
    if not rows:
        return ""
    return (
        "<p>Reference data (<code>silver/products</code>, <code>silver/stores</code>) against "
        "completed sales:</p>"
        + table(rows, ["reference", "from", "known", "with sales", "without sales"], numeric=(2, 3))
    )


def late_section(lake: Lake) -> Section:
    section = Section(
        "late",
        "Late-arriving data",
        "A sale is late when its <code>sale_date</code> is older than the newest date silver "
        "already held when its batch arrived. Late rows land in old <code>sale_month</code> "
        "partitions, which silver and gold rebuild incrementally instead of reprocessing "
        "everything.",
    )
    frame = data.late_arrivals(lake)
    if frame is None or frame.empty:
        section.state, section.body = "empty", placeholder([SILVER_SALES.name])
        return section
    section.body = figure("late-arrivals", plots.late_plot(frame))
    section.plots = ["late-arrivals"]
    return section


def runs_section(lake: Lake) -> Section:
    section = Section(
        "runs",
        "Run durations",
        "Seconds per step of the most recent <code>medallion run</code>s, from "
        "<code>_meta/runs</code>. Failed steps are hatched in red.",
    )
    frame = data.run_durations(lake)
    if frame is None or frame.empty:
        section.state, section.body = "empty", placeholder([RUNS.name])
        return section
    section.body = figure("run-durations", plots.durations_plot(frame))
    section.plots = ["run-durations"]
    return section


def churn_section(lake: Lake) -> Section:
    section = Section(
        "churn",
        "Churn model",
        "Out-of-time evaluation: the model is trained on features up to one cutoff and tested on "
        "customers at a later cutoff, against a baseline that ranks customers by recency alone. "
        "The dashed line is what guessing achieves.",
    )
    curves = data.churn_curves(lake)
    if curves is None:
        section.state = "empty"
        section.body = placeholder(
            ["data/models/*/curves.json"],
            "run <code>medallion run</code> (or <code>medallion train</code>) on enough history",
        )
        return section
    figures = []
    if curves.roc:
        figures.append(figure("churn-roc", plots.curve_plot(curves, "roc"), narrow=True))
        section.plots.append("churn-roc")
    if curves.pr:
        figures.append(figure("churn-pr", plots.curve_plot(curves, "pr"), narrow=True))
        section.plots.append("churn-pr")
    body = (
        f"<p>Model <code>{escape(curves.source)}</code>.</p>"
        f'<div class="grid-2">{"".join(figures)}</div>'
    )
    metrics = data.model_metrics(lake)
    if metrics is not None and not metrics.empty:
        shown = [
            c
            for c in (
                "run_id",
                "model",
                "train_cutoff",
                "test_cutoff",
                "n_train",
                "n_test",
                "test_churn_rate",
                "roc_auc",
                "pr_auc",
                "precision",
                "recall",
                "f1",
            )
            if c in metrics
        ]
        text_columns = ("run_id", "model", "train_cutoff", "test_cutoff")
        body += (
            "<h3>Recent evaluations (newest first)</h3>"
            + '<div class="scroll">'
            + table(
                [tuple(_plain(v) for v in row) for row in metrics[shown].itertuples(index=False)],
                [c.replace("_", " ") for c in shown],
                numeric=tuple(i for i, c in enumerate(shown) if c not in text_columns),
            )
            + "</div>"
        )
    section.body = body
    return section


def _plain(value: Any) -> Any:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def exploration_section(lake: Lake) -> Section:
    from medallion_lakehouse.report.explore import exploration_body

    section = Section(
        "exploration",
        "Raw data exploration",
        "What the newest raw data looks like before any cleaning (the same numbers as "
        "<code>medallion explore</code>): missing values per column, the shapes store ids "
        "arrive in, and the distributions of quantity and price.",
    )
    body, plot_ids = exploration_body(lake)
    if body is None:
        section.state = "empty"
        section.body = placeholder(
            ["data/landing/*", BRONZE_SALES.name],
            "run <code>medallion generate</code> then <code>medallion run</code>",
        )
        return section
    section.body, section.plots = body, plot_ids
    return section


SECTIONS: tuple[tuple[str, str, Callable[[Lake], Section]], ...] = (
    ("overview", "Pipeline overview", overview_section),
    ("attention", "Needs attention", attention_section),
    ("schema", "Source schema changes", schema_section),
    ("funnel", "Bronze → silver → quarantine funnel", funnel_section),
    ("quarantine", "Quarantine reasons", quarantine_section),
    ("quality", "Data-quality rules over recent runs", quality_section),
    ("manifest", MANIFEST_TITLE, manifest_section),  # issue 18: report/manifest.py
    ("revenue", "Daily revenue", revenue_section),
    ("products-stores", "Revenue by product and by store", products_stores_section),
    ("late", "Late-arriving data", late_section),
    ("runs", "Run durations", runs_section),
    ("churn", "Churn model", churn_section),
    ("exploration", "Raw data exploration", exploration_section),
)


# -- assembly ------------------------------------------------------------------------------
def build_sections(lake: Lake) -> list[Section]:
    """Every section, in page order; a section that raises becomes an error box."""
    sections = []
    for section_id, title, build in SECTIONS:
        try:
            sections.append(build(lake))
        except Exception as exc:
            sections.append(Section(section_id, title, "", error_box(exc), state="error"))
    return sections


def _package_version() -> str:
    try:
        return version("medallion-lakehouse")
    except PackageNotFoundError:
        return "dev"


def render(
    lake: Lake, *, generated_at: datetime | None = None, run_id: str | None = None
) -> tuple[str, list[Section]]:
    """The report's HTML and its sections (no file written)."""
    generated_at = generated_at or datetime.now(UTC)
    sections = build_sections(lake)
    settings = lake.settings
    meta = (
        f"Generated {generated_at:%Y-%m-%d %H:%M:%S} UTC"
        + (f" by run <code>{escape(run_id)}</code>" if run_id else "")
        + f" · engine <code>{escape(settings.engine)}</code>"
        + f" · lake <code>{escape(settings.lake_path)}</code>"
    )
    footer = (
        f"medallion-lakehouse {escape(_package_version())} · a self-contained file: no server, "
        "no network. Regenerate with <code>medallion report</code>."
    )
    page = render_page(sections, title=TITLE, meta=meta, footer=footer, version=_package_version())
    return page, sections


def write_report(
    lake: Lake, *, out: Path | None = None, run_id: str | None = None, keep_copy: bool = True
) -> ReportOutput:
    """Write the report to `out` (default `<reports>/report.html`) plus a timestamped copy."""
    started = time.perf_counter()
    generated_at = datetime.now(UTC)
    page, sections = render(lake, generated_at=generated_at, run_id=run_id)
    target = Path(out) if out is not None else Path(lake.settings.reports_path) / REPORT_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(target, page)
    copy: Path | None = None
    if keep_copy:
        stamp = run_id or f"{generated_at:%Y%m%dT%H%M%SZ}"
        copy = target.with_name(f"{target.stem}-{stamp}{target.suffix}")
        _atomic_write(copy, page)
        prune_copies(target)
    return ReportOutput(
        path=str(target),
        copy=str(copy) if copy else None,
        sections={s.id: s.state for s in sections},
        plots=[p for s in sections for p in s.plots],
        seconds=round(time.perf_counter() - started, 3),
        errors={s.id: _error_text(s.body) for s in sections if s.state == "error"},
    )


def prune_copies(target: Path, keep: int = KEEP_COPIES) -> list[Path]:
    """Delete all but the newest `keep` timestamped copies (names sort by time: run ids do)."""
    copies = sorted(target.parent.glob(f"{target.stem}-*{target.suffix}"))
    doomed = copies[:-keep] if keep > 0 else copies
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def _error_text(body: str) -> str:
    start = body.find("<code>")
    return body[start + 6 : body.find("</code>", start)] if start >= 0 else "error"


def _atomic_write(path: Path, text: str) -> None:
    # A reader (or a browser reload) never sees half a page.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def run(lake: Lake, ctx: StepContext) -> StepResult:
    """The `report` step of `medallion run`: writes the HTML report; fails if a section broke."""
    started = time.perf_counter()
    ctx.report(0, 1, "report")
    # A dated copy only when this run changed a table; report.html is always the latest.
    output = write_report(lake, run_id=ctx.run_id, keep_copy=bool(ctx.tables_written))
    ctx.report(1, 1, "report")
    metrics: dict[str, Any] = {
        "path": output.path,
        "copy": output.copy,
        "sections": output.sections,
        "plots": len(output.plots),
    }
    result = StepResult(step="report", metrics=metrics, seconds=time.perf_counter() - started)
    if output.errors:
        result.status = "failed"
        result.message = "report sections failed: " + "; ".join(
            f"{k}: {v}" for k, v in output.errors.items()
        )
        metrics["errors"] = output.errors
    return result
