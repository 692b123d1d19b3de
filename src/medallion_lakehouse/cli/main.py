"""Entry point: imports every command module so each registers on the shared app."""

from __future__ import annotations

import importlib

from medallion_lakehouse.cli.app import app

# One module per topic; a module missing here is simply not installed yet.
_COMMAND_MODULES = (
    "generate",
    "ingest",
    "tables",
    "silver",
    "run",
    "ml",
    "report",
    "ops",
    "workspace",
    "runs",
    "lock",
    "look",  # sql, trace, plan, verify (issue 18)
    "rules",  # rules from configuration (issue 19)
)

for _name in _COMMAND_MODULES:
    try:
        importlib.import_module(f"medallion_lakehouse.cli.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"medallion_lakehouse.cli.{_name}":
            raise

__all__ = ["app"]

if __name__ == "__main__":
    app()
