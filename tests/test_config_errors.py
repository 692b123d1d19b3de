"""Configuration mistakes are one clear line (ConfigError, exit 2) naming where and what to fix.

A TOML syntax error and a non-JSON MEDALLION_STORAGE_OPTIONS used to print raw tracebacks; an
unknown MEDALLION_* variable was silently ignored (while an unknown TOML key is an error).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medallion_lakehouse.cli.main import app
from medallion_lakehouse.config import (
    OTHER_ENV_VARS,
    known_env_vars,
    load_settings,
    unknown_env_warnings,
)
from medallion_lakehouse.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace with nothing but its landing folder, and no MEDALLION_* variables."""
    for key in list(os.environ):
        if key.upper().startswith("MEDALLION_"):
            monkeypatch.delenv(key)
    workspace = tmp_path / "ws"
    (workspace / "data" / "landing").mkdir(parents=True)
    return workspace


def _toml(ws: Path, text: str) -> Path:
    path = ws / "medallion.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _error(ws: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(ws)
    return str(info.value)


def _cli_error(ws: Path, *args: str) -> str:
    """Run `medallion status` (or args): exit 2 and exactly one line on stderr, no traceback."""
    result = CliRunner().invoke(app, [*(args or ("status",)), "-w", str(ws)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


# -- medallion.toml ------------------------------------------------------------------------------
def test_toml_syntax_error_names_the_file_line_and_column(ws: Path) -> None:
    path = _toml(ws, 'engine = "duckdb"\nlake_dir = \n')
    message = _error(ws)
    assert message.startswith(f"{path}:2:12: invalid TOML (Invalid value)")
    assert 'strings in quotes (engine = "duckdb")' in message
    assert _cli_error(ws) == f"error: {message}"


def test_toml_syntax_error_at_the_end_of_the_file(ws: Path) -> None:
    path = _toml(ws, "[storage_options\n")
    assert _error(ws).startswith(f"{path}:")


def test_toml_that_is_not_utf8_is_a_config_error(ws: Path) -> None:
    path = ws / "medallion.toml"
    path.write_bytes(b'engine = "\xff"\n')
    assert _error(ws).startswith(f"{path}: cannot be read as UTF-8")


def test_toml_wrong_types_name_each_line_key_and_value(ws: Path) -> None:
    path = _toml(
        ws,
        '# settings\nengine = "duckdb"\nchurn_horizon_days = "ninety"\n\n'
        "[storage_options]\nAWS_REGION = 1\n",
    )
    message = _error(ws)
    assert f"{path}:3: churn_horizon_days = 'ninety': Input should be a valid integer" in message
    assert f"{path}:5: storage_options.AWS_REGION = 1: Input should be a valid string" in message
    assert "\n" not in message
    _cli_error(ws)


def test_toml_value_out_of_range(ws: Path) -> None:
    path = _toml(ws, "quarantine_fail_share = 1.5\n")
    assert f"{path}:1: quarantine_fail_share = 1.5: Input should be less than or equal to 1" in (
        _error(ws)
    )


def test_unknown_toml_key_suggests_the_closest_setting(ws: Path) -> None:
    path = _toml(ws, 'engnie = "spark"\n')
    message = _error(ws)
    assert f"{path}:1: unknown setting 'engnie' (did you mean 'engine'?)" in message
    _cli_error(ws)


# -- environment variables -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "value", "example"),
    [
        ("MEDALLION_STORAGE_OPTIONS", "not json", '{"KEY": "value"}'),
        ("MEDALLION_SPARK_CONF", "{'single': 'quotes'}", '{"KEY": "value"}'),
    ],
)
def test_non_json_environment_value_names_the_variable(
    ws: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, example: str
) -> None:
    monkeypatch.setenv(name, value)
    message = _error(ws)
    assert message.startswith(f"{name} is not valid JSON (")
    assert f"e.g. {name}='{example}'" in message
    assert _cli_error(ws) == f"error: {message}"


def test_wrong_type_in_the_environment_names_the_variable(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _toml(ws, "churn_horizon_days = 30\n")  # the variable wins over the file, so it is to blame
    monkeypatch.setenv("MEDALLION_CHURN_HORIZON_DAYS", "ninety")
    message = _error(ws)
    assert message.startswith("Invalid configuration: MEDALLION_CHURN_HORIZON_DAYS: ")
    assert "churn_horizon_days = 'ninety'" in message


def test_wrong_flag_value_names_the_flag(ws: Path) -> None:
    line = _cli_error(ws, "run", "--engine", "nope")
    assert line.startswith("error: Invalid configuration: --engine: engine = 'nope': Input should")


# -- unknown MEDALLION_* variables ---------------------------------------------------------------
def test_unknown_variables_warn_once_each_with_the_closest_name(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDALLION_ENGNIE", "spark")
    monkeypatch.setenv("MEDALLION_LOCK_WAIT_SECOND", "5")
    monkeypatch.setenv("MEDALLION_ZZZ", "1")
    # Known: settings (any case), and the variables the project reads outside Settings.
    monkeypatch.setenv("MEDALLION_ENGINE", "duckdb")
    monkeypatch.setenv("medallion_seed", "7")
    for name in ("MEDALLION_FAULT", "MEDALLION_BIN", "MEDALLION_AIRFLOW_RETRIES"):
        monkeypatch.setenv(name, "")
    result = CliRunner().invoke(app, ["status", "-w", str(ws)])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "warning: MEDALLION_ENGNIE is set but is not a medallion setting: it is ignored "
        "(did you mean MEDALLION_ENGINE?).",
        "warning: MEDALLION_LOCK_WAIT_SECOND is set but is not a medallion setting: it is "
        "ignored (did you mean MEDALLION_LOCK_WAIT_SECONDS?).",
        "warning: MEDALLION_ZZZ is set but is not a medallion setting: it is ignored.",
    ]
    assert load_settings(ws).seed == 7  # the lower-case name is a real setting


def test_no_warning_without_unknown_variables() -> None:
    assert (
        unknown_env_warnings({"MEDALLION_WORKSPACE": "/x", "PATH": "/bin", "MEDALLIONX": ""}) == []
    )


def test_every_medallion_variable_the_code_reads_is_known() -> None:
    """A variable used in src/, bench/, orchestration/, scripts/, tests/ or CI must be allow-listed
    in config.OTHER_ENV_VARS (or be a setting), else every run would warn about it."""
    pattern = re.compile(r"\bMEDALLION_[A-Z0-9_]*[A-Z0-9]\b")
    found: dict[str, str] = {}
    for folder in ("src", "bench", "orchestration", "scripts", "tests", ".ci"):
        for path in (REPO / folder).rglob("*"):
            if not path.is_file() or path.suffix not in ("", ".py", ".sh", ".toml", ".cfg"):
                continue
            if path.name == Path(__file__).name:
                continue  # this file sets unknown names on purpose
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            for name in pattern.findall(text):
                found.setdefault(name, str(path.relative_to(REPO)))
    assert found, "the scan found nothing: wrong folders?"
    unknown = {name: where for name, where in found.items() if name not in known_env_vars()}
    assert unknown == {}, f"add these to config.OTHER_ENV_VARS: {unknown}"
    assert set(found) >= OTHER_ENV_VARS, "allow-listed but used nowhere any more"
