"""The data-quality rules of silver/sales, declared once, with severity and reason.

Severities follow Delta Live Tables expectations: `warn` keeps the row and counts it, `drop`
sends the row to silver/sales_quarantine, `fail` stops the run before anything is committed.
Row rules are predicates on the parsed table of `transform.parse` (its `p_*` columns) that are
True when the row *passes*. The one `fail` rule works on whole bronze batches (see `gate`): a
batch above the share is *held* (nothing of it is committed, later batches go on) until the
share falls under the threshold or an operator decides (`medallion held`).
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis
import ibis.expr.types as ir

from medallion_lakehouse.checks import RowRule
from medallion_lakehouse.silver import standardise as std

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
    ),
    RowRule(
        "quantity_positive_integer",
        "drop",
        "quantity is missing or not a whole number >= 1",
        lambda t: t.p_quantity >= 1,
    ),
    RowRule(
        "customer_id_present",
        "drop",
        "customer id is missing (a sale nobody made cannot feed customer metrics)",
        lambda t: t.p_customer_id.notnull(),
    ),
    RowRule(
        "amount_present",
        "drop",
        "price and total are both missing or unparseable, so the amount cannot be derived",
        lambda t: t.p_price.notnull() | t.p_total.notnull(),
    ),
    # warn rules: the row is kept (and, for repairs, flagged in its own columns)
    RowRule(
        "product_in_catalogue",
        "warn",
        "product is not one of the catalogue's five (kept as sent, trimmed)",
        lambda t: std.in_catalogue(t.p_product),
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
    ),
    RowRule(
        BATCH_QUARANTINED_RULE,
        "drop",
        "the quality gate held this row's batch and an operator quarantined the batch whole "
        "(`medallion held --quarantine`)",
    ),
)

ROW_RULES: tuple[RowRule, ...] = tuple(r for r in RULES if r.passes is not None)
DROP_RULES: tuple[RowRule, ...] = tuple(r for r in ROW_RULES if r.severity == "drop")


def get_rule(name: str) -> RowRule:
    for rule in RULES:
        if rule.name == name:
            return rule
    raise KeyError(name)


def first_failed(t: ir.Table) -> ir.StringValue:
    """Name of the first drop rule a row breaks, NULL when it breaks none."""
    return ibis.cases(*((r.failed(t), r.name) for r in DROP_RULES), else_=ibis.null("string"))


def reason_of(rule_name: ir.StringValue) -> ir.StringValue:
    """The reason in words of a rule given its name."""
    return ibis.cases(
        *((rule_name == r.name, r.description) for r in RULES), else_=ibis.null("string")
    )


@dataclass(frozen=True)
class BatchShare:
    batch_id: str
    rows: int
    dropped: int

    @property
    def share(self) -> float:
        return self.dropped / self.rows if self.rows else 0.0


def gate(batches: list[BatchShare], threshold: float) -> list[BatchShare]:
    """The batches whose dropped share is above `threshold` (the `fail` rule's breakers)."""
    return [b for b in batches if b.rows and b.share > threshold]
