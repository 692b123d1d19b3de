"""The report's raw-data exploration panel: draws what `generate.explore` computes."""

from __future__ import annotations

from medallion_lakehouse.storage.lake import Lake


def exploration_body(lake: Lake) -> tuple[str | None, list[str]]:
    """HTML of the exploration panel and its plot ids, or (None, []) without raw data."""
    return None, []
