"""Every command with values that make no sense: a one-line `error:` and its exit code, never a
traceback, never a silent success, and nothing created on disk by a mistyped workspace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medallion_lakehouse.cli.main import app


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("MEDALLION_") and key != "MEDALLION_SEED_DATA":
            monkeypatch.delenv(key)


# (id, arguments after the command's workspace, expected exit code). "{ws}" is a workspace with
# a landing folder and no lake; "{missing}" a folder that does not exist.
CASES: list[tuple[str, list[str], int]] = [
    ("run-missing-workspace", ["run", "-w", "{missing}"], 2),
    ("run-reversed-range", ["run", "-w", "{ws}", "--from", "2026-03-31", "--to", "2026-01-01"], 2),
    (
        "run-range-without-silver-gold",
        ["run", "-w", "{ws}", "--steps", "bronze", "--from", "2026-01-01"],
        2,
    ),
    (
        "run-full-refresh-and-range",
        ["run", "-w", "{ws}", "--full-refresh", "--to", "2026-01-01"],
        2,
    ),
    (
        "run-full-refresh-bronze-only",
        ["run", "-w", "{ws}", "--steps", "bronze", "--full-refresh"],
        2,
    ),
    ("run-negative-wait", ["run", "-w", "{ws}", "--wait", "-5"], 2),
    ("run-bad-date", ["run", "-w", "{ws}", "--from", "31/03/2026"], 2),
    ("run-unknown-step", ["run", "-w", "{ws}", "--steps", "bronze,nope"], 2),
    ("run-unknown-option", ["run", "-w", "{ws}", "--nope"], 2),
    ("ingest-missing-landing", ["ingest", "-w", "{ws}", "--landing", "{missing}"], 2),
    ("ingest-negative-wait", ["ingest", "-w", "{ws}", "--wait", "-1"], 2),
    ("status-missing-workspace", ["status", "-w", "{missing}"], 2),
    ("rules-missing-workspace", ["rules", "-w", "{missing}"], 2),
    ("status-empty-folder", ["status", "-w", "{empty}"], 2),
    ("show-unknown-table", ["show", "nope/x", "-w", "{ws}"], 2),
    ("show-unwritten-table", ["show", "silver/sales", "-w", "{ws}"], 2),
    ("show-negative-version", ["show", "silver/sales", "-w", "{ws}", "--version", "-1"], 2),
    ("show-negative-limit", ["show", "silver/sales", "-w", "{ws}", "--limit", "-1"], 2),
    ("show-bad-format", ["show", "silver/sales", "-w", "{ws}", "--format", "xml"], 2),
    ("history-zero", ["history", "silver/sales", "-w", "{ws}", "-n", "0"], 2),
    ("history-negative", ["history", "silver/sales", "-w", "{ws}", "-n", "-3"], 2),
    ("history-unknown-table", ["history", "nope", "-w", "{ws}"], 2),
    (
        "silver-reversed-range",
        ["silver", "-w", "{ws}", "--from", "2026-02-01", "--to", "2026-01-01"],
        2,
    ),
    ("silver-bad-date", ["silver", "-w", "{ws}", "--to", "tomorrow"], 2),
    ("audit-missing-workspace", ["audit", "-w", "{missing}"], 2),
    ("quality-bad-fail-on", ["quality", "-w", "{ws}", "--fail-on", "sometimes"], 2),
    ("quality-no-results", ["quality", "-w", "{ws}"], 1),
    ("held-two-decisions", ["held", "-w", "{ws}", "--accept", "a", "--drop", "b"], 2),
    ("train-zero-horizon", ["train", "-w", "{ws}", "--horizon", "0"], 2),
    ("train-bad-as-of", ["train", "-w", "{ws}", "--as-of", "2026-13-01"], 2),
    ("score-bad-as-of", ["score", "-w", "{ws}", "--as-of", "soon"], 2),
    ("report-missing-workspace", ["report", "-w", "{missing}"], 2),
    ("optimize-negative-retention", ["optimize", "-w", "{ws}", "--retention-hours", "-1"], 2),
    ("optimize-short-retention-dry-run", ["optimize", "-w", "{ws}", "--retention-hours", "0"], 2),
    ("optimize-unknown-table", ["optimize", "-w", "{ws}", "-t", "nope/x"], 2),
    ("restore-without-version", ["restore", "silver/sales", "-w", "{ws}"], 2),
    ("restore-negative-version", ["restore", "silver/sales", "-w", "{ws}", "--version", "-1"], 2),
    ("restore-unwritten-table", ["restore", "silver/sales", "-w", "{ws}", "--version", "0"], 2),
    ("demo-zero-rows", ["demo", "-w", "{ws}", "--rows", "0"], 2),
    ("generate-bad-format", ["generate", "-w", "{ws}", "--format", "xml"], 2),
    ("generate-bad-rows", ["generate", "-w", "{ws}", "--rows", "0"], 2),
    ("explore-missing-file", ["explore", "{missing}"], 2),
    ("unlock-missing-workspace", ["unlock", "-w", "{missing}"], 2),
    ("runs-zero", ["runs", "-w", "{ws}", "-n", "0"], 2),
    ("runs-unknown-run", ["runs", "nope-run", "-w", "{ws}"], 2),
    ("config-bad-engine", ["config", "-w", "{ws}", "--engine", "pandas"], 2),
    ("init-under-a-file", ["init", "-w", "{file}/ws"], 2),
    ("sql-bad-query", ["sql", "-w", "{ws}", "SELEC 1"], 2),
    ("trace-bad-line", ["trace", "-w", "{ws}", "--file", "x.csv", "--line", "-1"], 2),
    ("plan-missing-workspace", ["plan", "-w", "{missing}"], 2),
    ("verify-missing-workspace", ["verify", "-w", "{missing}"], 2),
    ("global-bad-log-format", ["--log-format", "xml", "status"], 2),
    ("unknown-command", ["nope"], 2),
]


@pytest.mark.parametrize(("args", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_values_end_in_one_error_line(tmp_path: Path, args: list[str], code: int) -> None:
    ws = tmp_path / "ws"
    (ws / "data" / "landing").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    (tmp_path / "a-file").write_text("x")
    places = {
        "{ws}": str(ws),
        "{missing}": str(tmp_path / "missing"),
        "{empty}": str(tmp_path / "empty"),
        "{file}": str(tmp_path / "a-file"),
    }
    argv = [
        a.replace("{file}", places["{file}"]) if "{file}" in a else places.get(a, a) for a in args
    ]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    assert "internal error" not in lines[0]
    # A mistyped workspace creates nothing: no lake, no report, no folder.
    assert not (tmp_path / "missing").exists()
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == []


def test_every_command_is_covered() -> None:
    import typer

    root = typer.main.get_command(app)
    covered = {c[1][0] for c in CASES} | {a for c in CASES for a in c[1][:1]}
    missing = set(root.commands) - covered  # type: ignore[attr-defined]
    assert not missing, f"commands without a bad-value case: {sorted(missing)}"


def test_every_command_help_lists_its_exit_codes() -> None:
    import typer

    root = typer.main.get_command(app)
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        text = f"{command.help or ''} {command.epilog or ''}"
        assert "Exit codes:" in text, name


def test_version_and_no_arguments(cli: CliRunner) -> None:
    from medallion_lakehouse import __version__

    result = cli.invoke(app, ["--version"])
    assert (result.exit_code, result.stdout.strip()) == (0, f"medallion {__version__}")
    result = cli.invoke(app, [])
    assert result.exit_code == 0 and "Usage: medallion" in result.stdout


def test_a_bug_is_one_line_and_the_traceback_only_with_verbose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medallion_lakehouse.cli import tables

    def broken(*_: object) -> list[object]:
        raise OverflowError("can't convert negative int to unsigned")

    monkeypatch.setattr(tables, "lake_status", broken)
    ws = tmp_path / "ws"
    (ws / "data" / "landing").mkdir(parents=True)
    result = CliRunner().invoke(app, ["status", "-w", str(ws)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: internal error: OverflowError: can't convert negative int to unsigned (a bug; "
        "`medallion --verbose ...` prints the traceback)"
    ]
    verbose = CliRunner().invoke(app, ["--verbose", "status", "-w", str(ws)])
    assert verbose.exit_code == 1 and "Traceback" in verbose.stderr
