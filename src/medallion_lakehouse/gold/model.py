"""What a gold table is: its contract (columns, key, partitioning, write mode, upstream, checks)
and a pure builder from its upstream tables. The gold step knows nothing else about a table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from medallion_lakehouse.contracts import TableContract

if TYPE_CHECKING:
    import ibis.expr.types as ir


@dataclass(frozen=True)
class GoldTable:
    contract: TableContract
    build: Callable[[ir.Table], ir.Table]  # silver/sales rows (of the months rebuilt) -> rows
