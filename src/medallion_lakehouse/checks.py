"""The kinds of data-quality declaration a table contract carries (pure Ibis, any engine).

A `Check` counts the rows (or groups) of a table that break it; the step that writes the table
evaluates its contract's checks before (gold, ml) or right after (silver) committing, and a
broken `fail` check stops the step. A `RowRule` is a predicate applied to each incoming row on the
way into a table (silver's rules): `warn` keeps and counts, `drop` quarantines, `fail` holds the
batch (the severities of Delta Live Tables expectations). Both report as `Outcome`s into one
table, `_meta/quality`.

A new check is one declaration in a contract's `checks`; the constructors below cover the usual
shapes (unique key, not null, non-negative, a range, accepted values, any row predicate).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias

import pyarrow as pa

from medallion_lakehouse.lazy_imports import ibis

if TYPE_CHECKING:
    import ibis.expr.types as ir


class DeclaredColumn(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def type(self) -> pa.DataType: ...
    @property
    def nullable(self) -> bool: ...


class TableContract(Protocol):
    """What a check reads of the contract it is declared on (`contracts.TableContract`, which
    imports this module, so it is named here by shape)."""

    @property
    def name(self) -> str: ...
    @property
    def key(self) -> tuple[str, ...]: ...
    @property
    def columns(self) -> tuple[DeclaredColumn, ...]: ...


Severity = Literal["warn", "drop", "fail"]
RowPredicate: TypeAlias = "Callable[[ir.Table], ir.BooleanValue]"


@dataclass(frozen=True)
class CheckInputs:
    """What a check may look at besides the table: its contract and its upstream tables, read
    for the same scope (e.g. the silver months a gold rebuild covered)."""

    contract: TableContract
    upstream: Mapping[str, ir.Table] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """A rule over a whole table: `failing(table, inputs)` counts the rows that break it.

    `rule` and `description` may name `{key}`, `{not_null}` and `{numeric}` (the contract's
    key, its non-nullable and its numeric columns), filled in by `named` for the contract the
    check is declared on.
    """

    rule: str
    description: str
    failing: Callable[[ir.Table, CheckInputs], ir.IntegerScalar]
    severity: Severity = "fail"

    def named(self, contract: TableContract) -> tuple[str, str]:
        """(rule, description) as they read for `contract`."""
        fill = {
            "key": ", ".join(contract.key),
            "not_null": ", ".join(c.name for c in contract.columns if not c.nullable),
            "numeric": ", ".join(_numeric(contract)),
        }
        return self.rule.format(**fill), self.description.format(**fill)


@dataclass(frozen=True)
class RowRule:
    """A rule applied to each incoming row: True from `passes` when the row is fine."""

    name: str
    severity: Severity
    description: str  # the reason a failing row is given, in words
    passes: RowPredicate | None = None  # None for batch-level rules
    metric: str = ""  # the step's result reports the count of rows breaking it under this name
    # The severities medallion.toml may give it ([rules.NAME] severity); () = not configurable.
    # A rule whose breaking rows have no value for a required column cannot be `warn`.
    severities: tuple[Severity, ...] = ("warn", "drop", "fail")

    def failed(self, t: ir.Table) -> ir.BooleanValue:
        """True when the row breaks the rule (a NULL outcome counts as broken)."""
        assert self.passes is not None, f"{self.name} is not a row rule"
        return ~self.passes(t).fill_null(False)


def _columns(given: Sequence[str] | None, default: Sequence[str]) -> list[str]:
    return list(given) if given is not None else list(default)


def unique_key(columns: Sequence[str] | None = None) -> Check:
    """No two rows share the key (the contract's key unless `columns` is given): counts the rows
    whose key value occurs more than once."""

    def failing(t: ir.Table, inputs: CheckInputs) -> ir.IntegerScalar:
        cols = _columns(columns, inputs.contract.key)
        if len(cols) == 1:
            # Grouping 10M long text ids (silver's sha256 sale_ids) costs about 3 CPU s; their
            # integer hashes group in a fraction of that. Only the rows whose hash repeats (the
            # duplicates and the hash collisions among them) are then grouped by the value
            # itself, so the count stays exact.
            hashed = t.mutate(_key_hash=t[cols[0]].hash())
            counts = hashed.group_by("_key_hash").aggregate(n=hashed.count())
            repeated = counts.filter(counts.n > 1)._key_hash
            t = hashed.filter(hashed._key_hash.isin(repeated))
        groups = t.group_by(cols).aggregate(n=t.count())
        return groups.filter(groups.n > 1).n.sum().fill_null(0)

    label = ", ".join(columns) if columns is not None else "{key}"
    return Check(f"unique_key({label})", f"({label}) is unique", failing)


def not_null(columns: Sequence[str] | None = None) -> Check:
    """None of `columns` is null (default: the contract's columns declared `nullable=False`)."""

    def failing(t: ir.Table, inputs: CheckInputs) -> ir.IntegerScalar:
        default = [c.name for c in inputs.contract.columns if not c.nullable]
        cols = _columns(columns, default)
        if not cols:
            return ibis.literal(0, "int64")
        return t.count(where=ibis.or_(*(t[c].isnull() for c in cols)))

    described = ", ".join(columns) if columns is not None else "{not_null}"
    return Check("not_null", f"{described} are never null", failing)


def row_check(
    rule: str, description: str, broken: RowPredicate, severity: Severity = "fail"
) -> Check:
    """Counts the rows for which `broken` is True (a NULL outcome is not counted)."""

    def failing(t: ir.Table, inputs: CheckInputs) -> ir.IntegerScalar:
        return t.count(where=broken(t).fill_null(False))

    return Check(rule, description, failing, severity)


def non_negative(columns: Sequence[str] | None = None) -> Check:
    """No amount or count is negative (default: every numeric column of the contract; null is
    not checked here)."""

    def failing(t: ir.Table, inputs: CheckInputs) -> ir.IntegerScalar:
        cols = _columns(columns, _numeric(inputs.contract))
        return t.count(where=ibis.or_(*(t[c] < 0 for c in cols)).fill_null(False))

    described = ", ".join(columns) if columns is not None else "{numeric}"
    return Check("non_negative", f"{described} are >= 0", failing)


def _numeric(contract: TableContract) -> list[str]:
    return [
        c.name
        for c in contract.columns
        if pa.types.is_integer(c.type)
        or pa.types.is_decimal(c.type)
        or pa.types.is_floating(c.type)
    ]


def between(column: str, low: Any, high: Any) -> Check:
    """`low <= column <= high` on every non-null value."""
    return row_check(
        f"between({column})",
        f"{low} <= {column} <= {high}",
        lambda t: ~t[column].between(low, high),
    )


def accepted_values(column: str, values: Sequence[Any]) -> Check:
    """Every non-null value of `column` is one of `values`."""
    accepted = list(values)
    return row_check(
        f"accepted_values({column})",
        f"{column} is one of {', '.join(map(str, accepted))}",
        lambda t: ~t[column].isin(accepted),
    )
