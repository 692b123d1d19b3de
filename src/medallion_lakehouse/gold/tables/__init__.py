"""The gold tables: one module each, holding its contract and its builder as `TABLE`.

Adding a gold table is adding a module here (and its test): the step, the docs, the report's
lineage and `medallion status` find it through `gold_tables()`.
"""

from __future__ import annotations

import importlib
import pkgutil

from medallion_lakehouse.contracts import register
from medallion_lakehouse.gold.model import GoldTable


def gold_tables() -> tuple[GoldTable, ...]:
    """Every module's `TABLE`, in module-name order (registered as contracts too)."""
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        table = getattr(module, "TABLE", None)
        if isinstance(table, GoldTable):
            found.append(table)
    return tuple(found)


GOLD_TABLES: tuple[GoldTable, ...] = gold_tables()
register(*(t.contract for t in GOLD_TABLES))
