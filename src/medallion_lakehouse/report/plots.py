"""Small frames -> inline SVG strings (matplotlib, Agg backend; the lineage graph drawn by hand).

Text stays text in the SVG (`svg.fonttype = none`): files are smaller, and the browser renders
labels with the page's font. Every plot is a pure function of its frame.

Every string that came from data (product names, store ids, rules, run ids, file names, model
names) goes through `text()` before matplotlib sees it: matplotlib reads `$...$` as mathtext, and
a product named `$\\frac{1}{$` would otherwise fail the whole plot.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from html import escape
from typing import TYPE_CHECKING, Any, cast

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit; must precede pyplot

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.ticker import FuncFormatter, MaxNLocator

from medallion_lakehouse.report.data import ChurnCurves, lineage_columns, lineage_edges
from medallion_lakehouse.status import TableStatus

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# One palette for the whole report (colour-blind safe, Okabe-Ito based).
INK = "#1f2933"
MUTED = "#7b8794"
GRID = "#e4e7eb"
COLORS = {
    "good": "#2a9d8f",
    "warn": "#e9a23b",
    "bad": "#d1495b",
    "neutral": "#9aa5b1",
    "accent": "#3d5a80",
    "pending": "#e9a23b",
    "cancelled": "#9aa5b1",
    "returned": "#d1495b",
}
# Steps of a run: no red, which the report keeps for failures.
STEP_COLORS = ["#3d5a80", "#2a9d8f", "#e9a23b", "#8e7dbe", "#5fa8d3", "#b5838d", "#6c757d"]
SERIES = ["#3d5a80", "#2a9d8f", "#e9a23b", "#d1495b", "#8e7dbe", "#5fa8d3", "#b5838d", "#6c757d"]
QUALITY_CMAP = LinearSegmentedColormap.from_list(
    "quality", ["#eef6f3", "#fde7c2", "#f4a261", "#d1495b"]
)
LAYER_COLORS = {"bronze": "#b07d48", "silver": "#8d99ae", "gold": "#d4a017", "ml": "#3d5a80"}

_RC: dict[str, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "medallion",  # stable ids: the same data gives the same SVG
    "font.family": "sans-serif",
    "font.sans-serif": ["Inter", "Segoe UI", "Helvetica Neue", "Arial", "DejaVu Sans"],
    "font.size": 10,
    "axes.edgecolor": GRID,
    "axes.labelcolor": INK,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.titlecolor": INK,
    "axes.titlelocation": "left",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": GRID,
    "grid.linewidth": 0.8,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "text.color": INK,
    "legend.frameon": False,
    "legend.fontsize": 9,
    "figure.dpi": 96,
}


LABEL_CHARS = 48  # longer data labels are clipped in plots (tables in the page show them in full)


def text(value: object, limit: int | None = LABEL_CHARS, *, legend: bool = False) -> str:
    """A data-derived string as matplotlib shows it literally: never mathtext, one line.

    `$` is escaped (`\\$` is the only escape matplotlib's plain text knows, so the result reads
    back exactly whether or not a Text parses math); control characters (newlines, tabs, NUL,
    which XML forbids in the SVG) become spaces; past `limit` characters the text is clipped.
    A legend skips labels that start with `_`, so `legend=True` keeps those visible.
    """
    plain = "".join(" " if unicodedata.category(c) == "Cc" else c for c in str(value))
    if limit is not None:
        plain = _clip(plain, limit)
    if legend and plain.startswith("_"):
        plain = " " + plain
    return plain.replace("$", r"\$")


def _style() -> Any:
    """The report's matplotlib style (rcParams are typed as literal keys; ours is a plain dict)."""
    return plt.rc_context(cast(Any, _RC))


@contextmanager
def _figure(
    width: float = 9.0, height: float = 3.6, ncols: int = 1
) -> Iterator[tuple[Figure, list[Axes]]]:
    with _style():
        fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
        try:
            yield fig, list(axes[0])
        finally:
            plt.close(fig)


def to_svg(fig: Figure) -> str:
    """The figure as an `<svg>` element ready to inline (no XML prolog, no fixed pixel size)."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    # Let CSS size it: keep the viewBox, drop the absolute width/height in points.
    return re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r"<svg\1", svg, count=1)


def money(value: float, _pos: object = None) -> str:
    magnitude = abs(value)
    if magnitude >= 1e9:
        return f"{value / 1e9:.1f}B"
    if magnitude >= 1e6:
        return f"{value / 1e6:.1f}M"
    if magnitude >= 1e3:
        return f"{value / 1e3:.0f}k"
    return f"{value:.0f}"


def _count(value: float, _pos: object = None) -> str:
    return f"{value:,.0f}"


def _short_run(run_id: str) -> str:
    # 20261128T044951Z-7c5b54 -> 11-28 04:49:51
    match = re.match(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z", str(run_id))
    if not match:
        return str(run_id)[:16]
    _, mo, d, h, mi, s = match.groups()
    return f"{mo}-{d} {h}:{mi}:{s}"


def _hbar_stack(
    ax: Axes, labels: Sequence[str], parts: Sequence[tuple[str, np.ndarray, str]]
) -> None:
    y = np.arange(len(labels))
    left = np.zeros(len(labels))
    for name, values, color in parts:
        ax.barh(y, values, left=left, color=color, label=text(name, legend=True), height=0.62)
        left = left + values
    ax.set_yticks(y, [text(label) for label in labels])
    ax.invert_yaxis()
    ax.grid(axis="y", visible=False)


# -- lineage graph (hand-drawn SVG) -----------------------------------------------------------
def lineage_svg(statuses: Sequence[TableStatus]) -> str:
    """bronze -> silver -> gold -> ml as boxes with versions and row counts, joined by arrows."""
    by_name = {s.name: s for s in statuses}
    columns = lineage_columns()
    box_w, box_h, col_gap, row_gap, top = 190, 58, 70, 18, 34
    positions: dict[str, tuple[float, float]] = {}
    max_rows = max(len(tables) for _, tables in columns)
    height = top + max_rows * (box_h + row_gap) + 4
    width = len(columns) * box_w + (len(columns) - 1) * col_gap + 4
    parts: list[str] = []
    for col, (layer, tables) in enumerate(columns):
        x = 2 + col * (box_w + col_gap)
        color = LAYER_COLORS[layer]
        parts.append(
            f'<text x="{x + box_w / 2}" y="18" text-anchor="middle" class="lin-layer" '
            f'fill="{color}">{escape(layer.upper())}</text>'
        )
        offset = (max_rows - len(tables)) * (box_h + row_gap) / 2
        for row, name in enumerate(tables):
            y = top + offset + row * (box_h + row_gap)
            positions[name] = (x, y)
            status = by_name.get(name)
            exists = status is not None and status.exists
            detail = (
                f"v{status.version} · {status.rows:,} rows"
                if exists and status is not None and status.rows is not None
                else "not written yet"
            )
            node_class = "lin-node" if exists else "lin-node lin-missing"
            fill = "#ffffff" if exists else "#f5f7fa"
            stroke = (
                f'stroke="{color}" stroke-width="2"'
                if exists
                else f'stroke="{MUTED}" stroke-width="1.2" stroke-dasharray="5 4"'
            )
            parts.append(
                f'<g class="{node_class}" data-table="{escape(name)}">'
                f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="8" '
                f'fill="{fill}" {stroke}/>'
                f'<rect x="{x}" y="{y}" width="6" height="{box_h}" rx="3" fill="{color}"/>'
                f'<text x="{x + 16}" y="{y + 24}" class="lin-name">{escape(name)}</text>'
                f'<text x="{x + 16}" y="{y + 44}" class="lin-detail">{escape(detail)}</text>'
                "</g>"
            )
    edges: list[str] = []
    for source, target in lineage_edges():
        if source not in positions or target not in positions:
            continue
        sx, sy = positions[source]
        tx, ty = positions[target]
        x1, y1 = sx + box_w, sy + box_h / 2
        x2, y2 = tx - 6, ty + box_h / 2
        if sx == tx:  # same column (features -> scores drawn within gold): skip
            continue
        mid = (x1 + x2) / 2
        edges.append(
            f'<path d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}" class="lin-edge" '
            'marker-end="url(#lin-arrow)"/>'
        )
    return (
        f'<svg viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" '
        'role="img" aria-label="Lineage: bronze to silver to gold to ml">'
        '<defs><marker id="lin-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{MUTED}"/>'
        "</marker></defs>" + "".join(edges) + "".join(parts) + "</svg>"
    )


# -- funnel -----------------------------------------------------------------------------------
def funnel_plot(frame: pd.DataFrame) -> str:
    """Per run: bronze records split into silver, superseded, quarantined (+ rejected lines)."""
    labels = [
        f"{_short_run(r)}  ({f} file{'s' if f != 1 else ''})"
        for r, f in zip(frame.run_id, frame.files, strict=True)
    ]
    parts = [
        ("silver (current)", frame.silver.to_numpy(float), COLORS["good"]),
        ("superseded / duplicate", frame.superseded.to_numpy(float), COLORS["neutral"]),
        ("quarantined", frame.quarantined.to_numpy(float), COLORS["bad"]),
        ("not processed yet", frame.not_processed.to_numpy(float), "#cbd2d9"),
        ("rejected lines (unparseable)", frame.rejected_lines.to_numpy(float), "#5c2a35"),
    ]
    parts = [p for p in parts if p[1].sum() > 0]
    with _figure(9.0, 0.9 + 0.42 * len(frame)) as (fig, (ax,)):
        _hbar_stack(ax, labels, parts)
        ax.xaxis.set_major_formatter(FuncFormatter(_count))
        ax.set_xlabel("records")
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=len(parts))
        return to_svg(fig)


def quarantine_plot(frame: pd.DataFrame) -> str:
    """Quarantined rows per rule and reason."""
    # One bar per rule: the reasons are listed in words in the table under the plot.
    per_rule = frame.groupby("rule", as_index=False)["rows"].sum()
    frame = cast(pd.DataFrame, per_rule).sort_values("rows", ascending=False)
    labels = [str(v) for v in frame["rule"]]
    with _figure(9.0, 0.9 + 0.4 * len(frame)) as (fig, (ax,)):
        _hbar_stack(ax, labels, [("rows", frame["rows"].to_numpy(float), COLORS["bad"])])
        for y, value in enumerate(frame["rows"]):
            ax.annotate(f" {value:,}", (value, y), va="center", fontsize=9, color=INK)
        ax.xaxis.set_major_formatter(FuncFormatter(_count))
        ax.set_xlabel("quarantined rows")
        return to_svg(fig)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def quality_plot(frame: pd.DataFrame) -> str:
    """Rules × runs heat map of the failed share, annotated with failed row counts."""
    frame = frame.assign(label=frame["table"].astype(str) + " · " + frame["rule"].astype(str))
    shares = frame.pivot_table(
        index="label", columns="run_id", values="failed_share", aggfunc="max"
    )
    failed = frame.pivot_table(index="label", columns="run_id", values="rows_failed", aggfunc="sum")
    severity = frame.groupby("label")["severity"].first()
    rows, cols = shares.shape
    with _figure(10.0, 1.2 + 0.3 * rows) as (fig, (ax,)):
        # Long rule labels: give them a fixed share of a page-wide figure so text stays legible.
        fig.subplots_adjust(left=0.45, right=0.99)
        data = shares.to_numpy(float)
        ax.imshow(
            np.nan_to_num(data),
            aspect="auto",
            cmap=QUALITY_CMAP,
            vmin=0.0,
            vmax=max(0.05, float(np.nanmax(data)) if data.size else 0.05),
        )
        for i in range(rows):
            for j in range(cols):
                value: Any = failed.iat[i, j]
                if pd.notna(value):
                    ax.text(
                        j,
                        i,
                        f"{int(value):,}",
                        ha="center",
                        va="center",
                        fontsize=9,
                        color=INK if value else MUTED,
                        fontweight="bold" if value else "normal",
                    )
        # White gaps between cells read as a table rather than a smear of colour.
        ax.set_xticks(np.arange(cols + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(rows + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="white", linewidth=2)
        ax.tick_params(which="minor", length=0)
        ax.set_xticks(
            range(cols), [text(_short_run(c)) for c in shares.columns], rotation=30, ha="right"
        )
        ax.set_yticks(range(rows), [text(f"{lab}  [{severity[lab]}]", 90) for lab in shares.index])
        ax.grid(which="major", visible=False)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_title("rows failed per rule and run (colour: share of rows checked)")
        return to_svg(fig)


def daily_revenue_plot(frame: pd.DataFrame) -> str:
    """Completed revenue per day (and its 7-day mean) above pending/cancelled/returned amounts."""
    others = [c for c in ("pending", "cancelled", "returned") if c in frame.columns]
    dates = pd.to_datetime(frame["sale_date"])
    with _style():
        fig, axes = plt.subplots(
            2 if others else 1,
            1,
            figsize=(9.5, 5.2 if others else 3.4),
            sharex=True,
            squeeze=False,
            gridspec_kw={"height_ratios": [3, 2] if others else [1]},
        )
        try:
            top = axes[0][0]
            top.plot(
                dates,
                frame["revenue"],
                color=COLORS["accent"],
                linewidth=0.8,
                alpha=0.45,
                label="completed revenue",
            )
            top.plot(
                dates,
                frame["revenue"].rolling(7, min_periods=1).mean(),
                color=COLORS["accent"],
                linewidth=2.0,
                label="7-day mean",
            )
            top.yaxis.set_major_formatter(FuncFormatter(money))
            top.set_title("completed revenue per day")
            top.legend(loc="upper left", ncols=2)
            if others:
                bottom = axes[1][0]
                bottom.stackplot(
                    dates,
                    *[frame[c].fillna(0) for c in others],
                    labels=others,
                    colors=[COLORS[c] for c in others],
                    alpha=0.85,
                )
                bottom.yaxis.set_major_formatter(FuncFormatter(money))
                bottom.set_title("pending, cancelled and returned amounts")
                bottom.legend(loc="upper left", ncols=len(others))
            fig.autofmt_xdate()
            return to_svg(fig)
        finally:
            plt.close(fig)


def product_plot(frame: pd.DataFrame, *, top: int = 15) -> str:
    """Revenue per product, largest first."""
    frame = frame.head(top)
    with _figure(9.0, 0.8 + 0.36 * len(frame)) as (fig, (ax,)):
        _hbar_stack(
            ax,
            frame["product"].astype(str).tolist(),
            [("revenue", frame["revenue"].to_numpy(float), COLORS["accent"])],
        )
        for y, value in enumerate(frame["revenue"]):
            ax.annotate(f" {money(value)}", (value, y), va="center", fontsize=9)
        ax.xaxis.set_major_formatter(FuncFormatter(money))
        ax.set_xlabel("completed revenue")
        return to_svg(fig)


def store_plot(frame: pd.DataFrame) -> str:
    """Top and bottom stores by revenue, side by side."""
    groups = [(g, frame[frame.rank_group == g]) for g in ("top", "bottom")]
    groups = [(g, f) for g, f in groups if not f.empty]
    n = max(len(f) for _, f in groups)
    with _figure(9.5, 0.9 + 0.34 * n, ncols=len(groups)) as (fig, axes):
        for ax, (group, part) in zip(axes, groups, strict=True):
            color = COLORS["good"] if group == "top" else COLORS["warn"]
            _hbar_stack(
                ax,
                part["store_id"].astype(str).tolist(),
                [(group, part["revenue"].to_numpy(float), color)],
            )
            ax.xaxis.set_major_formatter(FuncFormatter(money))
            ax.set_title(f"{group} {len(part)} stores")
        fig.tight_layout()
        return to_svg(fig)


def late_plot(frame: pd.DataFrame) -> str:
    """Silver rows per batch: on time vs late-arriving."""
    labels = [
        f"{_clip(str(f).rsplit('/', 1)[-1], 28)}" if "source_file" in frame.columns else str(b)[:10]
        for f, b in zip(
            frame.get("source_file", frame["_batch_id"]), frame["_batch_id"], strict=True
        )
    ]
    with _figure(9.0, 0.9 + 0.36 * len(frame)) as (fig, (ax,)):
        _hbar_stack(
            ax,
            labels,
            [
                ("on time", frame["on_time"].to_numpy(float), COLORS["neutral"]),
                ("late (is_late)", frame["late"].to_numpy(float), COLORS["warn"]),
            ],
        )
        total = (frame["on_time"] + frame["late"]).to_numpy(float)
        for y, (late, rows) in enumerate(zip(frame["late"], total, strict=True)):
            if late:
                ax.annotate(
                    f" {late:,} late ({late / rows:.0%})", (rows, y), va="center", fontsize=9
                )
        ax.xaxis.set_major_formatter(FuncFormatter(_count))
        ax.set_xlabel("silver rows, by the batch that delivered them (oldest at the top)")
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2)
        return to_svg(fig)


def durations_plot(frame: pd.DataFrame) -> str:
    """Seconds per step of recent runs, stacked; failed steps outlined in red."""
    order = ["bronze", "silver", "gold", "ml", "report"]
    steps = sorted(frame["step"].unique(), key=lambda s: (order.index(s) if s in order else 99, s))
    runs = sorted(frame["run_id"].unique())
    pivot = (
        frame.pivot_table(index="run_id", columns="step", values="seconds", aggfunc="sum")
        .reindex(index=runs, columns=steps)
        .fillna(0.0)
    )
    failed = set(
        zip(
            frame.loc[frame.status == "failed", "run_id"],
            frame.loc[frame.status == "failed", "step"],
            strict=True,
        )
    )
    with _figure(9.0, 0.9 + 0.4 * len(runs)) as (fig, (ax,)):
        y = np.arange(len(runs))
        left = np.zeros(len(runs))
        for k, step in enumerate(steps):
            values = pivot[step].to_numpy(float)
            bars = ax.barh(
                y,
                values,
                left=left,
                color=STEP_COLORS[k % len(STEP_COLORS)],
                label=text(step, legend=True),
                height=0.62,
            )
            for bar, run in zip(bars, runs, strict=True):
                if (run, step) in failed:
                    bar.set_edgecolor(COLORS["bad"])
                    bar.set_linewidth(2.0)
                    bar.set_hatch("///")
            left = left + values
        for i, total in enumerate(left):
            ax.annotate(f" {total:.1f} s", (total, i), va="center", fontsize=9)
        ax.set_yticks(y, [text(_short_run(r)) for r in runs])
        ax.invert_yaxis()
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("seconds")
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=len(steps))
        return to_svg(fig)


def curve_plot(curves: ChurnCurves, kind: str) -> str:
    """ROC (`kind="roc"`) or precision-recall curves of model and baseline, with chance level."""
    series = curves.roc if kind == "roc" else curves.pr
    with _figure(4.6, 4.2) as (fig, (ax,)):
        for k, curve in enumerate(series):
            name = text(curve.name, legend=True)
            label = (
                name
                if curve.area is None
                else f"{name} ({'AUC' if kind == 'roc' else 'AP'} {curve.area:.3f})"
            )
            ax.plot(
                curve.x,
                curve.y,
                color=SERIES[k % len(SERIES)],
                linewidth=2.0,
                label=label,
                drawstyle="default",
            )
        if kind == "roc":
            ax.plot(
                [0, 1], [0, 1], linestyle="--", color=MUTED, linewidth=1.0, label="chance (AUC 0.5)"
            )
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
            ax.set_title("ROC curve")
        else:
            if curves.prevalence is not None:
                ax.axhline(
                    curves.prevalence,
                    linestyle="--",
                    color=MUTED,
                    linewidth=1.0,
                    label=f"chance (churn rate {curves.prevalence:.2f})",
                )
            ax.set_xlabel("recall")
            ax.set_ylabel("precision")
            ax.set_title("precision-recall curve")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower right" if kind == "roc" else "lower left")
        return to_svg(fig)


def bar_plot(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    xlabel: str,
    color: str = COLORS["accent"],
    annotate: str = "{:,.0f}",
) -> str:
    """A plain horizontal bar chart, sized to sit in half the page width (exploration panels)."""
    with _figure(5.0, 0.9 + 0.3 * len(labels)) as (fig, (ax,)):
        _hbar_stack(ax, [str(v) for v in labels], [("", np.asarray(values, dtype=float), color)])
        for y, value in enumerate(values):
            ax.annotate(" " + annotate.format(value), (value, y), va="center", fontsize=9)
        top = max([float(v) for v in values] or [0.0])
        ax.set_xlim(0, top * 1.15 if top > 0 else 1)  # room for the labels; no negative axis
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        ax.xaxis.set_major_formatter(FuncFormatter(_count))
        ax.set_xlabel(xlabel)
        return to_svg(fig)


def buckets_plot(labels: Sequence[str], counts: Sequence[float], *, xlabel: str) -> str:
    """A histogram over precomputed, labelled buckets (vertical bars)."""
    with _figure(9.0, 2.9) as (fig, (ax,)):
        x = np.arange(len(labels))
        ax.bar(x, np.asarray(counts, dtype=float), color=COLORS["good"], width=0.8)
        for xi, value in zip(x, counts, strict=True):
            if value:
                ax.annotate(
                    f"{value:,.0f}", (xi, value), ha="center", va="bottom", fontsize=9, color=INK
                )
        ax.set_xticks(x, [text(v) for v in labels], rotation=20, ha="right", fontsize=9)
        ax.yaxis.set_major_formatter(FuncFormatter(_count))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("sales")
        ax.grid(axis="x", visible=False)
        return to_svg(fig)
