"""ibis loads on first use: a command that builds no expression never pays for importing it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medallion_lakehouse.cli.main import app
from medallion_lakehouse.lazy_imports import deferred
from tests.conftest import land

# Runs the CLI in a fresh interpreter, then says whether ibis (and pandas, for the record) ran.
_PROBE = (
    "import sys\n"
    "from medallion_lakehouse.cli.main import app\n"
    "from medallion_lakehouse.lazy_imports import is_loaded\n"
    "try:\n"
    "    app(sys.argv[1:], prog_name='medallion')\n"
    "except SystemExit as exc:\n"
    "    assert not exc.code, exc.code\n"
    "print('ibis loaded' if is_loaded('ibis') else 'ibis not loaded', file=sys.stderr)\n"
)


def _ibis_state(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, check=True
    )
    return done.stderr.strip().splitlines()[-1]


def test_version_and_help_do_not_load_ibis() -> None:
    assert _ibis_state("--version") == "ibis not loaded"
    assert _ibis_state("run", "--help") == "ibis not loaded"


@pytest.mark.slow
def test_rerun_with_nothing_new_does_not_load_ibis(
    workspace: Path, seed_dir: Path, cli: CliRunner
) -> None:
    land(workspace, seed_dir / "raw_sales.csv")
    steps = ("run", "-w", str(workspace), "--steps", "bronze,silver,gold")
    first = cli.invoke(app, list(steps))
    assert first.exit_code == 0, first.output
    assert _ibis_state(*steps) == "ibis not loaded"
    # The probe itself can see ibis load: new data makes silver build its expressions.
    land(workspace, seed_dir / "late_sales.csv")
    assert _ibis_state(*steps) == "ibis loaded"


def test_a_deferred_module_runs_on_first_read(tmp_path: Path) -> None:
    (tmp_path / "noisy.py").write_text("import sys\nsys.stderr.write('ran\\n')\nVALUE = 7\n")
    code = (
        "import sys\n"
        "from medallion_lakehouse.lazy_imports import deferred, is_loaded\n"
        "mod = deferred('noisy')\n"
        "sys.stderr.write(f'deferred {is_loaded(\"noisy\")}\\n')\n"
        "assert deferred('noisy') is mod and sys.modules['noisy'] is mod\n"
        "sys.stderr.write(f'value {mod.VALUE} {is_loaded(\"noisy\")}\\n')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.stderr.splitlines() == ["deferred False", "ran", "value 7 True"]


def test_a_loaded_module_is_returned_and_a_missing_one_raises() -> None:
    assert deferred("json") is sys.modules["json"]
    with pytest.raises(ModuleNotFoundError, match="no_such_module_here"):
        deferred("no_such_module_here")
