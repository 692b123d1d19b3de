"""A first look at a landing file, as the original project's stage 1 did: pure computation.

`explore_file` streams the file in batches (bounded memory) through bronze's own readers, so
it sees exactly the columns, rows and rejected lines an ingest would (the same header rules,
quoting, compression and JSON handling), and returns plain data; `medallion explore` prints it
and the HTML report reuses it. An empty field counts as missing.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medallion_lakehouse.bronze import readers
from medallion_lakehouse.bronze.contract import SOURCE_COLUMNS
from medallion_lakehouse.errors import MedallionError

TOP_VALUES = 10
# Columns whose value counts are worth showing (others are ids or amounts).
CATEGORICAL = ("product", "status", "quantity")
# Columns whose distinct values are counted (a sale_id or price column would cost memory).
COUNTED = (*CATEGORICAL, "sale_date", "store_id", "customer_id")
# Upper edges of the `total` histogram buckets (the last bucket is open).
TOTAL_EDGES: tuple[float, ...] = (0, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
SAMPLE_CAP = 2_000_000  # totals kept for quantiles; thinned evenly beyond this

# Store-id shapes, most specific first; `invalid` is anything else.
STORE_SHAPES: tuple[tuple[str, str], ...] = (
    ("NW-<nnn>", r"^NW-0[0-9]{2}$"),
    ("NW-<n>", r"^NW-[0-9]{1,3}$"),
    ("NW<nnn>", r"^NW[0-9]{3}$"),
    ("<nnn>-NW", r"^[0-9]{3}-NW$"),
    ("nw <n>", r"^nw [0-9]{1,3}$"),
    ("<n>", r"^[0-9]{1,3}$"),
)

_SHAPE_PATTERNS = tuple((label, re.compile(pattern)) for label, pattern in STORE_SHAPES)


class ExploreError(MedallionError):
    """The file cannot be read for exploration."""

    exit_code = 2


@dataclass
class ColumnProfile:
    """One column: how many values are missing and what the common ones are."""

    name: str
    nulls: int = 0  # empty field (CSV) or null
    blank: int = 0  # only whitespace
    distinct: int | None = None  # exact, or None when the column has too many values to track
    top: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class TotalsProfile:
    """Distribution of the `total` column (values that parse as numbers)."""

    count: int = 0
    unparseable: int = 0
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    quantiles: dict[str, float] = field(default_factory=dict)  # p01, p25, p50, p75, p99
    histogram: list[tuple[str, int]] = field(default_factory=list)
    float_noise: int = 0  # values with more than two decimals, e.g. 321.45000000000005


@dataclass
class ExploreResult:
    """Everything `medallion explore` shows about a file."""

    path: str
    format: str
    size_bytes: int
    rows: int
    columns: list[str]
    column_profiles: list[ColumnProfile]
    store_shapes: dict[str, int]
    totals: TotalsProfile
    sale_date_min: str | None
    sale_date_max: str | None
    unparseable_dates: int
    rejected_lines: int = 0  # lines bronze would keep in bronze/sales_rejects

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


def _profiled(
    path: Path, profile: Callable[[Iterator[pa.RecordBatch]], ExploreResult]
) -> ExploreResult:
    """Run `profile` over the file's batches as bronze reads them (the fast CSV path, else the
    line-by-line one from the start), then fill in what the read itself learnt."""
    options = readers.ReaderOptions()
    report = readers.ParseReport()
    fmt = readers.file_format(path, options=options) or "csv"
    try:
        if fmt == "jsonl":
            result = profile(readers.read_jsonl(path, report, options=options))
        elif fmt == "parquet":
            result = profile(readers.read_parquet(path, report, options=options))
        else:
            header = readers.read_csv_header(path, options=options)
            if header is None:
                result = profile(iter(()))
            else:
                try:
                    result = profile(readers.stream_csv_fast(path, header, report, options=options))
                except readers.FastPathFailed:
                    report.reset()
                    result = profile(readers.stream_csv_slow(path, header, report, options=options))
    except readers.FileUnreadableError as exc:
        raise ExploreError(f"Cannot read {path}: {exc}") from exc
    result.format = fmt
    result.rejected_lines = len(report.rejects)
    return result


def explore_file(path: str | Path) -> ExploreResult:
    """Profile a landing file (csv, jsonl, parquet): counts, nulls, shapes, totals."""
    p = Path(path)
    if not p.is_file():
        raise ExploreError(
            f"{p} is not a file. Pass a landing file such as data/landing/sales_0001.csv."
        )
    return _profiled(p, lambda batches: _profile(p, batches))


def _present(batch: pa.RecordBatch) -> list[str]:
    """The source columns the file has: a column it lacks reads as all nulls, one it has as
    strings (an empty field is an empty string)."""
    return [n for n in SOURCE_COLUMNS if batch.column(n).null_count < batch.num_rows]


def _profile(p: Path, batches: Iterator[pa.RecordBatch]) -> ExploreResult:
    names: list[str] = []
    rows = 0
    nulls = Counter[str]()
    counts: dict[str, list[pa.StructArray]] = {n: [] for n in COUNTED}
    totals: list[np.ndarray] = []
    kept, stride = 0, 1
    tp = TotalsProfile()
    hist = np.zeros(len(TOTAL_EDGES), dtype=np.int64)
    t_sum, t_min, t_max = 0.0, np.inf, -np.inf
    for batch in batches:
        if not batch.num_rows:
            continue
        rows += batch.num_rows
        names += [n for n in _present(batch) if n not in names]
        for name in names:
            col = batch.column(name)
            col = pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)
            nulls[name] += col.null_count
            # Per batch, only value counts; shapes and dates are judged on distinct values.
            if name in counts:
                counts[name].append(pc.value_counts(col.drop_null()))
            if name != "total":
                continue
            numbers = _to_float(col)
            values = numbers.drop_null().to_numpy(zero_copy_only=False)
            tp.unparseable += numbers.null_count - col.null_count
            if len(values):
                tp.float_noise += int((np.round(values, 2) != values).sum())
                t_sum += float(values.sum())
                t_min, t_max = min(t_min, float(values.min())), max(t_max, float(values.max()))
                tp.count += len(values)
                bucket = np.searchsorted(TOTAL_EDGES, values, side="right") - 1
                hist += np.bincount(np.maximum(bucket, 0), minlength=len(TOTAL_EDGES))
                sample = values[::stride]
                totals.append(sample)
                kept += len(sample)
                while kept > SAMPLE_CAP:  # thin evenly: keep every other value
                    totals = [t[::2] for t in totals]
                    kept = sum(len(t) for t in totals)
                    stride *= 2

    names = [n for n in SOURCE_COLUMNS if n in names]
    profiles = []
    merged: dict[str, list[tuple[str, int]]] = {}
    for name in names:
        profile = ColumnProfile(name=name, nulls=nulls[name])
        if name in counts:
            merged[name] = _merge_counts(counts[name])
            profile.distinct = len(merged[name])
            profile.blank = sum(n for v, n in merged[name] if not v.strip())
            if name in CATEGORICAL:
                profile.top = merged[name][:TOP_VALUES]
        profiles.append(profile)
    shapes = Counter[str]()
    for value, n in merged.get("store_id", []):
        shapes[store_shape(value)] += n
    if nulls["store_id"]:
        shapes["(empty)"] += nulls["store_id"]
    good_dates = [v for v, _ in merged.get("sale_date", []) if _is_iso_date(v)]
    bad_dates = sum(n for v, n in merged.get("sale_date", []) if not _is_iso_date(v))
    if tp.count:
        tp.min, tp.max, tp.mean = t_min, t_max, t_sum / tp.count
        sample = np.concatenate(totals)
        qs = np.quantile(sample, [0.01, 0.25, 0.5, 0.75, 0.99])
        tp.quantiles = {
            k: float(v) for k, v in zip(("p01", "p25", "p50", "p75", "p99"), qs, strict=True)
        }
    labels = [f"{TOTAL_EDGES[i]:g}–{TOTAL_EDGES[i + 1]:g}" for i in range(len(TOTAL_EDGES) - 1)]
    labels.append(f"≥{TOTAL_EDGES[-1]:g}")
    tp.histogram = list(zip(labels, (int(h) for h in hist), strict=True))
    return ExploreResult(
        path=str(p),
        format="",  # set by _profiled
        size_bytes=p.stat().st_size,
        rows=rows,
        columns=[n for n in SOURCE_COLUMNS if n in names],
        column_profiles=profiles,
        store_shapes=dict(shapes.most_common()),
        totals=tp,
        sale_date_min=min(good_dates, default=None),
        sale_date_max=max(good_dates, default=None),
        unparseable_dates=bad_dates,
    )


def _merge_counts(parts: list[pa.StructArray]) -> list[tuple[str, int]]:
    """Per-batch value counts merged, most frequent first (ties by value, for stable output)."""
    if not parts:
        return []
    table = pa.Table.from_struct_array(pa.concat_arrays(parts))
    summed = table.group_by("values").aggregate([("counts", "sum")])
    summed = summed.sort_by([("counts_sum", "descending"), ("values", "ascending")])
    return list(zip(summed["values"].to_pylist(), summed["counts_sum"].to_pylist(), strict=True))


def _to_float(col: pa.Array) -> pa.Array:
    """Strings to float64; anything that is not a plain number becomes null."""
    try:
        return pc.cast(col, pa.float64())  # the common case: every value is a number
    except pa.ArrowInvalid:
        pass
    ok = pc.match_substring_regex(col, r"^\s*-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?\s*$")
    cleaned = pc.if_else(ok, pc.utf8_trim_whitespace(col), None)
    return pc.cast(cleaned, pa.float64())


def store_shape(value: str) -> str:
    """The shape of a store id, e.g. `NW-<n>` for `NW-58`; `other` when none fits."""
    for label, pattern in _SHAPE_PATTERNS:
        if pattern.match(value):
            return label
    return "other"


def _is_iso_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10
