"""Reference data from the workspace: the product catalogue and the known stores.

`[reference] products = "reference/products.csv"` (a header line with a `product` column, more
columns allowed) replaces the seed's five products; `stores = "reference/stores.csv"` (a
`store_id` column, any spelling silver accepts: `NW-7`, `7`, ...) makes any other store fail
`store_id_valid`. Without them the defaults are the seed's catalogue and the range 1-999, so the
seed files give today's results. The silver step keeps them as `silver/products` and
`silver/stores` Delta tables, so gold and the report can join them.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.csv as pacsv

from medallion_lakehouse.config import Settings, nested_source, reference_file
from medallion_lakehouse.contracts import Column, TableContract, register
from medallion_lakehouse.errors import ConfigError
from medallion_lakehouse.silver import standardise as std

if TYPE_CHECKING:
    from medallion_lakehouse.lake import Lake
    from medallion_lakehouse.silver.rules import RuleSet
    from medallion_lakehouse.storage.delta import CommitInfo

PRODUCTS = TableContract(
    name="silver/products",
    grain="one row per product of the catalogue",
    key=("product",),
    description=(
        "The catalogue silver canonicalises products to and `product_in_catalogue` checks: the "
        "workspace's [reference] products file, else the seed's five products."
    ),
    write_mode="overwrite",
    write_note="rewritten by silver when the reference file's content changes",
    columns=(
        Column("product", pa.string(), "Canonical spelling (as in the reference file).", False),
        Column("source", pa.string(), "The reference file it came from, or `default`.", False),
    ),
    written_by="silver",
)

STORES = TableContract(
    name="silver/stores",
    grain="one row per known store",
    key=("store_id",),
    description=(
        "The stores `store_id_valid` accepts: the workspace's [reference] stores file (others "
        "fail the rule); absent when no file is configured (any store 1-999 is valid)."
    ),
    write_mode="overwrite",
    write_note="rewritten by silver when the reference file's content changes",
    columns=(
        Column("store_id", pa.string(), "Canonical store id NW-001..NW-999.", False),
        Column("source", pa.string(), "The reference file it came from.", False),
    ),
    written_by="silver",
)

register(PRODUCTS, STORES)

_STORE_RE = re.compile(r"^(?:NW[\s_-]*)?(\d{1,9})(?:[\s_-]*NW)?$")  # std._STORE_RE, in Python


def _read_csv(path: Path, column: str, setting: str) -> list[str]:
    try:
        table = pacsv.read_csv(
            path, convert_options=pacsv.ConvertOptions(column_types={column: pa.string()})
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise ConfigError(
            f"reference.{setting} {path}: not a readable CSV ({exc}). Give it a header line "
            f"with a {column!r} column and one value a row."
        ) from exc
    names = {n.strip().lower(): n for n in table.column_names}
    if column not in names:
        raise ConfigError(
            f"reference.{setting} {path}: no {column!r} column (columns: "
            f"{', '.join(table.column_names)}). Name the column {column!r} in the header line."
        )
    values = [v.strip() for v in table.column(names[column]).to_pylist() if v and v.strip()]
    if not values:
        raise ConfigError(f"reference.{setting} {path}: no {column} values. Add one a row.")
    return values


def catalogue(settings: Settings) -> tuple[dict[str, str], str]:
    """(case-folded product -> spelling, where it came from)."""
    path = reference_file(settings, "products")
    if path is None:
        return dict(std.CATALOGUE), "default"
    products = _read_csv(path, "product", "products")
    out: dict[str, str] = {}
    for p in products:
        out.setdefault(p.lower(), p)  # the first spelling of a product wins
    return out, str(settings.reference.products)


def stores(settings: Settings) -> tuple[frozenset[int] | None, str]:
    """(known store numbers, where they came from); None when no file is configured."""
    path = reference_file(settings, "stores")
    if path is None:
        return None, "default"
    numbers = set()
    for raw in _read_csv(path, "store_id", "stores"):
        found = _STORE_RE.match(raw.strip().upper())
        number = int(found[1]) if found else 0
        if not std.STORE_MIN <= number <= std.STORE_MAX:
            raise ConfigError(
                f"reference.stores {path}: {raw!r} is not a store id silver can hold "
                f"(NW-001..NW-{std.STORE_MAX}, or any accepted spelling such as 7 or NW-07)."
            )
        numbers.add(number)
    return frozenset(numbers), str(settings.reference.stores)


def rule_sources(settings: Settings) -> dict[str, tuple[str, str]]:
    """Per configured rule: (where its severity came from, where its fail_share came from)."""
    from medallion_lakehouse.silver.rules import QUARANTINE_SHARE_RULE

    out: dict[str, tuple[str, str]] = {}
    for name, override in settings.rules.items():
        severity = (
            nested_source(settings, ("rules", name, "severity"))
            if override.severity is not None
            else "default"
        )
        share = (
            nested_source(settings, ("rules", name, "fail_share"))
            if override.fail_share is not None
            else "default"
        )
        out[name] = (severity, share)
    if out.get(QUARANTINE_SHARE_RULE, ("", "default"))[1] == "default":
        # The global share is the default threshold of the quarantine-share gate.
        from medallion_lakehouse.config import setting_sources

        source = next(
            r["source"]
            for r in setting_sources(settings)
            if r["setting"] == "quarantine_fail_share"
        )
        source = "default" if source == "default" else f"quarantine_fail_share ({source})"
        out[QUARANTINE_SHARE_RULE] = (out.get(QUARANTINE_SHARE_RULE, ("default", ""))[0], source)
    return out


def tables(rules: RuleSet) -> dict[str, pa.Table | None]:
    """The rows of silver/products and silver/stores for a rule set (None: not kept)."""
    names = sorted(rules.catalogue.values())
    products = pa.table(
        {"product": names, "source": [rules.products_source] * len(names)},
        schema=PRODUCTS.schema,
    )
    stores_rows = None
    if rules.stores is not None:
        ids = [f"NW-{n:03d}" for n in sorted(rules.stores)]
        stores_rows = pa.table(
            {"store_id": ids, "source": [rules.stores_source] * len(ids)}, schema=STORES.schema
        )
    return {PRODUCTS.name: products, STORES.name: stores_rows}


def rescued_keys(lake: Lake) -> set[str]:
    """Every `_rescued_data` key bronze holds, from the ledger of ingested files."""
    from medallion_lakehouse.meta import INGESTED_FILES

    keys: set[str] = set()
    column = lake.read_arrow(INGESTED_FILES.name, columns=["rescued_columns"]).column(0)
    for listed in column.to_pylist():
        if listed:
            try:
                keys.update(k for k in json.loads(listed) if isinstance(k, str))
            except ValueError:
                continue
    return keys


def for_lake(lake: Lake) -> RuleSet:
    """The rule set the lake's settings give, with aliases bound to the keys bronze holds."""
    from medallion_lakehouse.silver.rules import resolve
    from medallion_lakehouse.silver.transform import CASE_CATALOGUE_LIMIT

    keys = rescued_keys(lake) if lake.settings.columns else set()
    rules = resolve(lake.settings, keys)
    if len(rules.catalogue) > CASE_CATALOGUE_LIMIT:
        table = lake.engine.from_arrow(rules.catalogue_arrow())
        rules = replace(rules, catalogue_table=table)
    return rules


def write(lake: Lake, rules: RuleSet, commit: CommitInfo) -> dict[str, int | None]:
    """Rewrite silver/products and silver/stores when their content differs from the rules'."""
    written: dict[str, int | None] = {}
    for name, rows in tables(rules).items():
        exists = lake.version(name) is not None
        if rows is None:
            if not exists or lake.read_arrow(name).num_rows == 0:
                continue
            rows = lake.contract(name).empty()
        elif exists and lake.read_arrow(name).sort_by(lake.contract(name).key[0]).equals(rows):
            continue
        written[name] = lake.write_arrow(name, rows, commit=commit, mode="overwrite").version
    return written


def describe(rules: RuleSet) -> list[dict[str, object]]:
    """One row per rule for `medallion rules`: name, severity, threshold, their sources."""
    rows: list[dict[str, object]] = []
    for r in rules.resolved:
        rows.append(
            {
                "rule": r.name,
                "severity": r.rule.severity,
                "severity_source": r.severity_source,
                "fail_share": r.fail_share,
                "fail_share_source": r.fail_share_source,
                "configurable": list(r.rule.severities),
                "description": r.rule.description,
            }
        )
    return rows
