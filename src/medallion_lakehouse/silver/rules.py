"""The data-quality rules of silver/sales, declared once, with severity and reason.

Severities follow Delta Live Tables expectations: `warn` keeps the row and counts it, `drop`
sends the row to silver/sales_quarantine, `fail` stops the run before anything is committed.
Row rules are predicates on the parsed table of `transform.parse` (its `p_*` columns) that are
True when the row *passes*. The one `fail` rule works on whole bronze batches (see `gate`): a
batch above the share is *held* (nothing of it is committed, later batches go on) until the
share falls under the threshold or an operator decides (`medallion held`).

The declarations below are the defaults. A workspace's medallion.toml may override a rule's
severity and give it a `fail_share` (`[rules.NAME]`), and replace the catalogue and the store
range with reference files (`[reference]`); `resolve` turns settings into a `RuleSet`, which is
what the pure transforms take. Nothing reads the module constants for a lake's rules.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import pyarrow as pa

from medallion_lakehouse.checks import RowRule, Severity
from medallion_lakehouse.lazy_imports import ibis
from medallion_lakehouse.silver import standardise as std

if TYPE_CHECKING:
    import ibis.expr.types as ir

    from medallion_lakehouse.config import Settings

QUARANTINE_SHARE_RULE = "quarantine_share"
# Not a check of the data: an operator's decision about a batch the gate held (`medallion held`).
BATCH_QUARANTINED_RULE = "held_batch_quarantined"


RULES: tuple[RowRule, ...] = (
    # drop rules, in the order a quarantined row is attributed to the first one it breaks
    RowRule(
        "store_id_valid",
        "drop",
        "store id has no digits, an unrecognised shape, or a number outside 1-999",
        lambda t: t.p_store_id.notnull(),
    ),
    RowRule(
        "sale_date_parseable",
        "drop",
        "sale date is missing or not a real date in an accepted format",
        lambda t: t.p_sale_date.notnull(),
        severities=("drop", "fail"),  # a row without a date has no partition
    ),
    RowRule(
        "quantity_positive_integer",
        "drop",
        "quantity is missing or not a whole number >= 1",
        lambda t: t.p_quantity >= 1,
        severities=("drop", "fail"),  # no quantity, no total
    ),
    RowRule(
        "customer_id_present",
        "drop",
        "customer id is missing (a sale nobody made cannot feed customer metrics)",
        lambda t: t.p_customer_id.notnull(),
        severities=("drop", "fail"),  # customer_id is required in silver
    ),
    RowRule(
        "amount_present",
        "drop",
        "price and total are both missing or unparseable, so the amount cannot be derived",
        lambda t: t.p_price.notnull() | t.p_total.notnull(),
        severities=("drop", "fail"),  # no amount to keep
    ),
    # warn rules: the row is kept (and, for repairs, flagged in its own columns)
    RowRule(
        "product_in_catalogue",
        "warn",
        "product is not one of the catalogue's five (kept as sent, trimmed)",
        # parse() computes p_product_known from the rule set's catalogue
        lambda t: t.p_product_known,
        metric="unknown_products",
    ),
    RowRule(
        "status_recognised",
        "warn",
        "status is missing or unrecognised (kept as 'unknown')",
        lambda t: t.p_status != std.UNKNOWN_STATUS,
    ),
    RowRule(
        "price_present",
        "warn",
        "unit price is missing or unparseable (imputed as round(total / quantity, 2))",
        lambda t: t.p_price.notnull(),
        metric="price_imputed",
    ),
    RowRule(
        "total_consistent",
        "warn",
        "total is missing or differs from quantity x unit price by more than 0.01 (recomputed)",
        lambda t: (
            t.p_price.isnull()
            | (
                t.p_total.notnull()
                & (
                    (t.p_total - std.line_total(t.p_price, t.p_quantity)).abs()
                    <= std.TOTAL_TOLERANCE
                )
            )
        ),
        metric="total_checked_failed",
    ),
    RowRule(
        QUARANTINE_SHARE_RULE,
        "fail",
        "share of a bronze batch quarantined is above settings.quarantine_fail_share (the batch "
        "is held back, later batches go on: see `medallion held`)",
        severities=(),  # only its fail_share is configurable
    ),
    RowRule(
        BATCH_QUARANTINED_RULE,
        "drop",
        "the quality gate held this row's batch and an operator quarantined the batch whole "
        "(`medallion held --quarantine`)",
        severities=(),  # an operator's decision, not a check: nothing to configure
    ),
)

STORE_RULE = "store_id_valid"
PRODUCT_RULE = "product_in_catalogue"
NOT_CONFIGURABLE = frozenset({BATCH_QUARANTINED_RULE})
_DECLARED = {r.name: r for r in RULES}


def check_override(name: str, severity: str | None, fail_share: float | None) -> None:
    """ValueError (the settings' validation message) for an override no rule can take."""
    rule = _DECLARED.get(name)
    if rule is None:
        guess = difflib.get_close_matches(name, list(_DECLARED), n=1)
        hint = f" (did you mean {guess[0]!r}?)" if guess else ""
        known = ", ".join(r.name for r in RULES if r.name not in NOT_CONFIGURABLE)
        raise ValueError(
            f"unknown rule {name!r}{hint}: the rules are {known} (`medallion rules` lists them)"
        )
    if name in NOT_CONFIGURABLE:
        raise ValueError(f"rule {name!r} records an operator's decision: it takes no settings")
    if severity is not None and severity not in rule.severities:
        allowed = " or ".join(rule.severities) or "none (only fail_share)"
        raise ValueError(f"rule {name!r} cannot be {severity!r}: its severity may be {allowed}")


@dataclass(frozen=True)
class ResolvedRule:
    """A declared rule with its severity and fail_share for one lake, and where they came from."""

    rule: RowRule  # the declaration, with the resolved severity (and reference in its reason)
    fail_share: float | None  # hold a batch when more than this share breaks it (None: never)
    severity_source: str = "default"
    fail_share_source: str = "default"

    @property
    def name(self) -> str:
        return self.rule.name


@dataclass(frozen=True)
class RuleSet:
    """Silver's rules as one lake applies them: what the pure transforms take.

    `catalogue` maps a case-folded product to its spelling; `stores` is the set of known store
    numbers (None: any number in 1-999); `aliases` maps a source column to the `_rescued_data`
    keys to read it from when the file had no such column (exact spellings, in order).
    """

    resolved: tuple[ResolvedRule, ...]
    catalogue: Mapping[str, str] = field(default_factory=lambda: dict(std.CATALOGUE))
    stores: frozenset[int] | None = None
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    products_source: str = "default"
    stores_source: str = "default"
    # The catalogue as a table on the lake's engine, for catalogues too big for a CASE (see
    # transform.CASE_CATALOGUE_LIMIT); bound by `reference.for_lake` (an engine's own table:
    # the Spark engine does not register Ibis memtables).
    catalogue_table: ir.Table | None = field(default=None, compare=False, repr=False)

    def catalogue_arrow(self) -> pa.Table:
        keys = sorted(self.catalogue)
        return pa.table({"_cat_key": keys, "_cat_name": [self.catalogue[k] for k in keys]})

    @property
    def rules(self) -> tuple[RowRule, ...]:
        return tuple(r.rule for r in self.resolved)

    @property
    def row_rules(self) -> tuple[RowRule, ...]:
        return tuple(r for r in self.rules if r.passes is not None)

    @property
    def drop_rules(self) -> tuple[RowRule, ...]:
        """Rules whose breaking rows go to the quarantine (`fail` rules quarantine them too)."""
        return tuple(r for r in self.row_rules if r.severity in ("drop", "fail"))

    def get(self, name: str) -> ResolvedRule:
        for r in self.resolved:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def quarantine_fail_share(self) -> float:
        share = self.get(QUARANTINE_SHARE_RULE).fail_share
        return 1.0 if share is None else share

    @property
    def gated(self) -> tuple[ResolvedRule, ...]:
        """Row rules with a threshold of their own (a per-rule gate on each batch)."""
        return tuple(
            r for r in self.resolved if r.rule.passes is not None and r.fail_share is not None
        )

    @property
    def ungated_drop_rules(self) -> tuple[RowRule, ...]:
        """Drop rules the quarantine-share gate covers: those without a threshold of their own."""
        own = {r.name for r in self.gated}
        return tuple(r for r in self.drop_rules if r.name not in own)

    @property
    def store_kept_as_sent(self) -> bool:
        """store_id_valid is `warn`: a row with an invalid store is kept with the id as sent."""
        return self.get(STORE_RULE).rule.severity == "warn"

    @property
    def catalogue_is_default(self) -> bool:
        return dict(self.catalogue) == std.CATALOGUE


def _fingerprint(values: Iterable[object]) -> str:
    return hashlib.sha256("\n".join(map(str, values)).encode()).hexdigest()[:12]


def _with_reference(
    rule: RowRule,
    catalogue: Mapping[str, str],
    products: str,
    stores: frozenset[int] | None,
    stores_source: str,
) -> RowRule:
    """The reason of a reference-backed rule names its reference (so a new catalogue reads as
    a changed rule to `medallion plan`)."""
    if rule.name == PRODUCT_RULE and products != "default":
        names = sorted(catalogue.values())
        return replace(
            rule,
            description=(
                f"product is not in the catalogue ({products}: {len(names):,} products, "
                f"sha {_fingerprint(names)}; kept as sent, trimmed)"
            ),
        )
    if rule.name == STORE_RULE and stores is not None:
        return replace(
            rule,
            description=(
                "store id has no digits, an unrecognised shape, or is not one of the known stores "
                f"({stores_source}: {len(stores):,} stores, sha {_fingerprint(sorted(stores))})"
            ),
        )
    return rule


def build(
    overrides: Mapping[str, tuple[Severity | None, float | None]] | None = None,
    *,
    quarantine_fail_share: float = 0.20,
    catalogue: Mapping[str, str] | None = None,
    stores: Iterable[int] | None = None,
    aliases: Mapping[str, tuple[str, ...]] | None = None,
    sources: Mapping[str, tuple[str, str]] | None = None,
    products_source: str = "default",
    stores_source: str = "default",
) -> RuleSet:
    """A RuleSet from the declarations and overrides {rule: (severity, fail_share)}."""
    overrides = overrides or {}
    sources = sources or {}
    cat = dict(catalogue) if catalogue is not None else dict(std.CATALOGUE)
    known_stores = frozenset(stores) if stores is not None else None
    resolved = []
    for rule in RULES:
        severity, share = overrides.get(rule.name, (None, None))
        if rule.name in overrides:
            check_override(rule.name, severity, share)
        declared = rule
        if severity is not None:
            declared = replace(declared, severity=severity)
        declared = _with_reference(declared, cat, products_source, known_stores, stores_source)
        if rule.name == QUARANTINE_SHARE_RULE and share is None:
            share = quarantine_fail_share
        elif share is None and declared.severity == "fail" and declared.passes is not None:
            share = 0.0  # a `fail` row rule holds a batch with any breaking row
        sev_src, share_src = sources.get(rule.name, ("default", "default"))
        resolved.append(ResolvedRule(declared, share, sev_src, share_src))
    return RuleSet(tuple(resolved), cat, known_stores, dict(aliases or {}),
                   products_source, stores_source)  # fmt: skip


DEFAULT_RULES = build()
# The declarations as defaults (tests and docs); a lake's rules come from `resolve`.
ROW_RULES: tuple[RowRule, ...] = DEFAULT_RULES.row_rules
DROP_RULES: tuple[RowRule, ...] = DEFAULT_RULES.drop_rules


def resolve(settings: Settings, rescued_keys: Iterable[str] = ()) -> RuleSet:
    """The lake's rule set: declarations, then [rules.*], [reference] and [columns] settings.

    `rescued_keys` are the `_rescued_data` keys bronze holds (from `_meta/ingested_files`), so
    an alias is read under the spelling each file used (aliases match case-insensitively).
    """
    from medallion_lakehouse.silver import reference

    overrides = {n: (o.severity, o.fail_share) for n, o in settings.rules.items()}
    sources = reference.rule_sources(settings)
    catalogue, products_source = reference.catalogue(settings)
    stores, stores_source = reference.stores(settings)
    return build(
        overrides,
        quarantine_fail_share=settings.quarantine_fail_share,
        catalogue=catalogue,
        stores=stores,
        aliases=alias_keys(settings.columns, rescued_keys),
        sources=sources,
        products_source=products_source,
        stores_source=stores_source,
    )


def alias_keys(
    columns: Mapping[str, list[str]], rescued_keys: Iterable[str]
) -> dict[str, tuple[str, ...]]:
    """Per source column, the rescued keys (exact spellings) that are one of its aliases."""
    from medallion_lakehouse.bronze.readers import normalise_header

    keys = sorted(set(rescued_keys))
    out: dict[str, tuple[str, ...]] = {}
    for column, aliases in columns.items():
        wanted = [a.strip().lower() for a in aliases]
        found: list[str] = []
        for alias in wanted:
            # the alias's own spelling first (a file not yet seen), then the seen spellings
            for key in [alias, *keys]:
                if normalise_header(key) == alias and key not in found and std.json_key_ok(key):
                    found.append(key)
        if found:
            out[column] = tuple(found)
    return out


def get_rule(name: str, rules: RuleSet = DEFAULT_RULES) -> RowRule:
    return rules.get(name).rule


def first_failed(t: ir.Table, rules: RuleSet) -> ir.StringValue:
    """Name of the first drop (or fail) rule a row breaks, NULL when it breaks none."""
    return ibis.cases(*((r.failed(t), r.name) for r in rules.drop_rules), else_=ibis.null("string"))


def reason_of(rule_name: ir.StringValue, rules: RuleSet) -> ir.StringValue:
    """The reason in words of a rule given its name."""
    return ibis.cases(
        *((rule_name == r.name, r.description) for r in rules.rules), else_=ibis.null("string")
    )


@dataclass(frozen=True)
class BatchShare:
    batch_id: str
    rows: int
    dropped: int

    @property
    def share(self) -> float:
        return self.dropped / self.rows if self.rows else 0.0


@dataclass(frozen=True)
class Breach:
    """A batch above a rule's fail_share: the gate holds it."""

    rule: str
    failed: int
    rows: int
    threshold: float

    @property
    def share(self) -> float:
        return self.failed / self.rows if self.rows else 0.0


def breaches(stats: Mapping[str, object], rules: RuleSet) -> list[Breach]:
    """The gates one batch's stats (`transform.batch_stats`) break: the quarantine share (rows
    breaking drop rules without a threshold of their own), then each rule with a fail_share."""
    rows = int(stats.get("rows") or 0)  # type: ignore[call-overload]
    if not rows:
        return []
    found = []
    ungated = int(stats.get("dropped_ungated", stats.get("dropped")) or 0)  # type: ignore[call-overload]
    if ungated / rows > rules.quarantine_fail_share:
        found.append(Breach(QUARANTINE_SHARE_RULE, ungated, rows, rules.quarantine_fail_share))
    for r in rules.gated:
        failed = int(stats.get(f"failed__{r.name}") or 0)  # type: ignore[call-overload]
        assert r.fail_share is not None
        if failed / rows > r.fail_share:
            found.append(Breach(r.name, failed, rows, r.fail_share))
    return found
