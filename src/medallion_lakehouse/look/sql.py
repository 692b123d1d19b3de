"""Every lake table as a read-only DuckDB view named after it (`silver.sales`, `meta.runs`, ...).

The views sit on an in-memory DuckDB over Arrow datasets of each table's live files (never the
table folder, which holds removed files too). After they are created, external access is switched
off and the configuration locked, so a query can neither write files nor attach databases; only
SELECT and EXPLAIN statements are accepted at all.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from medallion_lakehouse.contracts import TableContract, all_contracts
from medallion_lakehouse.errors import MedallionError, TableNotFoundError
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.storage.delta import add_actions, open_table

if TYPE_CHECKING:
    from deltalake import DeltaTable

# Statements that only read. Anything else (INSERT, COPY, ATTACH, SET, CREATE...) is refused.
READ_ONLY = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})


class QueryError(MedallionError):
    """A query was refused (it would write) or failed in DuckDB."""

    exit_code = 2


@dataclass(frozen=True)
class View:
    """One lake table as a view: its SQL name, contract name, version read and rows."""

    view: str  # e.g. "silver.sales"
    table: str  # e.g. "silver/sales"
    version: int | None  # None: the table has not been written yet (the view is empty)
    rows: int
    grain: str


def view_name(contract: TableContract) -> str:
    """`silver/sales` -> `silver.sales`; `_meta/runs` -> `meta.runs` (no leading underscore)."""
    layer, _, rest = contract.name.partition("/")
    return f"{layer.lstrip('_')}.{rest}"


def _quoted(view: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in view.split("."))


AsOf = int | datetime


def parse_as_of(items: list[str] | None) -> dict[str, AsOf]:
    """`--as-of silver.sales=3` or `--as-of silver.sales=2025-01-01T00:00:00Z` -> {view: when}."""
    known = {view_name(c) for c in all_contracts()} | {c.name for c in all_contracts()}
    result: dict[str, AsOf] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not value.strip():
            raise QueryError(f"--as-of expects VIEW=VERSION or VIEW=TIMESTAMP, got {item!r}.")
        if name not in known:
            raise TableNotFoundError(
                f"--as-of: unknown table {name!r} (see `medallion sql --tables`)."
            )
        if "/" in name:
            name = next(view_name(c) for c in all_contracts() if c.name == name)
        value = value.strip()
        if value.isdigit():
            result[name] = int(value)
            continue
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise QueryError(
                f"--as-of {name}: {value!r} is neither a version number nor an ISO timestamp."
            ) from None
        # A timestamp without a zone is UTC, as everywhere in the lake.
        result[name] = when if when.tzinfo else when.replace(tzinfo=UTC)
    return result


def _open(lake: Lake, contract: TableContract, as_of: AsOf | None) -> DeltaTable | None:
    table = open_table(lake.uri(contract.name), storage_options=lake.storage_options)
    if table is None or as_of is None:
        return table
    if isinstance(as_of, datetime):
        # delta-rs loads version 0 for a time before the table existed: refuse that instead.
        first = min(int(h["timestamp"]) for h in table.history())
        if as_of.timestamp() * 1000 < first:
            created = datetime.fromtimestamp(first / 1000, UTC).isoformat(timespec="seconds")
            raise QueryError(
                f"{view_name(contract)} has no version as of {as_of.isoformat()}: it was "
                f"created at {created}."
            )
    try:
        table.load_as_version(as_of)
    except Exception as exc:  # delta-rs raises several types for a version it does not have
        raise QueryError(
            f"{view_name(contract)} has no version as of {as_of} (current: {table.version()}): "
            f"{str(exc).splitlines()[0]}"
        ) from None
    return table


@contextmanager
def lake_views(
    lake: Lake, *, as_of: Mapping[str, AsOf] | None = None, prefix: str = ""
) -> Iterator[tuple[duckdb.DuckDBPyConnection, list[View]]]:
    """A locked-down in-memory DuckDB with one view per lake table, and the list of views.

    `prefix` puts the views in schemas `<prefix><layer>` (verify opens two lakes side by side).
    """
    con = duckdb.connect()
    try:
        views = register_views(con, lake, as_of=as_of, prefix=prefix)
        lock_down(con)
        yield con, views
    finally:
        con.close()


def register_views(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    *,
    as_of: Mapping[str, AsOf] | None = None,
    prefix: str = "",
) -> list[View]:
    """Create one view per contract on `con`; an unwritten table is an empty view of its schema."""
    views = []
    for contract in all_contracts():
        name = view_name(contract)
        table = _open(lake, contract, (as_of or {}).get(name))
        if table is None:
            data: pa.Table | object = contract.empty()
            rows = 0
        else:
            data = table.to_pyarrow_dataset()
            counts = add_actions(table).column("num_records")
            rows = sum(int(n or 0) for n in counts.to_pylist())
        full = prefix + name
        schema, _, _ = full.partition(".")
        hidden = "__" + full.replace(".", "__")
        con.register(hidden, data)
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        con.execute(f'CREATE VIEW {_quoted(full)} AS SELECT * FROM "{hidden}"')
        views.append(
            View(
                view=full,
                table=contract.name,
                version=None if table is None else table.version(),
                rows=rows,
                grain=contract.grain,
            )
        )
    return views


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """No files, no extensions, no attached databases from here on, and no way to undo it."""
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def check_read_only(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Raise QueryError unless every statement of `query` only reads."""
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise QueryError(f"SQL does not parse: {_first_line(exc)}") from None
    if not statements:
        raise QueryError("No SQL statement given.")
    for statement in statements:
        if statement.type not in READ_ONLY:
            kind = str(statement.type).rsplit(".", 1)[-1]
            raise QueryError(
                f"Refused: `medallion sql` is read-only and runs SELECT (and EXPLAIN) only; "
                f"this statement is {kind}. Change the lake through `medallion run`."
            )


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def run_query(con: duckdb.DuckDBPyConnection, query: str) -> pa.Table:
    """Run a read-only query (several statements: the last one's result) into Arrow."""
    check_read_only(con, query)
    result: pa.Table | None = None
    try:
        for statement in con.extract_statements(query):
            relation = con.sql(statement.query)
            result = relation.to_arrow_table() if relation is not None else pa.table({})
    except duckdb.Error as exc:
        raise QueryError(f"Query failed: {_first_line(exc)}") from None
    assert result is not None
    return result


def query(lake: Lake, sql: str, *, as_of: Mapping[str, AsOf] | None = None) -> pa.Table:
    """The result of a read-only SQL query over the lake's views."""
    with lake_views(lake, as_of=as_of) as (con, _):
        return run_query(con, sql)


def list_views(lake: Lake, *, as_of: Mapping[str, AsOf] | None = None) -> list[View]:
    with lake_views(lake, as_of=as_of) as (_, views):
        return views
