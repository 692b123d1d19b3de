"""The report's raw-data exploration panel: draws what `bronze.profile.explore_file` computes.

The profile is of the newest landing file (landing files are never modified, so it is the raw
data exactly as the last batch arrived), computed by the same function as `medallion explore`.
"""

from __future__ import annotations

from datetime import date
from html import escape
from pathlib import Path

from medallion_lakehouse.bronze.ingest import discover
from medallion_lakehouse.bronze.profile import ExploreResult, explore_file
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.report import plots
from medallion_lakehouse.report.html import figure, kpis, table


def newest_landing_file(lake: Lake) -> Path | None:
    """The last landing file in arrival (name) order, or None."""
    files = discover(Path(lake.settings.landing_path))
    return files[-1] if files else None


def exploration_body(lake: Lake) -> tuple[str | None, list[str]]:
    """HTML of the exploration panel and its plot ids, or (None, []) without raw data."""
    path = newest_landing_file(lake)
    if path is None:
        return None, []
    return render_exploration(explore_file(path), Path(lake.settings.landing_path))


def render_exploration(result: ExploreResult, landing: Path) -> tuple[str, list[str]]:
    """The panel for one profiled file."""
    try:
        name = Path(result.path).relative_to(landing).as_posix()
    except ValueError:
        name = Path(result.path).name
    if result.sale_date_min and result.sale_date_max:
        span = date.fromisoformat(result.sale_date_max) - date.fromisoformat(result.sale_date_min)
        dates = f"{span.days + 1:,} days"
        dates_sub = f"{result.sale_date_min} → {result.sale_date_max}"
    else:
        dates, dates_sub = "—", "no parseable date"
    cards = kpis(
        [
            ("file", name, f"{result.format}, {result.size_bytes / 1e6:,.1f} MB"),
            ("rows", f"{result.rows:,}", f"{len(result.columns)} columns"),
            ("rejected lines", f"{result.rejected_lines:,}", "bronze keeps them as rejects"),
            ("sale dates", dates, dates_sub),
            ("unparseable dates", f"{result.unparseable_dates:,}", "not a real YYYY-MM-DD"),
            ("totals with float noise", f"{result.totals.float_noise:,}", "more than 2 decimals"),
        ]
    )
    body = [f"<p>Profile of <code>{escape(name)}</code>, the newest landing file.</p>", cards]
    plot_ids: list[str] = []

    with_missing = [p for p in result.column_profiles if p.nulls or p.blank]
    profiles = with_missing or result.column_profiles
    nulls_caption = (
        "Empty or blank values per column (columns without any are left out)."
        if with_missing
        else "No column has an empty or blank value in this file."
    )
    missing = [p.nulls + p.blank for p in profiles]
    body.append('<div class="grid-2">')
    body.append(
        figure(
            "explore-nulls",
            plots.bar_plot(
                [p.name for p in profiles],
                missing,
                xlabel="empty or blank values",
                color=plots.COLORS["warn"],
            ),
            nulls_caption,
        )
    )
    plot_ids.append("explore-nulls")
    if result.store_shapes:
        shapes = sorted(result.store_shapes.items(), key=lambda kv: -kv[1])
        body.append(
            figure(
                "explore-store-shapes",
                plots.bar_plot(
                    [k for k, _ in shapes],
                    [v for _, v in shapes],
                    xlabel="store ids",
                    color=plots.COLORS["accent"],
                ),
                "The shapes store ids arrive in; silver makes them all <code>NW-###</code>.",
            )
        )
        plot_ids.append("explore-store-shapes")
    body.append("</div>")
    if result.totals.count:
        labels = [label for label, _ in result.totals.histogram]
        counts = [count for _, count in result.totals.histogram]
        q = result.totals.quantiles
        caption = (
            f"{result.totals.count:,} parseable totals, {result.totals.unparseable:,} not numbers; "
            + ", ".join(f"{k} {v:,.2f}" for k, v in q.items())
        )
        body.append(
            figure(
                "explore-totals",
                plots.buckets_plot(labels, counts, xlabel="total per sale"),
                escape(caption),
            )
        )
        plot_ids.append("explore-totals")
    tops = [p for p in result.column_profiles if p.top]
    if tops:
        body.append('<h3>Most common values</h3><div class="grid-2">')
        for profile in tops:
            body.append(
                f"<div><b>{escape(profile.name)}</b> "
                f"({profile.distinct:,} distinct)"
                + table(profile.top, ["value", "rows"], numeric=(1,))
                + "</div>"
            )
        body.append("</div>")
    return "".join(body), plot_ids
