"""What in the lake needs an operator: landing files bronze could not read, batches held back.

`medallion status` and the HTML report show the same list, read from `_meta/runs` (the newest
bronze step's per-file outcomes) and `_meta/held_batches`.
"""

from __future__ import annotations

import json
from typing import Any

from medallion_lakehouse.lake import Lake
from medallion_lakehouse.meta import RUNS
from medallion_lakehouse.silver import held


def needs_attention(lake: Lake) -> dict[str, list[dict[str, Any]]]:
    """`failed_files` of the newest bronze step, and `held_batches` awaiting a decision."""
    failed: list[dict[str, Any]] = []
    runs = lake.read_arrow(RUNS.name, columns=["run_id", "step", "metrics"]).to_pylist()
    bronze = [r for r in runs if r["step"] == "bronze" and r["metrics"]]
    if bronze:
        newest = max(bronze, key=lambda r: r["run_id"])
        failed = [
            {"source_file": f["source_file"], "reason": f["reason"], "run_id": newest["run_id"]}
            for f in json.loads(newest["metrics"]).get("files", [])
            if f.get("status") == "failed"
        ]
    holds = [
        {"batch_id": h.batch_id, "source_file": h.source_file, "reason": h.reason}
        for h in held.current(lake).values()
        if h.state == "held"
    ]
    return {"failed_files": failed, "held_batches": holds}
