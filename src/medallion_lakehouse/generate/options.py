"""Options of `medallion generate`: one frozen dataclass, validated, resolved before use.

The manifest records the *resolved* options (concrete dates, customer count, effective
fractions), so a manifest alone is enough to regenerate byte-identical files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

from medallion_lakehouse.errors import ConfigError

FileFormat = Literal["csv", "jsonl", "parquet"]
FORMATS: tuple[FileFormat, ...] = ("csv", "jsonl", "parquet")

# Average purchases per customer when --customers is not given: 1M rows -> 20k customers,
# the size the churn model is designed around.
ROWS_PER_CUSTOMER = 50
DEFAULT_CHUNK_ROWS = 500_000  # ~300 MB peak; larger chunks cost memory, not time


@dataclass(frozen=True)
class GenerateOptions:
    """What to generate. Fractions are shares of `rows` (distinct sales)."""

    rows: int = 100_000
    customers: int | None = None  # None: rows // 50, at least 100
    stores: int = 180
    start: date | None = None  # None: one year before today
    end: date | None = None  # None: yesterday
    seed: int = 42
    format: FileFormat = "csv"
    files: int = 1
    late_fraction: float = 0.01
    update_fraction: float = 0.02
    duplicate_fraction: float = 0.005
    invalid_fraction: float = 0.002
    missing_price_fraction: float = 0.05
    missing_status_fraction: float = 0.03
    seed_compatible: bool = False
    chunk_rows: int = DEFAULT_CHUNK_ROWS

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.rows < 1:
            problems.append("rows must be at least 1")
        if self.customers is not None and self.customers < 1:
            problems.append("customers must be at least 1")
        if not 1 <= self.stores <= 999:
            problems.append("stores must be between 1 and 999 (store ids are NW-001..NW-999)")
        if self.files < 1:
            problems.append("files must be at least 1")
        if self.format not in FORMATS:
            problems.append(f"format must be one of {', '.join(FORMATS)}")
        if self.chunk_rows < 1_000:
            problems.append("chunk_rows must be at least 1000")
        for name in (
            "late_fraction",
            "update_fraction",
            "duplicate_fraction",
            "invalid_fraction",
            "missing_price_fraction",
            "missing_status_fraction",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 0.5:
                problems.append(f"{name} must be between 0 and 0.5, got {value}")
        if self.start and self.end and self.end < self.start:
            problems.append(f"end ({self.end}) is before start ({self.start})")
        if self.start and self.end and (self.end - self.start).days + 1 < self.files:
            problems.append("files must not exceed the number of days between start and end")
        if problems:
            raise ConfigError("Invalid generate options: " + "; ".join(problems) + ".")

    def resolved(self, today: date | None = None) -> GenerateOptions:
        """Concrete values for every default, so the manifest can reproduce the run."""
        today = today or date.today()
        end = self.end or (today - timedelta(days=1))
        start = self.start or (end - timedelta(days=364))
        customers = self.customers or max(100, self.rows // ROWS_PER_CUSTOMER)
        # Without a sale_id a correction cannot be matched to its sale: none in seed mode.
        update_fraction = 0.0 if self.seed_compatible else self.update_fraction
        # A single file is a single batch: nothing in it can arrive late.
        late_fraction = 0.0 if self.files == 1 else self.late_fraction
        return dataclasses.replace(
            self,
            start=start,
            end=end,
            customers=customers,
            update_fraction=update_fraction,
            late_fraction=late_fraction,
        )

    @property
    def days(self) -> int:
        """Number of calendar days covered (only meaningful once resolved)."""
        assert self.start is not None and self.end is not None, "resolve() the options first"
        return (self.end - self.start).days + 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (dates as ISO strings)."""
        out = dataclasses.asdict(self)
        for key in ("start", "end"):
            if out[key] is not None:
                out[key] = out[key].isoformat()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerateOptions:
        """Inverse of `to_dict`, e.g. to regenerate from a manifest."""
        data = dict(data)
        for key in ("start", "end"):
            if isinstance(data.get(key), str):
                data[key] = date.fromisoformat(data[key])
        return cls(**data)
