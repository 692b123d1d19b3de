"""Arguments checked once for every command: dates, ranges, the workspace itself.

Each check raises ConfigError (exit 2) with one sentence that says what to do; none of them
guesses. Date flags are parsed here only (`run`, `silver`, `train` and `score` share it).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

from medallion_lakehouse.config import CONFIG_FILE_NAME, Settings
from medallion_lakehouse.errors import ConfigError

# Steps that --from/--to and --full-refresh mean something to (bronze appends new files only).
RANGE_STEPS = ("silver", "gold")


def parse_day(value: str | None, flag: str) -> date | None:
    """`--from 2026-01-31` -> date; None when the flag was not given."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(f"{flag} expects a date YYYY-MM-DD, got {value!r}.") from None


def check_range(
    date_from: date | None,
    date_to: date | None,
    *,
    steps: Sequence[str] = RANGE_STEPS,
    full_refresh: bool = False,
) -> None:
    """A reprocessing range that means what it says, or a ConfigError naming the conflict."""
    if date_from is None and date_to is None:
        if full_refresh and not set(steps) & set(RANGE_STEPS):
            raise ConfigError(
                f"--full-refresh rebuilds silver and gold, which --steps {','.join(steps)} does "
                "not include: add silver and/or gold to --steps."
            )
        return
    if date_from is not None and date_to is not None and date_to < date_from:
        raise ConfigError(
            f"--to {date_to} is before --from {date_from}: swap them (the range is inclusive)."
        )
    if full_refresh:
        raise ConfigError(
            "--full-refresh rebuilds everything, --from/--to only a range: give one or the other."
        )
    if not set(steps) & set(RANGE_STEPS):
        raise ConfigError(
            f"--from/--to select the months silver and gold rebuild; --steps {','.join(steps)} "
            "runs neither: add silver and/or gold to --steps."
        )


def _is_uri(location: str) -> bool:
    return "://" in location


def workspace_markers(settings: Settings) -> list[str]:
    """What makes the folder a workspace: its medallion.toml, its lake, its landing folder."""
    found = []
    if (settings.workspace / CONFIG_FILE_NAME).is_file():
        found.append(CONFIG_FILE_NAME)
    for label, location in (("lake", settings.lake_path), ("landing", settings.landing_path)):
        if _is_uri(location) or Path(location).exists():
            found.append(label)
    return found


def check_workspace(settings: Settings) -> None:
    """Refuse a workspace that does not exist or holds nothing of a lake."""
    ws = settings.workspace
    if not ws.is_dir():
        raise ConfigError(
            f"workspace {ws} does not exist: check --workspace (or $MEDALLION_WORKSPACE), or "
            f"create it with `medallion init -w {ws}`."
        )
    if not workspace_markers(settings):
        raise ConfigError(
            f"{ws} is not a medallion workspace: it has no {CONFIG_FILE_NAME}, no lake "
            f"({settings.lake_path}) and no landing folder ({settings.landing_path}); check "
            f"--workspace, or create one with `medallion init -w {ws}`."
        )


_TOML_TEMPLATE = """\
# medallion settings for this workspace (`medallion config` shows every setting and its source).
# Precedence: defaults < this file < MEDALLION_* environment variables < command-line flags.
# engine = "duckdb"            # or "spark"
# landing_dir = "data/landing"
# lake_dir = "data/lake"       # or an object-store URI such as "s3://bucket/lake"

# Onboarding a feed (docs/operations.md): uncomment what your data needs.
# `medallion rules` shows each rule with its severity, threshold and where they came from.
# quarantine_fail_share = 0.2  # hold a bronze batch when more of it fails drop rules

# [rules.store_id_valid]       # any rule by name (`medallion rules`); unknown names are an error
# severity = "warn"            # warn | drop | fail
# fail_share = 0.2             # hold a batch when more than this share breaks the rule

# [columns]                    # canonical column = the names your feeds use (case-insensitive)
# sale_date = ["date", "order_date"]
# quantity = ["qty"]

# [reference]                  # paths under the workspace; without them the built-in defaults
# products = "reference/products.csv"   # a CSV with a `product` column: the catalogue
# stores = "reference/stores.csv"       # a CSV with a `store_id` column: the known stores

# [freshness]                  # checked by every run and by `medallion status`
# warn_after = "2d"            # newest sale or ingested file older than this: a warning
# error_after = "7d"           # ... the run fails with exit code 3
"""


def init_workspace(settings: Settings) -> list[str]:
    """Create the workspace folder, a commented medallion.toml and the landing folder.

    Returns what was created (nothing already there is touched).
    """
    created = []
    ws = settings.workspace
    try:
        if not ws.is_dir():
            ws.mkdir(parents=True)
            created.append(str(ws))
        toml = ws / CONFIG_FILE_NAME
        if not toml.exists():
            toml.write_text(_TOML_TEMPLATE, encoding="utf-8")
            created.append(str(toml))
        if not _is_uri(settings.landing_path) and not Path(settings.landing_path).exists():
            Path(settings.landing_path).mkdir(parents=True)
            created.append(settings.landing_path)
    except OSError as exc:
        raise ConfigError(f"cannot create the workspace {ws}: {exc.strerror or exc}.") from exc
    return created
