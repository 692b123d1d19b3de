"""Pure Ibis expressions that turn bronze strings into canonical typed values.

Every function maps string columns to a column and never raises on bad input: a value that does
not parse becomes NULL (through `try_cast` or a regex that does not match), and the rules in
`rules.py` turn those NULLs into quarantine reasons. Regexes use only the syntax that DuckDB (RE2)
and Spark (java.util.regex) read the same way: character classes, `\\d`, `\\s`, `(?:...)`, `^$`.

Accepted date spellings (anything else is unparseable and quarantined):

| shape                         | example                         | read as                   |
|-------------------------------|---------------------------------|---------------------------|
| ISO, `-` `/` or `.` separated | `2025-01-15`, `2025/1/15`       | year, month, day          |
| ISO with a time part          | `2025-01-15T10:30:00`           | the date part             |
| day first, `/` `-` or `.`     | `15/01/2025`, `15-01-2025`      | day, month, year          |
| month first when unambiguous  | `01/15/2025`                    | the second number > 12    |
| month name                    | `Jan 15 2025`, `January 15, 2025`, `15 Jan 2025` | English names |

`05/06/2025` (both numbers ≤ 12) is read day first, the European convention of the source; a
date that does not exist (`2025-02-30`) is unparseable.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from decimal import Decimal
from types import SimpleNamespace
from typing import TYPE_CHECKING

from medallion_lakehouse.lazy_imports import ibis

if TYPE_CHECKING:
    import ibis.expr.types as ir

# The seed's catalogue, keyed by the case-folded spelling.
CATALOGUE: dict[str, str] = {
    p.lower(): p for p in ("Laptop", "Smartphone", "Tablet", "Monitor", "Headphones")
}
STATUSES: tuple[str, ...] = ("completed", "pending", "cancelled", "returned")
UNKNOWN_STATUS = "unknown"
# Spellings seen in real feeds for the canonical statuses.
STATUS_SYNONYMS: dict[str, str] = {
    "complete": "completed",
    "canceled": "cancelled",
    "cancel": "cancelled",
    "return": "returned",
}
MONTHS: dict[str, int] = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
STORE_MIN, STORE_MAX = 1, 999
PRICE_TYPE = "decimal(10,2)"
TOTAL_TYPE = "decimal(12,2)"
TOTAL_TOLERANCE = Decimal("0.01")

# `NW-7`, `NW-07`, `NW007`, `007-NW`, `7`, `nw 007` (after trim + upper): one number, an
# optional `NW` before or after it, separated by nothing, a dash, an underscore or spaces.
_STORE_RE = r"^(?:NW[\s_-]*)?(\d{1,9})(?:[\s_-]*NW)?$"
_STRICT_ISO_RE = r"^\d{4}-\d{2}-\d{2}$"
_ISO_RE = r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[T\s].*)?$"
_DMY_RE = r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})$"
_MON_FIRST_RE = r"^([A-Za-z]{3})[A-Za-z]*\.?\s+(\d{1,2}),?\s+(\d{4})$"
_DAY_FIRST_RE = r"^(\d{1,2})\s+([A-Za-z]{3})[A-Za-z]*\.?,?\s+(\d{4})$"
_INTEGER_RE = r"^\+?(\d{1,9})(?:\.0*)?$"


@functools.cache
def _builtins() -> SimpleNamespace:
    """The engines' own SQL functions, declared on first use (declaring them loads ibis)."""

    @ibis.udf.scalar.builtin(name="trim")
    def trim(value: str) -> str:  # type: ignore[empty-body]
        """SQL TRIM: strips spaces on both DuckDB and Spark.

        Ibis' own `strip()` compiles to `TRIM(x, ' \t\n')` on DuckDB, 2.5x slower per column;
        tabs and newlines around a field are rare enough that both engines' plain TRIM is the
        rule here.
        """

    @ibis.udf.scalar.builtin(name="get_json_object")
    def get_json_object(json: str, path: str) -> str:  # type: ignore[empty-body]
        """Spark's get_json_object; the DuckDB engine defines a macro of that name over
        json_extract_string (Ibis' own JSON access returns quoted JSON text on DuckDB and runs a
        Python UDF to unwrap it on Spark)."""

    return SimpleNamespace(trim=trim, get_json_object=get_json_object)


def trim(value: ir.StringValue) -> ir.StringValue:
    """The value without leading and trailing spaces."""
    return _builtins().trim(value)


def clean_text(value: ir.StringValue) -> ir.StringValue:
    """Trimmed text; empty becomes NULL."""
    return trim(value).nullif("")


def _group(value: ir.StringValue, pattern: str, index: int) -> ir.StringValue:
    """Regex group `index` as text, NULL when the pattern does not match."""
    # regexp_extract returns '' (not NULL) for no match on both engines.
    return value.re_extract(pattern, index).nullif("")


def _pad(digits: ir.StringValue, width: int) -> ir.StringValue:
    """Left-pad a short digit string with zeros (cheaper than lpad, which Ibis expands)."""
    return ("0" * (width - 1) + digits).right(width)


def store_number(raw: ir.StringValue) -> ir.IntegerValue:
    """The store number in any accepted spelling, NULL when there is none."""
    return _group(trim(raw).upper(), _STORE_RE, 1).try_cast("int64")


def store_id(raw: ir.StringValue) -> ir.StringValue:
    """Canonical `NW-007`, NULL when the id has no number or the number is outside 1–999."""
    return canonical_store(store_number(raw))


def canonical_store(
    number: ir.IntegerValue, known: Collection[int] | None = None
) -> ir.StringValue:
    """`NW-` + the number on three digits, NULL outside 1–999 (or, given `known` store numbers,
    for a store not among them)."""
    valid = number.between(STORE_MIN, STORE_MAX)
    if known is not None:
        valid = valid & number.isin(sorted(known))
    return valid.ifelse("NW-" + _pad(number.cast("string"), 3), ibis.null("string"))


def store_as_sent(raw: ir.StringValue, number: ir.IntegerValue) -> ir.StringValue:
    """The id an invalid store keeps when store_id_valid is only `warn`: canonical when it has a
    number in 1-999, else trimmed as sent ('' when missing: the column is required)."""
    return ibis.coalesce(canonical_store(number), trim(raw).nullif(""), ibis.literal(""))


def _iso(year: ir.StringValue, month: ir.StringValue, day: ir.StringValue) -> ir.DateValue:
    # Building `YYYY-MM-DD` and try-casting rejects impossible dates (Feb 30) on both engines,
    # where make_date would raise.
    return (year + "-" + _pad(month, 2) + "-" + _pad(day, 2)).try_cast("date")


def _month_number(name: ir.StringValue) -> ir.StringValue:
    return name.lower().cases(*((m, f"{n:02d}") for m, n in MONTHS.items()), else_=None)


def sale_date(raw: ir.StringValue) -> ir.DateValue:
    """The date in any accepted spelling (see the module docstring), NULL otherwise."""
    s = trim(raw)
    a, b = _group(s, _DMY_RE, 1), _group(s, _DMY_RE, 2)
    month_first = (b.try_cast("int64") > 12) & (a.try_cast("int64") <= 12)
    return ibis.cases(
        # The common case first: strict ISO, which both engines cast identically.
        (s.re_search(_STRICT_ISO_RE), s.try_cast("date")),
        (
            s.re_search(_ISO_RE),
            _iso(_group(s, _ISO_RE, 1), _group(s, _ISO_RE, 2), _group(s, _ISO_RE, 3)),
        ),
        (
            s.re_search(_DMY_RE),
            _iso(_group(s, _DMY_RE, 3), month_first.ifelse(a, b), month_first.ifelse(b, a)),
        ),
        (
            s.re_search(_MON_FIRST_RE),
            _iso(
                _group(s, _MON_FIRST_RE, 3),
                _month_number(s.re_extract(_MON_FIRST_RE, 1)),
                _group(s, _MON_FIRST_RE, 2),
            ),
        ),
        (
            s.re_search(_DAY_FIRST_RE),
            _iso(
                _group(s, _DAY_FIRST_RE, 3),
                _month_number(s.re_extract(_DAY_FIRST_RE, 2)),
                _group(s, _DAY_FIRST_RE, 1),
            ),
        ),
        else_=ibis.null("date"),
    )


def sale_month(date: ir.DateValue) -> ir.StringValue:
    """`YYYY-MM` of a date (the silver partition)."""
    return date.year().cast("string") + "-" + _pad(date.month().cast("string"), 2)


def quantity(raw: ir.StringValue) -> ir.IntegerValue:
    """A whole number of units (`3`, `+3`, `3.0`), NULL for anything else."""
    return _group(trim(raw), _INTEGER_RE, 1).try_cast("int64")


def amount(raw: ir.StringValue, dtype: str) -> ir.DecimalValue:
    """A money amount rounded to cents, NULL when empty, unparseable or too large for `dtype`."""
    return clean_text(raw).try_cast(dtype)


def _status_key(raw: ir.StringValue) -> ir.StringValue:
    return trim(raw).lower()


def status(raw: ir.StringValue) -> ir.StringValue:
    """One of completed|pending|cancelled|returned, or `unknown` (missing or unrecognised)."""
    canonical = {**{s: s for s in STATUSES}, **STATUS_SYNONYMS}
    # A simple CASE on one key: the key is computed once per row.
    return _status_key(raw).cases(*canonical.items(), else_=UNKNOWN_STATUS)


def status_recognised(raw: ir.StringValue) -> ir.BooleanValue:
    """Whether the raw status is one of the known spellings (empty counts as not recognised)."""
    return status(raw) != UNKNOWN_STATUS


def product(raw: ir.StringValue, catalogue: Mapping[str, str] = CATALOGUE) -> ir.StringValue:
    """Catalogue spelling (`laptop ` -> `Laptop`); unknown products kept as sent, trimmed."""
    text = clean_text(raw)
    return text.lower().cases(*catalogue.items(), else_=text)


def in_catalogue(
    product_value: ir.StringValue, catalogue: Mapping[str, str] = CATALOGUE
) -> ir.BooleanValue:
    """Whether a canonical product is one of the catalogue's."""
    return product_value.isin(sorted(catalogue.values())).fill_null(False)


_JSON_KEY_RE = r"^[A-Za-z0-9 _-]+$"


def json_key_ok(key: str) -> bool:
    """Whether `$.key` reads the member `key` the same way on DuckDB and Spark."""
    import re

    return re.match(_JSON_KEY_RE, key) is not None


def json_member(json: ir.StringValue, key: str) -> ir.StringValue:
    """The string member `key` of a JSON object in text (NULL when absent or null)."""
    assert json_key_ok(key), key
    return _builtins().get_json_object(json, ibis.literal(f"$.{key}"))


def cents(value: ir.DecimalValue) -> ir.IntegerValue:
    """An amount with two decimals as a whole number of cents (exact)."""
    return (value * 100).cast("int64")


def imputed_price(total: ir.DecimalValue, units: ir.IntegerValue) -> ir.DecimalValue:
    """round(total / quantity, 2), half up, computed in integer cents so engines agree."""
    # Decimal division and rounding differ between DuckDB (double) and Spark (decimal); integer
    # arithmetic does not: round-half-up(t / q) = floor((2t + q) / 2q).
    numerator = cents(total) * 2 + units
    price_cents = (numerator - numerator % (units * 2)) / (units * 2)
    return (price_cents.cast("decimal(18,0)") * ibis.literal(Decimal("0.01"))).cast(PRICE_TYPE)


def line_total(price: ir.DecimalValue, units: ir.IntegerValue) -> ir.DecimalValue:
    """quantity × unit price as decimal(12,2) (exact)."""
    return (price.cast(TOTAL_TYPE) * units.cast("decimal(9,0)")).cast(TOTAL_TYPE)


def content_hash(*parts: ir.Value) -> ir.StringValue:
    """`h-` + 32 hex chars of sha256 over the parts joined by `|` (NULL parts as empty)."""
    joined = ibis.literal("|").join([p.cast("string").fill_null("") for p in parts])
    return "h-" + joined.hexdigest("sha256").substr(0, 32)
