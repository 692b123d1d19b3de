"""Turn a landing file into record batches of strings, plus the lines that could not be parsed.

Pure parsing, no Delta: every reader yields batches with the known source columns (strings, null
when the file lacks the column), `_rescued_data` and `_source_line`, and appends unparseable
lines to `rejects`. Every physical data line of a CSV or JSONL file ends up in exactly one of the
two, which is what the bronze conservation tests count.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from medallion_lakehouse.bronze.contract import SOURCE_COLUMNS

FAST_BLOCK_BYTES = 16 << 20
SLOW_BATCH_ROWS = 50_000

PARSED_SCHEMA = pa.schema(
    [*(pa.field(c, pa.string()) for c in SOURCE_COLUMNS)]
    + [pa.field("_rescued_data", pa.string()), pa.field("_source_line", pa.int64())]
)


@dataclass(frozen=True)
class Reject:
    line: int  # 1-based data line (header = 0)
    raw: str
    error: str


@dataclass
class ParseReport:
    """Filled in while a reader runs."""

    rows: int = 0
    rejects: list[Reject] = field(default_factory=list)
    rescued_columns: list[str] = field(default_factory=list)
    path: str = "fast"  # which parser produced the rows: fast | line-by-line | jsonl | parquet
    fast_path_failed: bool = False


class FileUnreadableError(Exception):
    """The file as a whole cannot be read (permission, binary content, corrupt container)."""


def normalise_header(name: str) -> str:
    return name.strip().strip('"').strip().lower()


@dataclass(frozen=True)
class ColumnMap:
    """Where each known column sits in a file's header, and which columns are extra."""

    positions: dict[str, int]
    extras: list[tuple[str, int]]
    width: int

    @classmethod
    def from_header(cls, header: Sequence[str]) -> ColumnMap:
        positions: dict[str, int] = {}
        extras: list[tuple[str, int]] = []
        seen: set[str] = set()
        for i, raw in enumerate(header):
            name = normalise_header(raw) or f"column_{i + 1}"
            if name in seen:  # keep duplicates as rescued data instead of overwriting
                name = f"{name}_{i + 1}"
            seen.add(name)
            if name in SOURCE_COLUMNS and name not in positions:
                positions[name] = i
            else:
                extras.append((raw.strip() or name, i))
        return cls(positions, extras, len(header))


def _batch_from_columns(
    columns: Sequence[pa.Array], cmap: ColumnMap, first_line: int, lines: np.ndarray | None = None
) -> pa.RecordBatch:
    n = len(columns[0]) if columns else 0
    arrays: list[pa.Array] = []
    for name in SOURCE_COLUMNS:
        pos = cmap.positions.get(name)
        arrays.append(columns[pos] if pos is not None else pa.nulls(n, pa.string()))
    if cmap.extras:
        rescued = [
            json.dumps({name: columns[pos][i].as_py() for name, pos in cmap.extras})
            for i in range(n)
        ]
        arrays.append(pa.array(rescued, pa.string()))
    else:
        arrays.append(pa.nulls(n, pa.string()))
    if lines is None:
        lines = np.arange(first_line, first_line + n, dtype=np.int64)
    arrays.append(pa.array(lines, pa.int64()))
    return pa.RecordBatch.from_arrays(arrays, schema=PARSED_SCHEMA)


# -- CSV ---------------------------------------------------------------------------------
def _read_header(path: Path) -> tuple[list[str] | None, int]:
    """The header's fields and its size in bytes; None for an empty file."""
    with path.open("rb") as fh:
        first = fh.readline()
    if not first.strip(b"\r\n\t \xef\xbb\xbf"):
        return None, len(first)
    text = first.decode("utf-8-sig", errors="replace").rstrip("\r\n")
    return next(csv.reader([text])), len(first)


class _FastPathFailed(Exception):
    pass


def _fast_csv(
    path: Path, cmap: ColumnMap, report: ParseReport, data_lines: int
) -> Iterator[pa.RecordBatch]:
    """pyarrow's multithreaded parser; valid only if every line parses into `width` fields.

    Any irregularity (wrong field count, blank line, bad quoting, invalid UTF-8, a line count
    that disagrees with the rows parsed) raises _FastPathFailed and the caller re-reads the file
    line by line, so row numbers stay exact.
    """

    def invalid(_row: object) -> str:
        raise _FastPathFailed

    names = [f"c{i}" for i in range(cmap.width)]
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=1, block_size=FAST_BLOCK_BYTES, use_threads=True
            ),
            parse_options=pacsv.ParseOptions(
                # Blank lines are skipped here, so the row count falls short of the line count
                # and the file goes to the line-by-line parser, which rejects them.
                newlines_in_values=False,
                ignore_empty_lines=True,
                invalid_row_handler=invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                check_utf8=True,
            ),
        )
        line = 1
        for batch in reader:
            yield _batch_from_columns(batch.columns, cmap, line)
            line += batch.num_rows
            report.rows += batch.num_rows
    except (pa.ArrowInvalid, _FastPathFailed, UnicodeDecodeError) as exc:
        raise _FastPathFailed from exc
    if report.rows != data_lines:
        raise _FastPathFailed


def _split_lines(path: Path, header_bytes: int) -> Iterator[tuple[int, bytes]]:
    """Physical lines after the header as (data line number, bytes without the newline)."""
    with path.open("rb") as fh:
        fh.seek(header_bytes)
        for number, raw in enumerate(fh, start=1):
            yield number, raw.rstrip(b"\n").rstrip(b"\r")


def _slow_csv(
    path: Path, cmap: ColumnMap, header_bytes: int, report: ParseReport
) -> Iterator[pa.RecordBatch]:
    """Parse one physical line at a time; a line that does not parse becomes a reject."""
    report.path = "line-by-line"
    buffers: list[list[str]] = [[] for _ in range(cmap.width)]
    lines: list[int] = []

    def flush() -> pa.RecordBatch:
        cols = [pa.array(b, pa.string()) for b in buffers]
        batch = _batch_from_columns(cols, cmap, 0, np.asarray(lines, dtype=np.int64))
        for b in buffers:
            b.clear()
        lines.clear()
        return batch

    for number, raw in _split_lines(path, header_bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            report.rejects.append(
                Reject(number, raw.decode("utf-8", errors="replace"), f"invalid UTF-8: {exc}")
            )
            continue
        if not text.strip():
            report.rejects.append(Reject(number, text, "blank line"))
            continue
        try:
            fields = next(csv.reader([text], strict=True))
        except csv.Error as exc:
            report.rejects.append(Reject(number, text, f"broken quoting: {exc}"))
            continue
        if len(fields) != cmap.width:
            report.rejects.append(
                Reject(number, text, f"expected {cmap.width} fields, found {len(fields)}")
            )
            continue
        for buf, value in zip(buffers, fields, strict=True):
            buf.append(value)
        lines.append(number)
        report.rows += 1
        if len(lines) >= SLOW_BATCH_ROWS:
            yield flush()
    if lines:
        yield flush()


def csv_header_map(path: Path) -> tuple[ColumnMap | None, int]:
    header, header_bytes = _read_header(path)
    return (None if header is None else ColumnMap.from_header(header)), header_bytes


def stream_csv_fast(
    path: Path, cmap: ColumnMap, report: ParseReport, data_lines: int
) -> Iterator[pa.RecordBatch]:
    """The fast path alone, streaming; raises FastPathFailed when the file needs the slow one."""
    try:
        yield from _fast_csv(path, cmap, report, data_lines)
    except _FastPathFailed as exc:
        # The exception may surface wrapped by the Delta writer, so leave a flag too.
        report.fast_path_failed = True
        raise FastPathFailed(str(path)) from exc


def stream_csv_slow(
    path: Path, cmap: ColumnMap, header_bytes: int, report: ParseReport
) -> Iterator[pa.RecordBatch]:
    yield from _slow_csv(path, cmap, header_bytes, report)


class FastPathFailed(Exception):
    """The file is not regular enough for the fast parser; read it line by line instead."""


# -- JSON lines --------------------------------------------------------------------------
def _json_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"))


def read_jsonl(path: Path, report: ParseReport) -> Iterator[pa.RecordBatch]:
    """One JSON object per line; numbers are kept as their exact source text."""
    report.path = "jsonl"
    rows: dict[str, list[str | None]] = {c: [] for c in SOURCE_COLUMNS}
    rescued: list[str | None] = []
    lines: list[int] = []
    extra_names: set[str] = set()

    def flush() -> pa.RecordBatch:
        arrays = [pa.array(rows[c], pa.string()) for c in SOURCE_COLUMNS]
        arrays += [pa.array(rescued, pa.string()), pa.array(lines, pa.int64())]
        for v in rows.values():
            v.clear()
        rescued.clear()
        lines.clear()
        return pa.RecordBatch.from_arrays(arrays, schema=PARSED_SCHEMA)

    for number, raw in _split_lines(path, 0):
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            report.rejects.append(
                Reject(number, raw.decode("utf-8", errors="replace"), f"invalid UTF-8: {exc}")
            )
            continue
        if not text.strip():
            report.rejects.append(Reject(number, text, "blank line"))
            continue
        try:
            obj = json.loads(text, parse_float=str, parse_int=str, parse_constant=str)
        except json.JSONDecodeError as exc:
            report.rejects.append(Reject(number, text, f"invalid JSON: {exc.msg}"))
            continue
        if not isinstance(obj, dict):
            report.rejects.append(Reject(number, text, "not a JSON object"))
            continue
        normalised = {normalise_header(str(k)): (k, v) for k, v in obj.items()}
        for c in SOURCE_COLUMNS:
            rows[c].append(_json_text(normalised[c][1]) if c in normalised else None)
        extras = {k: _json_text(v) for n, (k, v) in normalised.items() if n not in SOURCE_COLUMNS}
        extra_names.update(extras)
        rescued.append(json.dumps(extras) if extras else None)
        lines.append(number)
        report.rows += 1
        if len(lines) >= SLOW_BATCH_ROWS:
            yield flush()
    report.rescued_columns = sorted(extra_names)
    if lines:
        yield flush()


# -- Parquet -----------------------------------------------------------------------------
def read_parquet(path: Path, report: ParseReport) -> Iterator[pa.RecordBatch]:
    """Every column cast to its string form; row numbers are 1-based row positions."""
    report.path = "parquet"
    try:
        pfile = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise FileUnreadableError(f"not a readable Parquet file: {exc}") from exc
    cmap = ColumnMap.from_header(pfile.schema_arrow.names)
    report.rescued_columns = [name for name, _ in cmap.extras]
    line = 1
    for batch in pfile.iter_batches(batch_size=SLOW_BATCH_ROWS):
        cols = [_as_string(col) for col in batch.columns]
        yield _batch_from_columns(cols, cmap, line)
        line += batch.num_rows
        report.rows += batch.num_rows


def _as_string(array: pa.Array) -> pa.Array:
    if pa.types.is_string(array.type):
        return array
    if pa.types.is_large_string(array.type) or pa.types.is_string_view(array.type):
        return array.cast(pa.string())
    try:
        return array.cast(pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return pa.array([None if v is None else str(v) for v in array.to_pylist()], pa.string())


FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def file_format(path: Path) -> str | None:
    return FORMATS.get(path.suffix.lower())
