"""Intents: what a unit of work spanning several commits is about to do, recorded before it starts.

A landing file's ingest commits to bronze/sales, bronze/sales_rejects and `_meta/ingested_files`;
a silver full refresh overwrites the quarantine, silver/sales and the batch ledger. No Delta
transaction spans tables, so each such unit first appends a `started` row to `_meta/intents`
and, where the unit has no completion record of its own, a `done` row at the end. An intent
still `started` when the next run begins is an unfinished write *of this lake*, which is the only
evidence recovery acts on: it completes the work, it never deletes what it cannot place.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from medallion_lakehouse.lake import Lake
from medallion_lakehouse.meta import INTENTS
from medallion_lakehouse.storage.delta import CommitInfo

State = Literal["started", "done", "abandoned"]
_RANK: dict[str, int] = {"started": 0, "abandoned": 1, "done": 2}


@dataclass(frozen=True)
class Intent:
    intent_id: str
    step: str
    kind: str
    state: State
    seq: int | None
    payload: dict[str, Any]
    run_id: str


def record(
    lake: Lake,
    intents: Iterable[Intent],
    *,
    commit: CommitInfo,
) -> None:
    """Append intent state rows in one commit."""
    now = datetime.now(UTC)
    rows = [
        {
            "intent_id": i.intent_id,
            "step": i.step,
            "kind": i.kind,
            "state": i.state,
            "seq": i.seq,
            "payload": json.dumps(i.payload, sort_keys=True, default=str),
            "run_id": i.run_id,
            "recorded_at": now,
        }
        for i in intents
    ]
    if rows:
        lake.write_arrow(
            INTENTS.name, pa.Table.from_pylist(rows, schema=INTENTS.schema), commit=commit
        )


def latest(lake: Lake, step: str) -> dict[str, Intent]:
    """The current state of every intent of `step`, by intent_id.

    `done` and `abandoned` are final, so the state does not depend on the order rows are read in
    (files of an append-only table are not guaranteed to come back in commit order).
    """
    table = lake.read_arrow(INTENTS.name, where={"step": [step]})
    out: dict[str, Intent] = {}
    for row in table.to_pylist():
        current = out.get(row["intent_id"])
        if current is not None and _RANK[current.state] >= _RANK[row["state"]]:
            continue
        out[row["intent_id"]] = Intent(
            intent_id=row["intent_id"],
            step=row["step"],
            kind=row["kind"],
            state=row["state"],
            seq=row["seq"],
            payload=json.loads(row["payload"] or "{}"),
            run_id=row["run_id"],
        )
    return out


def unfinished(lake: Lake, step: str, kind: str | None = None) -> list[Intent]:
    """Intents of `step` (and `kind`) still `started`, oldest first."""
    found = [
        i
        for i in latest(lake, step).values()
        if i.state == "started" and (kind is None or i.kind == kind)
    ]
    return sorted(found, key=lambda i: (i.seq if i.seq is not None else -1, i.intent_id))


def max_seq(lake: Lake, step: str) -> int | None:
    """The largest sequence number any intent of `step` was given."""
    values = lake.read_arrow(INTENTS.name, columns=["seq"], where={"step": [step]}).column("seq")
    top = pc.max(values).as_py() if len(values) else None
    return None if top is None else int(top)
