"""`_manifest.json`: what a generate run wrote and every defect it injected, by file.

Tests and the pipeline's own checks compare what silver quarantines, dedupes and corrects
against these counts, so they count physical lines exactly as written.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medallion_lakehouse.generate.defects import TRANSITIONS
from medallion_lakehouse.generate.options import GenerateOptions
from medallion_lakehouse.generate.sales import INVALID_KINDS

MANIFEST_NAME = "_manifest.json"


def _zeros(names: tuple[str, ...]) -> dict[str, int]:
    return dict.fromkeys(names, 0)


@dataclass
class FileStats:
    """One landing file: its lines and the defects in it."""

    name: str
    rows: int = 0  # data lines written (header excluded)
    fresh_rows: int = 0  # first sends of a sale (on time or late)
    late_rows: int = 0  # fresh rows dated before this file's own period
    duplicate_rows: int = 0  # exact copies of another line of this file
    update_rows: int = 0  # re-sends of a sale from an earlier file with a later status
    updates: dict[str, int] = field(
        default_factory=lambda: _zeros(tuple(t[0] for t in TRANSITIONS))
    )
    invalid: dict[str, int] = field(default_factory=lambda: _zeros(INVALID_KINDS))
    missing_price: int = 0  # lines with an empty price
    missing_status: int = 0  # lines with an empty status
    sale_date_from: str = ""  # this file's own period (on-time rows)
    sale_date_to: str = ""
    late_date_from: str | None = None  # where its late rows' dates fall
    late_date_to: str | None = None


@dataclass
class Manifest:
    """The whole run: resolved options, one `FileStats` per file, and totals."""

    generator: str
    seed: int
    options: dict[str, Any]
    columns: list[str]
    files: list[FileStats]

    @property
    def rows(self) -> int:
        """Data lines across all files."""
        return sum(f.rows for f in self.files)

    def defects(self) -> dict[str, Any]:
        """Totals of every injected defect across files."""
        updates = _zeros(tuple(t[0] for t in TRANSITIONS))
        invalid = _zeros(INVALID_KINDS)
        for f in self.files:
            for k, v in f.updates.items():
                updates[k] += v
            for k, v in f.invalid.items():
                invalid[k] += v
        return {
            "duplicate_rows": sum(f.duplicate_rows for f in self.files),
            "late_rows": sum(f.late_rows for f in self.files),
            "update_rows": sum(f.update_rows for f in self.files),
            "updates": updates,
            "invalid_rows": sum(invalid.values()),
            "invalid": invalid,
            "missing_price": sum(f.missing_price for f in self.files),
            "missing_status": sum(f.missing_status for f in self.files),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, totals included."""
        return {
            "generator": self.generator,
            "seed": self.seed,
            "options": self.options,
            "columns": self.columns,
            "totals": {
                "files": len(self.files),
                "rows": self.rows,
                "sales": sum(f.fresh_rows for f in self.files),
            },
            "defects": self.defects(),
            "files": [asdict(f) for f in self.files],
        }

    def write(self, folder: Path) -> Path:
        """Write `_manifest.json` into `folder` (deterministic: no timestamps)."""
        path = folder / MANIFEST_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @property
    def generate_options(self) -> GenerateOptions:
        """The resolved options, to regenerate the same files."""
        return GenerateOptions.from_dict(self.options)

    @classmethod
    def read(cls, path: Path) -> Manifest:
        """Load a manifest from a file or from the folder holding `_manifest.json`."""
        if path.is_dir():
            path = path / MANIFEST_NAME
        data = json.loads(path.read_text())
        return cls(
            generator=data["generator"],
            seed=data["seed"],
            options=data["options"],
            columns=data["columns"],
            files=[FileStats(**f) for f in data["files"]],
        )
