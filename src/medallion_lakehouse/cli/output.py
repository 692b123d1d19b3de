"""How the CLI prints: stdout data, stderr messages, tables boxed on a terminal and plain lines
everywhere else, JSON that stays parseable, and values from data shown literally.

Every command prints through these helpers, so that `--quiet`, `--plain` and `--log-format json`
(OutputMode, set by the global options) apply to all of them.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, is_dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.errors import MarkupError
from rich.markup import escape
from rich.text import Text

if TYPE_CHECKING:
    import pyarrow as pa
    from rich.table import Table

console = Console()
err_console = Console(stderr=True)


# -- how output is shaped ---------------------------------------------------------------------
@dataclass
class OutputMode:
    """Set by the global options (`medallion --quiet ...`); read by every printing helper."""

    quiet: bool = False  # errors and the final outcome only
    verbose: bool = False  # progress details, and the traceback of an internal error
    log_json: bool = False  # messages and progress on stderr as JSON lines
    force_plain: bool = False  # line-based output even on a terminal

    @property
    def plain(self) -> bool:
        """No boxes, spinners or colours: stdout is a log file, a pipe or Airflow's task log."""
        return self.force_plain or self.log_json or not console.is_terminal


OUTPUT = OutputMode()


def log(level: str, message: str, **fields: Any) -> None:
    """A message on stderr: `level: message`, or one JSON object with --log-format json."""
    if OUTPUT.log_json:
        record = {"level": level, "message": message, **fields}
        sys.stderr.write(json.dumps(record, default=_default) + "\n")
        sys.stderr.flush()
        return
    colour = {"error": "bold red", "warning": "yellow", "note": "yellow"}.get(level, "")
    line = Text.assemble((f"{level}:", colour), " ", _visible(message))
    err_console.print(line, soft_wrap=True)  # one line, whatever the terminal width


def error_line(message: object) -> None:
    """The one error style of every command: `error: what happened; what to do`."""
    log("error", str(message))


def say(text: Text | str) -> None:
    """A line of normal output (suppressed by --quiet)."""
    if not OUTPUT.quiet:
        console.print(text, soft_wrap=OUTPUT.plain)


def _cell_text(cell: object) -> str:
    if isinstance(cell, Text):
        text = cell.plain
    elif isinstance(cell, str):
        try:
            text = Text.from_markup(cell, emoji=False).plain
        except MarkupError:  # a raw value that looks like markup: shown as it is
            text = cell
    else:
        text = str(cell)
    return text.replace("\n", ", ")


def plain_lines(table: Table) -> list[str]:
    """A Rich table as aligned text lines without boxes, for logs and pipes (nothing wraps)."""
    headers = [_cell_text(c.header) for c in table.columns]
    columns = [[_cell_text(cell) for cell in c.cells] for c in table.columns]
    rows = list(zip(*columns, strict=True)) if columns else []
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    right = [c.justify == "right" for c in table.columns]

    def line(cells: Sequence[str]) -> str:
        padded = (
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)
        )
        return "  ".join(padded).rstrip()

    out = [_cell_text(table.title)] if table.title else []
    out += [line(headers), *(line(r) for r in rows)]
    if table.caption:
        out.append(_cell_text(table.caption))
    return out


def show_table(table: Table, *, to: Console | None = None) -> None:
    """Print a table: boxed on a terminal, aligned plain lines otherwise."""
    if OUTPUT.quiet:
        return
    target = to or console
    if OUTPUT.plain:
        for text in plain_lines(table):
            target.print(Text(text), soft_wrap=True)
    else:
        target.print(table)


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return str(value)


def to_json(data: Any) -> str:
    return json.dumps(data, default=_default, indent=2)


def emit_json(data: Any) -> None:
    """Write JSON to stdout (never through Rich, so it stays parseable)."""
    sys.stdout.write(to_json(data) + "\n")
    sys.stdout.flush()


# -- text from data -------------------------------------------------------------------------
# Values, file names, reasons and messages come from data or the filesystem: Rich must show them
# as typed. A str given to Rich is markup (`[red]`, and `[/]` with nothing open raises) and has
# its emoji codes (`:x:`) replaced; a Text is neither. Terminal control codes (ESC...) are shown
# as escapes so that a value cannot recolour or rewrite the terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _visible(value: object) -> str:
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], str(value))


def plain(value: object, style: str = "") -> Text:
    """A value from data or the filesystem, shown literally (no markup, no emoji codes)."""
    return Text(_visible(value), style=style)


def markup(template: str, *args: object, **kwargs: object) -> Text:
    """Our own markup `template` with its `{}` fields filled literally from data.

    Numbers and dates keep their format specs (`{rows:,}`); anything else is made literal.
    """

    def literal(value: object) -> object:
        if isinstance(value, int | float | Decimal | date):
            return value
        return escape(_visible(value))

    text = template.format(*map(literal, args), **{k: literal(v) for k, v in kwargs.items()})
    return Text.from_markup(text, emoji=False)


def csv_text(data: pa.Table) -> str:
    """The rows as CSV with a header (null as an empty field): data for pipes, not Rich."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(data.column_names)
    for row in data.to_pylist():
        writer.writerow(["" if v is None else v for v in row.values()])
    return buffer.getvalue()
