"""The report section that scores the silver rules against the generator's injected defects.

Kept apart from `step.py` (one line registers it there); the scoring is `look/manifest_score.py`.
"""

from __future__ import annotations

from html import escape

from medallion_lakehouse.bronze.contract import BRONZE_SALES
from medallion_lakehouse.generate.manifest import MANIFEST_NAME
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.look import manifest_score
from medallion_lakehouse.report.html import Section, badge, placeholder, table

TITLE = "Rules against known defects"


def manifest_section(lake: Lake) -> Section:
    """Caught, missed and false alarms per defect kind, when the landing files have a manifest."""
    section = Section(
        "manifest",
        TITLE,
        "Files made by <code>medallion generate</code> come with <code>_manifest.json</code>, "
        "which counts every defect injected per file. Here the rules (and silver's dedup) are "
        "scored against it, file by file: a kind with misses or false alarms is a rule to fix.",
    )
    if not lake.exists(BRONZE_SALES.name):
        section.state = "empty"
        section.body = placeholder([BRONZE_SALES.name], "run <code>medallion run</code>")
        return section
    try:
        score = manifest_score.score(lake)
    except manifest_score.ManifestError:
        # Real feeds have no manifest: nothing is missing, the section just does not apply.
        section.body = (
            f"<p>Not applicable: the landing folder has no <code>{MANIFEST_NAME}</code> (only "
            "<code>medallion generate</code> writes one), so there are no known defects to "
            "score the rules against.</p>"
        )
        return section
    if not score.files:
        section.state = "empty"
        section.body = placeholder(["bronze/sales"], "run <code>medallion run</code>")
        return section
    rows = [
        (
            k.kind,
            k.caught_by,
            k.injected,
            k.caught,
            k.missed,
            k.false_alarms,
            badge("exact", "ok")
            if k.missed == 0 and k.false_alarms == 0
            else badge("off", "bad" if k.missed else "warn"),
        )
        for k in score.kinds
    ]
    note = ""
    if score.missing_files:
        names = ", ".join(f"<code>{escape(n)}</code>" for n in score.missing_files)
        note = f"<p>Not in bronze yet, so not scored: {names}.</p>"
    section.body = (
        table(
            rows,
            ["defect kind", "caught by", "injected", "caught", "missed", "false alarms", "result"],
            numeric=(2, 3, 4, 5),
            raw=(6,),
        )
        + note
    )
    return section
