"""Table contracts: one declaration per table drives schemas, checks, docs and the report.

Each layer declares its tables next to the code that builds them (`bronze/contract.py`,
`silver/contract.py`, ...) and registers them here with `register`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa

from medallion_lakehouse.errors import TableNotFoundError


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    description: str
    nullable: bool = True


@dataclass(frozen=True)
class TableContract:
    """What a table promises: where it lives, its grain and key, its columns."""

    name: str  # also its path under the lake root, e.g. "silver/sales"
    grain: str  # "one row per ..."
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    partition_by: tuple[str, ...] = ()
    description: str = ""
    write_mode: str = "append"  # how the pipeline writes it: append | replace partitions | ...
    checks: tuple[str, ...] = field(default_factory=tuple)  # human-readable invariants

    @property
    def layer(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns])

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def empty(self) -> pa.Table:
        return self.schema.empty_table()


_REGISTRY: dict[str, TableContract] = {}


def register(*contracts: TableContract) -> None:
    for contract in contracts:
        _REGISTRY[contract.name] = contract


def _load_all() -> None:
    # Importing the contract modules registers their tables.
    import importlib

    for module in (
        "medallion_lakehouse.bronze.contract",
        "medallion_lakehouse.silver.contract",
        "medallion_lakehouse.gold.contract",
        "medallion_lakehouse.ml.contract",
        "medallion_lakehouse.meta",
    ):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def all_contracts() -> list[TableContract]:
    _load_all()
    order = {"bronze": 0, "silver": 1, "gold": 2, "_meta": 3}
    return sorted(_REGISTRY.values(), key=lambda c: (order.get(c.layer, 9), c.name))


def get_contract(name: str) -> TableContract:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise TableNotFoundError(f"Unknown table {name!r}. Known tables: {known}.") from None


def names(contracts: Iterable[TableContract]) -> list[str]:
    return [c.name for c in contracts]
