"""HTML composition: sections, figures, tables and the page template (no IO besides package data).

The page is one file: CSS inlined from `style.css`, plots inlined as SVG, no scripts, no fonts or
anything else fetched from the network, so it opens from disk anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from importlib import resources
from string import Template
from typing import Any, Literal

SectionState = Literal["ok", "empty", "error"]
NO_DATA_HINT = "run <code>medallion run</code>"


@dataclass
class Section:
    """One card of the report. `state` drives the table of contents and the JSON summary."""

    id: str  # without the "section-" prefix
    title: str
    lead: str  # one or two sentences: what the reader is looking at and why it matters
    body: str = ""
    state: SectionState = "ok"
    plots: list[str] = field(default_factory=list)  # data-plot ids present in body

    @property
    def anchor(self) -> str:
        return f"section-{self.id}"

    def render(self) -> str:
        return (
            f'<section class="card" id="{self.anchor}" data-state="{self.state}">'
            f"<h2>{escape(self.title)}</h2>"
            f'<p class="lead">{self.lead}</p>'
            f"{self.body}</section>"
        )


def figure(plot_id: str, svg: str, caption: str = "", *, narrow: bool = False) -> str:
    """A plot with its `data-plot` id (what tests and readers look for)."""
    cls = "plot narrow" if narrow else "plot"
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f'<figure class="{cls}" data-plot="{escape(plot_id)}">{svg}{cap}</figure>'


def placeholder(missing: Iterable[str], hint: str = NO_DATA_HINT) -> str:
    """The 'no data yet' box a section shows when its tables have not been written."""
    names = ", ".join(f"<code>{escape(n)}</code>" for n in missing)
    return (
        '<div class="placeholder" data-empty="true"><strong>No data yet</strong>: '
        f"{names} {'has' if names.count('<code>') == 1 else 'have'} not been written. "
        f"To fill this section, {hint}.</div>"
    )


def error_box(exc: BaseException) -> str:
    """Shown instead of a section that raised: the rest of the report still renders."""
    return (
        '<div class="section-error" data-error="true">'
        "<strong>This section failed to render:</strong> "
        f"<code>{escape(type(exc).__name__)}: {escape(str(exc)[:400])}</code></div>"
    )


def badge(text: str, tone: str = "muted") -> str:
    return f'<span class="badge {tone}">{escape(text)}</span>'


def kpis(items: Sequence[tuple[str, str, str]]) -> str:
    """Headline numbers: (label, value, sub-line) cards."""
    cards = "".join(
        f'<div class="kpi"><div class="label">{escape(label)}</div>'
        f'<div class="value">{escape(value)}</div><div class="sub">{escape(sub)}</div></div>'
        for label, value, sub in items
    )
    return f'<div class="kpis">{cards}</div>'


Cell = Callable[[Any], str]


def table(
    rows: Iterable[Sequence[Any]],
    headers: Sequence[str],
    *,
    numeric: Sequence[int] = (),
    raw: Sequence[int] = (),
    row_class: Callable[[Sequence[Any]], str] | None = None,
) -> str:
    """A plain data table; columns in `numeric` are right-aligned, in `raw` not escaped."""

    def cell(i: int, value: Any) -> str:
        if value is None:
            text = "—"
        elif i in raw:
            text = str(value)
        elif isinstance(value, float):
            text = escape(f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}")
        elif isinstance(value, int):
            text = escape(f"{value:,}")
        else:
            text = escape(str(value))
        cls = ' class="num"' if i in numeric else ""
        return f"<td{cls}>{text}</td>"

    head = "".join(
        (f'<th class="num">{escape(h)}</th>' if i in numeric else f"<th>{escape(h)}</th>")
        for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        cls = row_class(row) if row_class else ""
        attr = f' class="{cls}"' if cls else ""
        body.append(f"<tr{attr}>" + "".join(cell(i, v) for i, v in enumerate(row)) + "</tr>")
    return (
        f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def _asset(name: str) -> str:
    return resources.files("medallion_lakehouse.report").joinpath(name).read_text("utf-8")


def render_page(
    sections: Sequence[Section], *, title: str, meta: str, footer: str, version: str
) -> str:
    """The whole HTML document."""
    toc = "\n".join(
        f'<li><a href="#{s.anchor}"><span>{escape(s.title)}</span>'
        f'<span class="state {s.state}" title="{s.state}"></span></a></li>'
        for s in sections
    )
    return Template(_asset("template.html")).substitute(
        title=escape(title),
        meta=meta,
        css=_asset("style.css"),
        toc=toc,
        sections="\n".join(s.render() for s in sections),
        footer=footer,
        version=escape(version),
    )
