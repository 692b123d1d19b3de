"""Synthetic retail sales with real-world defects: `generate(GenerateOptions(...), out_dir)`."""

from __future__ import annotations

from medallion_lakehouse.generate.generator import LandingNotEmptyError, generate
from medallion_lakehouse.generate.manifest import MANIFEST_NAME, FileStats, Manifest
from medallion_lakehouse.generate.options import FileFormat, GenerateOptions

__all__ = [
    "MANIFEST_NAME",
    "FileFormat",
    "FileStats",
    "GenerateOptions",
    "LandingNotEmptyError",
    "Manifest",
    "generate",
]
