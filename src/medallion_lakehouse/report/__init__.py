"""The HTML report: `write_report(lake)` writes one self-contained page; `run` is its step."""

from __future__ import annotations

from medallion_lakehouse.report.step import ReportOutput, render, run, write_report

__all__ = ["ReportOutput", "render", "run", "write_report"]
