"""The Typer application and the options every command shares.

Commands live in one module per topic (`cli/<topic>.py`), each decorating this `app`;
`cli/main.py` imports them all. Output goes through `emit` so that `--json` works everywhere.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from medallion_lakehouse.config import Settings, load_settings, unknown_env_warnings
from medallion_lakehouse.errors import MedallionError

app = typer.Typer(
    name="medallion",
    help="A Medallion (bronze -> silver -> gold) lakehouse for retail sales on Delta Lake.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

console = Console()
err_console = Console(stderr=True)

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
        help="Wait up to SECONDS for another writer to release the lake lock (else exit 75).",
    ),
]


def settings_from(
    workspace: Path | None,
    engine: str | None = None,
    spark_master: str | None = None,
    spark_conf: list[str] | None = None,
    **overrides: Any,
) -> Settings:
    """Settings for a command: flags override env, env overrides medallion.toml."""
    for warning in unknown_env_warnings():
        err_console.print(markup("[yellow]warning:[/] {}", warning), soft_wrap=True)
    conf: dict[str, str] | None = None
    if spark_conf:
        conf = {}
        for item in spark_conf:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise typer.BadParameter(f"--spark-conf expects KEY=VALUE, got {item!r}")
            conf[key.strip()] = value.strip()
    return load_settings(
        workspace, engine=engine, spark_master=spark_master, spark_conf=conf, **overrides
    )


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
        err_console.print(markup("[bold red]error:[/] {}", exc), soft_wrap=True)  # one line
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
        err_console.print(f"[yellow]note:[/] {report.lock_note}")
    if report.failed_step is not None:
        err_console.print(f"[bold red]error:[/] {report.error}")
        raise typer.Exit(report.exit_code)
    return report.steps[0]


F = TypeVar("F", bound=Callable[..., Any])
