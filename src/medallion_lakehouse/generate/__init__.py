"""Synthetic retail sales with real-world defects: `generate(GenerateOptions(...), out_dir)`.

The generator and the manifest load NumPy and pandas, so they are imported on first use: every
`medallion` command imports this package for its options, and a run with nothing to do should
not pay for the generator.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from medallion_lakehouse.generate.options import FileFormat, GenerateOptions

if TYPE_CHECKING:
    from medallion_lakehouse.generate.generator import LandingNotEmptyError, generate
    from medallion_lakehouse.generate.manifest import MANIFEST_NAME, FileStats, Manifest

_LAZY = {
    "LandingNotEmptyError": "generator",
    "generate": "generator",
    "MANIFEST_NAME": "manifest",
    "FileStats": "manifest",
    "Manifest": "manifest",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "MANIFEST_NAME",
    "FileFormat",
    "FileStats",
    "GenerateOptions",
    "LandingNotEmptyError",
    "Manifest",
    "generate",
]
