"""Batches the quality gate held back, and the operator's decision about each.

The gate holds one batch, not the lake: a batch whose quarantined share is above
`quarantine_fail_share` is recorded here as `held` and left out of the run, while later batches
go on. Each silver run checks held batches again (a raised threshold lets one through). An
operator settles a held batch for good with `medallion held`:

- `accepted`: process it whatever its share (its bad rows go to the quarantine as usual);
- `quarantined`: every row of it goes to the quarantine (rule `held_batch_quarantined`);
- `dropped`: never processed; it stays in bronze and `medallion audit` lists it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import pyarrow as pa

from medallion_lakehouse.errors import ConfigError
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.silver.contract import HELD_BATCHES
from medallion_lakehouse.storage.delta import CommitInfo

Decision = Literal["accepted", "quarantined", "dropped"]
DECISIONS: tuple[Decision, ...] = ("accepted", "quarantined", "dropped")


@dataclass(frozen=True)
class HeldBatch:
    batch_id: str
    seq: int | None
    source_file: str | None
    state: str  # held | accepted | quarantined | dropped
    rows: int
    rows_failed: int
    threshold: float | None
    reason: str | None
    held_run_id: str | None

    @property
    def share(self) -> float:
        return self.rows_failed / self.rows if self.rows else 0.0


def current(lake: Lake) -> dict[str, HeldBatch]:
    """Every batch ever held, with its current state (a decision, once made, is final)."""
    out: dict[str, HeldBatch] = {}
    for row in lake.read_arrow(HELD_BATCHES.name).to_pylist():
        known = out.get(row["batch_id"])
        if row["state"] == "held":
            if known is None:  # keep the first hold's figures
                out[row["batch_id"]] = _from_row(row)
            continue
        base = known or _from_row(row)
        out[row["batch_id"]] = HeldBatch(
            base.batch_id, base.seq, base.source_file, row["state"], base.rows,
            base.rows_failed, base.threshold, row["reason"] or base.reason, base.held_run_id,
        )  # fmt: skip
    return out


def _from_row(row: dict[str, object]) -> HeldBatch:
    return HeldBatch(
        batch_id=str(row["batch_id"]),
        seq=row["seq"],  # type: ignore[arg-type]
        source_file=row["source_file"],  # type: ignore[arg-type]
        state=str(row["state"]),
        rows=int(row["rows"] or 0),  # type: ignore[call-overload]
        rows_failed=int(row["rows_failed"] or 0),  # type: ignore[call-overload]
        threshold=row["threshold"],  # type: ignore[arg-type]
        reason=row["reason"],  # type: ignore[arg-type]
        held_run_id=row["run_id"],  # type: ignore[arg-type]
    )


def record(lake: Lake, batches: list[HeldBatch], *, run_id: str, commit: CommitInfo) -> None:
    """Append one event per batch (its `state` is the event)."""
    if not batches:
        return
    now = datetime.now(UTC)
    rows = [
        {
            "batch_id": b.batch_id,
            "seq": b.seq,
            "source_file": b.source_file,
            "state": b.state,
            "rows": b.rows,
            "rows_failed": b.rows_failed,
            "threshold": b.threshold,
            "reason": b.reason,
            "run_id": run_id,
            "recorded_at": now,
        }
        for b in batches
    ]
    lake.write_arrow(
        HELD_BATCHES.name, pa.Table.from_pylist(rows, schema=HELD_BATCHES.schema), commit=commit
    )


def decide(
    lake: Lake, batch_id: str, decision: Decision, *, note: str | None, commit: CommitInfo
) -> HeldBatch:
    """Record the operator's decision about a held batch; ConfigError if it cannot be made."""
    held = current(lake)
    batch = held.get(batch_id)
    if batch is None:
        known = ", ".join(sorted(b for b, h in held.items() if h.state == "held")) or "none"
        raise ConfigError(f"Batch {batch_id!r} is not held by the quality gate (held: {known}).")
    if batch.state != "held":
        raise ConfigError(
            f"Batch {batch_id} was already {batch.state}; a decision about a held batch is final."
        )
    decided = HeldBatch(
        batch.batch_id, batch.seq, batch.source_file, decision, batch.rows, batch.rows_failed,
        batch.threshold, note or f"{decision} by an operator", batch.held_run_id,
    )  # fmt: skip
    record(lake, [decided], run_id=commit.run_id, commit=commit)
    return decided
