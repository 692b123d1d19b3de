"""The Typer application and the options every command shares.

Commands live in one module per topic (`cli/<topic>.py`), each decorating this `app`;
`cli/main.py` imports them all. Printing goes through `cli/output.py`; this module holds the
group that turns every ending into one line and an exit code, the global options, and the
options and writing session every command shares.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer import _click as click  # Typer 0.29 vendors click: its exceptions reach us
from typer.core import TyperGroup

from medallion_lakehouse import __version__
from medallion_lakehouse.cli.args import check_workspace
from medallion_lakehouse.cli.output import (  # re-exported: commands import them from here
    OUTPUT,
    console,
    emit_json,
    err_console,
    error_line,
    log,
    markup,
    plain,
    plain_lines,
    say,
    show_table,
    to_json,
)
from medallion_lakehouse.config import Settings, load_settings, unknown_env_warnings
from medallion_lakehouse.errors import ConfigError, MedallionError

__all__ = [
    "OUTPUT",
    "app",
    "console",
    "emit_json",
    "err_console",
    "error_line",
    "handle_errors",
    "log",
    "markup",
    "plain",
    "plain_lines",
    "say",
    "settings_from",
    "show_table",
    "to_json",
    "write_step",
]


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
