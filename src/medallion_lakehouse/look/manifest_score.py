"""Score the silver rules against the defects the generator injected (its `_manifest.json`).

The manifest counts defects per landing file and kind, not per line, so the score compares
counts per file (a miss in one file cannot hide behind a false alarm in another): in each file,
`caught = min(flagged, injected)`, `missed = injected - caught`, `false_alarms = flagged - caught`.
"Flagged" is what today's rules and dedup find in the bronze rows of that file, classified into
the generator's kinds from the parsed values (a store id with a number outside 1-999 is
`store_out_of_range`, one without a number `store_no_digits`, and so on).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medallion_lakehouse.bronze.contract import BRONZE_SALES
from medallion_lakehouse.errors import MedallionError
from medallion_lakehouse.generate.manifest import MANIFEST_NAME, FileStats, Manifest
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.silver import reference, transform
from medallion_lakehouse.silver import standardise as std
from medallion_lakehouse.silver.rules import RULES

if TYPE_CHECKING:
    import ibis.expr.types as ir

_RULE = {r.name: r for r in RULES}


def _failed(name: str) -> Callable[[ir.Table], ir.BooleanValue]:
    # The predicates only (severity does not matter here); parse bound the reference data.
    return lambda t: _RULE[name].failed(t)


# kind -> (what catches it, the per-row test on parsed rows, the manifest count of one file)
KINDS: dict[str, tuple[str, Callable[[ir.Table], ir.BooleanValue], Callable[[FileStats], int]]] = {
    "quantity_zero": (
        "quantity_positive_integer",
        lambda t: _failed("quantity_positive_integer")(t) & t.p_quantity.notnull(),
        lambda f: f.invalid.get("quantity_zero", 0),
    ),
    "quantity_text": (
        "quantity_positive_integer",
        lambda t: _failed("quantity_positive_integer")(t) & t.p_quantity.isnull(),
        lambda f: f.invalid.get("quantity_text", 0),
    ),
    "store_no_digits": (
        "store_id_valid",
        lambda t: _failed("store_id_valid")(t) & std.store_number(t.store_id).isnull(),
        lambda f: f.invalid.get("store_no_digits", 0),
    ),
    "store_out_of_range": (
        "store_id_valid",
        lambda t: _failed("store_id_valid")(t) & std.store_number(t.store_id).notnull(),
        lambda f: f.invalid.get("store_out_of_range", 0),
    ),
    "date_unparseable": (
        "sale_date_parseable",
        _failed("sale_date_parseable"),
        lambda f: f.invalid.get("date_unparseable", 0),
    ),
    "missing_price": ("price_present", _failed("price_present"), lambda f: f.missing_price),
    "missing_status": (
        "status_recognised",
        _failed("status_recognised"),
        lambda f: f.missing_status,
    ),
}
# Found by silver's dedup rather than a rule: exact copies, and later versions of a sale.
DEDUP_KINDS: dict[str, tuple[str, Callable[[FileStats], int]]] = {
    "duplicate_rows": ("dedup: same sale_id, same content", lambda f: f.duplicate_rows),
    "update_rows": ("dedup: later version of a sale_id", lambda f: f.update_rows),
}


class ManifestError(MedallionError):
    """No manifest where one was asked for, or one that does not match the lake."""

    exit_code = 2


@dataclass(frozen=True)
class KindScore:
    kind: str
    caught_by: str  # the rule (or dedup) that should catch this kind
    injected: int
    flagged: int
    caught: int
    missed: int
    false_alarms: int


@dataclass
class ManifestScore:
    manifest: str
    files: list[str] = field(default_factory=list)  # manifest files found in bronze
    missing_files: list[str] = field(default_factory=list)  # in the manifest, not in bronze
    kinds: list[KindScore] = field(default_factory=list)

    @property
    def perfect(self) -> bool:
        return all(k.missed == 0 and k.false_alarms == 0 for k in self.kinds)

    def as_dict(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest,
            "perfect": self.perfect,
            "files": self.files,
            "missing_files": self.missing_files,
            "kinds": [k.__dict__ for k in self.kinds],
        }


def find_manifest(lake: Lake, path: Path | None = None) -> Path:
    candidate = Path(path) if path is not None else Path(lake.settings.landing_path)
    if candidate.is_dir():
        candidate = candidate / MANIFEST_NAME
    if not candidate.is_file():
        raise ManifestError(
            f"No generator manifest at {candidate}: `medallion generate` writes {MANIFEST_NAME} "
            "next to the landing files it makes."
        )
    return candidate


def _flagged(lake: Lake, names: list[str]) -> dict[str, dict[str, int]]:
    """Per landing file (by name), how many of its bronze rows each kind's test flags."""
    bronze = lake.read(BRONZE_SALES.name)
    mine = bronze.filter(bronze._source_file.isin(names))
    parsed = transform.parse(mine, reference.for_lake(lake))
    counts = {kind: test(parsed).cast("int64").sum() for kind, (_, test, _) in KINDS.items()}
    rows = lake.engine.to_arrow(parsed.group_by("_source_file").aggregate(**counts)).to_pylist()
    out = {r["_source_file"]: {k: int(r[k] or 0) for k in KINDS} for r in rows}

    typed = transform.typed(parsed)
    content = [c for c in typed.columns if not c.startswith("_")]
    copies = typed.group_by("_source_file", *content).aggregate(n=typed.count())
    dup = lake.engine.to_arrow(
        copies.group_by("_source_file").aggregate(extra=(copies.n - 1).sum())
    ).to_pylist()
    # A later version: a sale_id first seen in an earlier batch (the lake's batch order).
    first = typed.group_by("sale_id").aggregate(first_seq=typed._batch_seq.min())
    later = typed.inner_join(first, "sale_id")
    later = later.filter(later._batch_seq > later.first_seq)
    # One update per distinct content per file: an exact copy of an update is a duplicate.
    upd = later.select("_source_file", *content).distinct()
    updates = lake.engine.to_arrow(
        upd.group_by("_source_file").aggregate(n=upd.count())
    ).to_pylist()
    for r in dup:
        out.setdefault(r["_source_file"], dict.fromkeys(KINDS, 0))["duplicate_rows"] = int(
            r["extra"] or 0
        )
    for r in updates:
        out.setdefault(r["_source_file"], dict.fromkeys(KINDS, 0))["update_rows"] = int(r["n"] or 0)
    return out


def score(lake: Lake, path: Path | None = None) -> ManifestScore:
    """Caught, missed and false alarms per defect kind, over the manifest's files in bronze."""
    where = find_manifest(lake, path)
    try:
        manifest = Manifest.read(where)
    except (ValueError, KeyError, TypeError) as exc:
        raise ManifestError(f"{where} is not a generator manifest: {exc}") from None
    landing = Path(lake.settings.landing_path).resolve()
    folder = where.parent.resolve()
    prefix = folder.relative_to(landing).as_posix() + "/" if folder.is_relative_to(landing) else ""
    prefix = "" if prefix == "./" else prefix
    names = {prefix + f.name: f for f in manifest.files}
    flagged = _flagged(lake, sorted(names))
    result = ManifestScore(manifest=str(where))
    result.files = sorted(n for n in names if n in flagged)
    result.missing_files = sorted(n for n in names if n not in flagged)
    every = {k: (rule, count) for k, (rule, _, count) in KINDS.items()} | DEDUP_KINDS
    for kind, (rule, injected_of) in every.items():
        injected = flagged_total = caught = 0
        for name in result.files:
            want = injected_of(names[name])
            got = flagged[name].get(kind, 0)
            injected += want
            flagged_total += got
            caught += min(want, got)
        result.kinds.append(
            KindScore(
                kind=kind,
                caught_by=rule,
                injected=injected,
                flagged=flagged_total,
                caught=caught,
                missed=injected - caught,
                false_alarms=flagged_total - caught,
            )
        )
    return result
