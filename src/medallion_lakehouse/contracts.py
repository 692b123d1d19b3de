"""Table contracts: one declaration per table drives schemas, checks, docs and the report.

Each layer declares its tables next to the code that builds them (`bronze/contract.py`,
`silver/contract.py`, ...) and registers them here with `register`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa

from medallion_lakehouse.checks import Check, RowRule
from medallion_lakehouse.errors import TableNotFoundError

# How the pipeline writes a table: `append` adds rows; `replace_partitions` replaces the
# partitions a run rebuilt (one predicate overwrite on the partition column); `replace_rows`
# replaces the rows of the batches a run processed (on `_batch_id`); `overwrite` replaces the
# table. A full refresh overwrites any of them.
TableWriteMode = Literal["append", "replace_partitions", "replace_rows", "overwrite"]


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    description: str
    nullable: bool = True
    # About one value per row (an id, a line number): written without Parquet dictionary
    # encoding, which would build a dictionary per column chunk only to fall back to plain
    # (35-45 % of a 3M-row silver write's CPU, for files about 20 % larger).
    unique: bool = False


@dataclass(frozen=True)
class TableContract:
    """What a table promises: where it lives, its grain and key, its columns."""

    name: str  # also its path under the lake root, e.g. "silver/sales"
    grain: str  # "one row per ..."
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    partition_by: tuple[str, ...] = ()
    description: str = ""
    write_mode: TableWriteMode = "append"
    write_note: str = ""  # what decides the rows or partitions written, in words
    upstream: tuple[str, ...] = ()  # tables it is built from (the lineage graph's edges)
    checks: tuple[Check, ...] = ()  # run by the step that writes it (quality.py)
    rules: tuple[RowRule, ...] = ()  # applied to each incoming row on the way in
    notes: tuple[str, ...] = ()  # invariants proven elsewhere (e.g. by `medallion audit`)
    written_by: str = ""  # the pipeline step that writes it, when not its layer's (ml)

    @property
    def layer(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def step(self) -> str:
        """The pipeline step that writes the table."""
        return self.written_by or self.layer

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns])

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def unique_columns(self) -> tuple[str, ...]:
        """Columns with about one value per row (`Column.unique`)."""
        return tuple(c.name for c in self.columns if c.unique)

    def empty(self) -> pa.Table:
        return self.schema.empty_table()

    def write_args(
        self, *, full: bool = False, values: Iterable[Any] | None = None
    ) -> dict[str, Any]:
        """`mode` / `replace` keywords of `Lake.write*` for this table's write mode.

        `values` are the partitions (replace_partitions) or batch ids (replace_rows) the run
        rebuilt; `full` (a full refresh, or the table's first write) overwrites the table.
        """
        if full or self.write_mode == "overwrite":
            return {"mode": "overwrite"}
        if self.write_mode == "append":
            return {"mode": "append"}
        column = self.partition_by[0] if self.write_mode == "replace_partitions" else "_batch_id"
        return {"mode": "append", "replace": {column: sorted(values or ())}}


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
        "medallion_lakehouse.silver.reference",
        "medallion_lakehouse.gold.contract",
        "medallion_lakehouse.gold.tables",
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
