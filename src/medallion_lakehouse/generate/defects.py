"""Defects injected on purpose, at exact configured counts, so silver has something to fix.

Every function works on `SalesCodes` (integer codes), before rendering to strings, and returns
what it did so the manifest can count it. Defects are kept apart so each is countable: an
invalid row is never duplicated or corrected, and a corrected sale is corrected once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medallion_lakehouse.generate.sales import (
    COMPLETED,
    INVALID_KINDS,
    PENDING,
    RETURNED,
    STATUSES,
    CodeTables,
    SalesCodes,
)

# Corrections a source re-sends later: (name, status before, status after).
TRANSITIONS: tuple[tuple[str, int, int], ...] = (
    ("pending_to_completed", PENDING, COMPLETED),
    ("completed_to_returned", COMPLETED, RETURNED),
)
PENDING_SHARE_OF_UPDATES = 0.6  # most re-sends settle a pending order


class Quota:
    """Spreads an exact total over a stream of chunks in proportion to their sizes.

    `take(n)` after the whole stream (summing to `population`) has been seen returns `total`
    in all, whatever the chunking; unmet demand (a chunk had too few eligible rows) carries
    over to the next chunk.
    """

    def __init__(self, total: int, population: int) -> None:
        self.total = total
        self.population = max(population, 1)
        self.seen = 0
        self.carry = 0

    def take(self, n: int) -> int:
        before = self.seen * self.total // self.population
        self.seen += n
        after = self.seen * self.total // self.population
        return after - before + self.carry

    def shortfall(self, wanted: int, got: int) -> None:
        """Record that only `got` of `wanted` could be placed (carried to the next chunk)."""
        self.carry = wanted - got


def _status(codes: SalesCodes, tables: CodeTables) -> np.ndarray:
    """The status (0..3) of each row, or -1 when the status is missing."""
    status = codes.status % len(STATUSES)
    status[codes.status == tables.status_null] = -1
    return status


@dataclass
class ChunkDefects:
    """What was injected into one chunk of fresh rows."""

    lines: SalesCodes  # the rows to write, duplicates included
    invalid: dict[str, int]
    duplicates: int
    updates: SalesCodes  # corrected copies to send in a later file
    transitions: dict[str, int]
    wanted_updates: int


def inject(
    rng: np.random.Generator,
    codes: SalesCodes,
    tables: CodeTables,
    *,
    invalid: int,
    duplicates: int,
    updates: int,
) -> ChunkDefects:
    """Break `invalid` rows, pick `updates` sales to correct later, add `duplicates` copies."""
    n = len(codes)
    order = rng.permutation(n)
    invalid = min(invalid, n)
    bad, rest = order[:invalid], order[invalid:]

    # Invalid values: one broken field per row, kinds in equal shares.
    counts = dict.fromkeys(INVALID_KINDS, 0)
    kinds = rng.integers(0, len(INVALID_KINDS), len(bad))
    for k, kind in enumerate(INVALID_KINDS):
        rows = bad[kinds == k]
        counts[kind] = len(rows)
        column, spellings = tables.invalid_codes[kind]
        getattr(codes, column)[rows] = spellings[rng.integers(0, len(spellings), len(rows))]

    # Corrections: settle pending orders, return completed ones.
    status = _status(codes, tables)[rest]
    want_pending = min(round(updates * PENDING_SHARE_OF_UPDATES), int((status == PENDING).sum()))
    want_completed = min(updates - want_pending, int((status == COMPLETED).sum()))
    want_pending = min(updates - want_completed, int((status == PENDING).sum()))
    parts: list[SalesCodes] = []
    transitions: dict[str, int] = {}
    for (name, before, after), k in zip(TRANSITIONS, (want_pending, want_completed), strict=True):
        rows = rest[status == before][:k]
        transitions[name] = len(rows)
        update = codes.take(rows)
        update.status = np.full(len(rows), after, dtype=np.int64)  # canonical spelling
        parts.append(update)

    # Exact duplicates of valid rows, dropped in at random positions.
    duplicates = min(duplicates, len(rest))
    source = rest[len(rest) - duplicates :]
    index = np.insert(np.arange(n), rng.integers(0, n + 1, duplicates), source)
    return ChunkDefects(
        lines=codes.take(index),
        invalid=counts,
        duplicates=duplicates,
        updates=SalesCodes.concat(parts),
        transitions=transitions,
        wanted_updates=updates,
    )
