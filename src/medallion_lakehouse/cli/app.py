"""The Typer application and the options every command shares.

Commands live in one module per topic (`cli/<topic>.py`), each decorating this `app`;
`cli/main.py` imports them all. Output goes through `emit` so that `--json` works everywhere.
"""

from __future__ import annotations

import json
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, is_dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.errors import MarkupError
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer import _click as click  # Typer 0.29 vendors click: its exceptions reach us
from typer.core import TyperGroup

from medallion_lakehouse import __version__
from medallion_lakehouse.cli.args import check_workspace
from medallion_lakehouse.config import Settings, load_settings, unknown_env_warnings
from medallion_lakehouse.errors import ConfigError, MedallionError

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


# -- the command group: one error style, no tracebacks ----------------------------------------
class MedallionGroup(TyperGroup):
    """Every way a command can end, turned into one line on stderr and a documented exit code.

    Usage mistakes (click's), project errors (MedallionError), Ctrl-C (130) and bugs (1, with the
    traceback only under --verbose) all print `error: ...`; Typer's boxes never appear.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            error_line("interrupted (Ctrl-C): nothing more was committed; run it again to finish.")
            raise typer.Exit(130) from None
        except MedallionError as exc:
            error_line(exc)
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:  # a bug: still one line, the traceback on request
            if OUTPUT.verbose:
                traceback.print_exc()
            error_line(
                f"internal error: {type(exc).__name__}: {exc} (a bug; `medallion --verbose ...` "
                "prints the traceback)"
            )
            raise typer.Exit(1) from None

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            console.print(exc.ctx.get_help() if exc.ctx else "")
            sys.exit(0)
        except click.ClickException as exc:
            error_line(usage_message(exc))
            sys.exit(exc.exit_code)
        except typer.Abort:
            error_line("aborted.")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def usage_message(exc: click.ClickException) -> str:
    """click's message as one sentence, with the command whose --help explains it."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        return f"{message} (see `{ctx.command_path} --help`)"
    return message


app = typer.Typer(
    name="medallion",  # its help is the callback's docstring (with the exit codes)
    cls=MedallionGroup,
    rich_markup_mode=None,  # plain click help: no boxes, text rewrapped to the terminal
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


class LogFormat(StrEnum):
    text = "text"
    json = "json"


def _version(value: bool) -> None:
    if value:
        console.print(f"medallion {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print errors and the final outcome only.")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", help="Print progress details and the traceback of a bug."),
    ] = False,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            "--log-format", help="Messages and progress on stderr as text lines or JSON lines."
        ),
    ] = LogFormat.text,
    plain_output: Annotated[
        bool,
        typer.Option(
            "--plain",
            help="Line-based output without boxes or spinners (the default when stdout is not "
            "a terminal).",
        ),
    ] = False,
) -> None:
    """A Medallion (bronze -> silver -> gold) lakehouse for retail sales on Delta Lake.

    Exit codes: 0 ok; 1 a step or check failed; 2 usage or configuration; 3 a quality gate or
    `quality --fail-on` tripped; 4 too little data for a model (`train`); 75 the lake is busy;
    130 interrupted (Ctrl-C).
    """
    OUTPUT.quiet, OUTPUT.verbose = quiet, verbose
    OUTPUT.log_json, OUTPUT.force_plain = log_format is LogFormat.json, plain_output


# Shared option types -------------------------------------------------------------------
WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace folder (default: $MEDALLION_WORKSPACE or the current folder).",
        show_default=False,
    ),
]
EngineOpt = Annotated[
    str | None,
    typer.Option("--engine", "-e", help="Compute engine: duckdb (default) or spark."),
]
SparkMasterOpt = Annotated[
    str | None,
    typer.Option("--spark-master", help="spark.master, e.g. local[2] or spark://h:7077."),
]
SparkConfOpt = Annotated[
    list[str] | None,
    typer.Option("--spark-conf", help="Extra Spark setting KEY=VALUE (repeatable)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
WaitOpt = Annotated[
    float | None,
    typer.Option(
        "--wait",
        min=0,
        help="Wait up to SECONDS (>= 0) for another writer to release the lake lock (else "
        "exit 75).",
    ),
]


def settings_from(
    workspace: Path | None,
    engine: str | None = None,
    spark_master: str | None = None,
    spark_conf: list[str] | None = None,
    *,
    require_workspace: bool = True,
    **overrides: Any,
) -> Settings:
    """Settings for a command: flags override env, env overrides medallion.toml.

    A workspace that does not exist, or holds neither medallion.toml, a lake nor a landing
    folder, is refused (a typo in `-w` must not create an empty lake and report success);
    commands that create one (`init`, `run --init`, `generate`, `demo`) pass
    `require_workspace=False`.
    """
    for warning in unknown_env_warnings():
        log("warning", warning)
    conf: dict[str, str] | None = None
    if spark_conf:
        conf = {}
        for item in spark_conf:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"--spark-conf expects KEY=VALUE, got {item!r}.")
            conf[key.strip()] = value.strip()
    settings = load_settings(
        workspace, engine=engine, spark_master=spark_master, spark_conf=conf, **overrides
    )
    if require_workspace:
        check_workspace(settings)
    return settings


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


@contextmanager
def handle_errors() -> Iterator[None]:
    """Turn project errors into a one-line message and the error's exit code."""
    try:
        yield
    except MedallionError as exc:
        error_line(exc)
        raise typer.Exit(exc.exit_code) from None


def write_step(
    settings: Settings,
    name: str,
    fn: Callable[[Any, Any], Any],
    *,
    command: str,
    wait: float | None,
    **run_options: Any,
) -> Any:
    """Run one step through the writing session (lock, run id, `_meta/runs` row) and return its
    StepResult; a failed step prints its error and exits with its code."""
    from medallion_lakehouse.pipeline.runner import run_pipeline

    report = run_pipeline(
        settings, steps=[name], registry={name: fn}, wait_seconds=wait, command=command,
        **run_options,
    )  # fmt: skip
    if report.lock_note:
        log("note", report.lock_note)
    if report.interrupted_step is not None:
        error_line(report.error)
        raise typer.Exit(report.exit_code)
    if report.failed_step is not None:
        error_line(report.error)
        raise typer.Exit(report.exit_code)
    return report.steps[0]


F = TypeVar("F", bound=Callable[..., Any])
