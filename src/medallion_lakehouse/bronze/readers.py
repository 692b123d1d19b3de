"""Turn a landing file into record batches of strings, plus the lines that could not be parsed.

Pure parsing, no Delta: every reader yields batches with the known source columns (strings, null
when the file lacks the column), `_rescued_data` and `_source_line`, and appends unparseable
lines to `rejects`.

Physical lines follow universal newlines: `\\n`, `\\r\\n` and a lone `\\r` each end one. Every
physical data line of a CSV or JSONL file ends up in exactly one place: a bronze row (a CSV record
whose quoted field holds a newline spans several lines and accounts for all of them), a reject,
or a file that fails as a whole (`FileUnreadableError`). `ParseReport` keeps that accounting
(`physical_lines == row_lines + len(rejects)`) and every reader checks it before it finishes.

A reader never lets an exception the caller cannot classify escape: per-line problems are
rejects, anything else is `FileUnreadableError` with a readable reason (also left in
`ParseReport.unreadable`, because the Delta writer wraps exceptions raised inside a stream).
"""

from __future__ import annotations

import csv
import io
import json
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from medallion_lakehouse.bronze.contract import SOURCE_COLUMNS

if TYPE_CHECKING:
    from medallion_lakehouse.config import Settings

FAST_BLOCK_BYTES = 16 << 20
SLOW_BATCH_ROWS = 50_000
READ_CHUNK_BYTES = 1 << 20
DEFAULT_FIELD_SIZE_LIMIT = 1 << 20

PARSED_SCHEMA = pa.schema(
    [*(pa.field(c, pa.string()) for c in SOURCE_COLUMNS)]
    + [pa.field("_rescued_data", pa.string()), pa.field("_source_line", pa.int64())]
)


@dataclass(frozen=True)
class ReaderOptions:
    """How landing files are read; built from the settings by `from_settings`."""

    # Largest field, in UTF-8 bytes: a larger data field rejects its line, a larger header
    # field fails the file. It also bounds a quoted field that never closes.
    field_size_limit: int = DEFAULT_FIELD_SIZE_LIMIT
    # Read `.txt` files as CSV. Off by default: a stray README.txt is not a landing file.
    text_as_csv: bool = False

    def __post_init__(self) -> None:
        if self.field_size_limit < 1:
            raise ValueError(f"field_size_limit must be at least 1, got {self.field_size_limit}")

    @classmethod
    def from_settings(cls, settings: Settings) -> ReaderOptions:
        return cls(
            field_size_limit=settings.landing_field_size_limit,
            text_as_csv=settings.landing_text_as_csv,
        )


DEFAULT_OPTIONS = ReaderOptions()


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
    # The file's columns as received (CSV header, Parquet schema, JSONL members in first-seen
    # order), for schema-change events (`bronze/schema_changes.py`).
    columns: list[str] = field(default_factory=list)
    path: str = "fast"  # which parser produced the rows: fast | line-by-line | jsonl | parquet
    fast_path_failed: bool = False
    physical_lines: int = 0  # data lines read (header not counted; Parquet: rows)
    row_lines: int = 0  # of which in rows (a multi-line CSV record counts all of its lines)
    unreadable: FileUnreadableError | None = None  # why the file failed as a whole, if it did

    def use_header(self, cmap: ColumnMap) -> None:
        self.rescued_columns = [name for name, _ in cmap.extras]
        self.columns = list(cmap.names)

    def reset(self) -> None:
        """Forget a parse that was abandoned (the fast path gave up), to read the file again."""
        self.rows = self.physical_lines = self.row_lines = 0
        self.rejects.clear()

    def check_accounting(self) -> None:
        if self.row_lines + len(self.rejects) != self.physical_lines:
            raise FileUnreadableError(
                f"internal error: {self.physical_lines} data lines read, but {self.row_lines} "
                f"in rows and {len(self.rejects)} rejected"
            )


class FileUnreadableError(Exception):
    """The file as a whole cannot be read (permission, binary content, corrupt container)."""


class FastPathFailed(Exception):
    """The file is not regular enough for the fast parser; read it line by line instead."""


class _FastPathFailed(Exception):
    pass


def _guarded(report: ParseReport, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Per-file failures as FileUnreadableError (also kept in the report), whatever raised them."""
    try:
        yield from batches
    except (FastPathFailed, _FastPathFailed):
        raise
    except FileUnreadableError as exc:
        report.unreadable = exc
        raise
    except Exception as exc:
        report.unreadable = FileUnreadableError(_unexpected(exc))
        raise report.unreadable from exc


def _unexpected(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"cannot read file: {exc}"
    return f"unexpected error while reading the file: {type(exc).__name__}: {exc}"


# -- file names: format and compression --------------------------------------------------
FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
TEXT_AS_CSV_SUFFIX = ".txt"  # only with ReaderOptions(text_as_csv=True)
# Suffix -> pyarrow codec; csv and jsonl files may carry one (`x.csv.gz`), Parquet may not.
COMPRESSIONS: dict[str, str] = {
    ".gz": "gzip",
    ".bz2": "bz2",
    ".zst": "zstd",
    ".zstd": "zstd",
    ".lz4": "lz4",  # the LZ4 frame format, as the `lz4` command writes it
}


def _name_parts(path: Path) -> tuple[str, str | None]:
    """(format suffix, compression codec) of a file name, lower-cased."""
    name = path.name.lower()
    codec = None
    stem, dot, last = name.rpartition(".")
    if dot and f".{last}" in COMPRESSIONS:
        codec, name = COMPRESSIONS[f".{last}"], stem
    return Path(name).suffix, codec


def compression_of(path: Path) -> str | None:
    """The pyarrow codec a file name asks for (`x.csv.gz` -> `gzip`), or None."""
    return _name_parts(path)[1]


def file_format(path: Path, *, options: ReaderOptions | None = None) -> str | None:
    """csv | jsonl | parquet from the file name (compression suffix allowed), else None."""
    suffix, codec = _name_parts(path)
    fmt = FORMATS.get(suffix)
    if fmt is None and suffix == TEXT_AS_CSV_SUFFIX and (options or DEFAULT_OPTIONS).text_as_csv:
        fmt = "csv"
    if fmt == "parquet" and codec is not None:
        return None  # Parquet compresses its pages itself; a compressed container is unusual
    return fmt


def _kind(path: Path) -> str:
    """`.csv`, `.csv.gz`: how reasons name the file's type."""
    suffix, codec = _name_parts(path)
    return suffix + (path.suffix.lower() if codec else "") or path.name


# -- bytes and physical lines ------------------------------------------------------------
class _ByteSource(io.RawIOBase):
    """A landing file's bytes, decompressed when its name says so.

    Every chunk is checked for NUL bytes (binary content fails the file, wherever it is) and,
    when asked, its universal-newline line endings are counted. Read and decompression errors
    become FileUnreadableError.
    """

    def __init__(self, path: Path, *, count_lines: bool = False) -> None:
        super().__init__()
        self._path = path
        self._codec = compression_of(path)
        self._count = count_lines
        self._lf = self._cr = self._crlf = self._size = 0
        self._last = b""
        self._tail: deque[bytes] = deque(maxlen=2)  # the last chunks read, when counting
        try:
            if self._codec is None:
                self._inner: io.RawIOBase | pa.NativeFile = path.open("rb", buffering=0)
            else:
                self._inner = pa.input_stream(str(path), compression=self._codec)
        except OSError as exc:
            raise FileUnreadableError(f"cannot read file: {exc}") from exc

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        try:
            data = self._inner.read(READ_CHUNK_BYTES if size is None or size < 0 else size)
        except (OSError, pa.ArrowException) as exc:
            if self._codec is None:
                raise FileUnreadableError(f"cannot read file: {exc}") from exc
            raise FileUnreadableError(f"corrupt {self._codec} data: {exc}") from exc
        if b"\x00" in data:
            raise FileUnreadableError(f"binary content (NUL bytes) in a {_kind(self._path)} file")
        if self._count and data:
            self._lf += data.count(b"\n")
            cr = data.count(b"\r")
            if cr:
                self._cr += cr
                self._crlf += data.count(b"\r\n")
            if self._last == b"\r" and data[:1] == b"\n":
                self._crlf += 1
            self._size += len(data)
            self._last = data[-1:]
            self._tail.append(data)
        return data or b""

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return b"".join(iter(lambda: self.read(READ_CHUNK_BYTES), b""))

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
        super().close()

    @property
    def tail(self) -> bytes:
        """The last bytes read (count_lines=True): at least one pyarrow block's worth."""
        return b"".join(self._tail)

    @property
    def lines(self) -> int:
        """Physical lines read so far (count_lines=True), the last one with or without its end."""
        unterminated = 1 if self._size and self._last not in (b"\n", b"\r") else 0
        return self._lf + self._cr - self._crlf + unterminated


class _Lines:
    """Physical lines of a text file (with their line endings), numbered, with push-back.

    Bytes that are not UTF-8 arrive as lone surrogates (`surrogateescape`), so one bad line is
    that line's reject, not the file's failure; a UTF-8 BOM at the start is dropped.
    """

    def __init__(self, path: Path) -> None:
        self._source = _ByteSource(path)
        self._text = io.TextIOWrapper(
            io.BufferedReader(self._source, READ_CHUNK_BYTES),
            encoding="utf-8-sig",
            errors="surrogateescape",
            newline="",  # universal newlines, line endings kept as they are
        )
        self._back: deque[tuple[int, str]] = deque()
        self.read = 0  # physical lines taken from the file
        self._base = 0

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        self._text.close()

    def next(self) -> tuple[int, str] | None:
        if self._back:
            return self._back.popleft()
        line = self._text.readline()
        if not line:
            return None
        self.read += 1
        return self.read - self._base, line

    def push_back(self, lines: Sequence[tuple[int, str]]) -> None:
        self._back.extendleft(reversed(lines))

    def start_data(self) -> int:
        """Number the following lines from 1 (the lines read so far were the header's)."""
        header = self.read - len(self._back)
        self._back = deque((n - header, text) for n, text in self._back)
        self._base = header
        return header

    @property
    def data_lines(self) -> int:
        return self.read - self._base


def _strip_eol(line: str) -> str:
    return line.rstrip("\r\n")  # a line holds \r or \n only as its ending


def _has_surrogates(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _invalid_utf8(text: str) -> tuple[str, str]:
    """(the text with U+FFFD for undecodable bytes, the decoder's message)."""
    raw = text.encode("utf-8", "surrogateescape")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return raw.decode("utf-8", errors="replace"), f"invalid UTF-8: {exc}"
    return text.encode("utf-8", "replace").decode("utf-8"), "invalid Unicode"


def _too_large(values: Sequence[str | None], limit: int) -> bool:
    return any(
        v is not None and len(v) * 4 > limit and len(v.encode("utf-8", "replace")) > limit
        for v in values
    )


# -- columns -----------------------------------------------------------------------------
def normalise_header(name: str) -> str:
    return name.strip().strip('"').strip().lower()


def _rescued_key(raw: str, name: str, position: int, taken: set[str], duplicate: bool) -> str:
    """Where an extra column goes in `_rescued_data`: its own name, unless that is ambiguous.

    A second column that normalises to a known one (`Sale_Date` after `SALE_DATE`) and a name
    already used in the record become `<name>_<position>` (1-based), so no value overwrites
    another. CSV headers, JSON objects and Parquet schemas follow the same rule.
    """
    key = f"{name}_{position}" if duplicate else (raw.strip() or name)
    while key in taken:
        key = f"{key}_{position}"
    taken.add(key)
    return key


@dataclass(frozen=True)
class ColumnMap:
    """Where each known column sits in a file's header, and which columns are extra."""

    positions: dict[str, int]
    extras: list[tuple[str, int]]
    width: int
    names: tuple[str, ...] = ()  # the header as received (each name stripped of spaces)

    @classmethod
    def from_header(cls, header: Sequence[str]) -> ColumnMap:
        positions: dict[str, int] = {}
        extras: list[tuple[str, int]] = []
        taken: set[str] = set()
        for i, raw in enumerate(header):
            name = normalise_header(raw) or f"column_{i + 1}"
            if name in SOURCE_COLUMNS and name not in positions:
                positions[name] = i
                taken.add(raw.strip() or name)
            else:
                key = _rescued_key(raw, name, i + 1, taken, duplicate=name in positions)
                extras.append((key, i))
        return cls(positions, extras, len(header), tuple(raw.strip() for raw in header))


def _batch_from_columns(
    columns: Sequence[pa.Array], cmap: ColumnMap, first_line: int, lines: np.ndarray | None = None
) -> pa.RecordBatch:
    n = len(columns[0]) if columns else 0
    arrays: list[pa.Array] = []
    for name in SOURCE_COLUMNS:
        pos = cmap.positions.get(name)
        arrays.append(columns[pos] if pos is not None else pa.nulls(n, pa.string()))
    if cmap.extras:
        names = [name for name, _ in cmap.extras]
        values = [columns[pos].to_pylist() for _, pos in cmap.extras]
        rescued = [
            json.dumps(dict(zip(names, row, strict=True))) for row in zip(*values, strict=True)
        ]
        arrays.append(pa.array(rescued, pa.string()))
    else:
        arrays.append(pa.nulls(n, pa.string()))
    if lines is None:
        lines = np.arange(first_line, first_line + n, dtype=np.int64)
    arrays.append(pa.array(lines, pa.int64()))
    return pa.RecordBatch.from_arrays(arrays, schema=PARSED_SCHEMA)


# -- CSV records -------------------------------------------------------------------------
_CSV_LIMIT_MESSAGE = "field larger than field limit"
_CSV_EOF_MESSAGE = "unexpected end of data"


class _RecordEnd(Exception):
    """Raised by _Feed to stop csv from pulling more lines into the current record."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class _Feed:
    """Gives csv.reader a record's first line, then further lines while a quoted field is open."""

    def __init__(self, first: tuple[int, str], lines: _Lines, budget: int) -> None:
        self.taken = [first]
        self._first: str | None = first[1]
        self._lines = lines
        self._budget = budget

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        if self._first is not None:
            text, self._first = self._first, None
            return text
        item = self._lines.next()
        if item is None:
            raise StopIteration
        self.taken.append(item)
        number, text = item
        if _has_surrogates(text):
            raise _RecordEnd(f"runs into line {number}, which is not valid UTF-8")
        self._budget -= len(text)
        if self._budget < 0:
            raise _RecordEnd("does not close within the size a record can have")
        return text


@dataclass
class _Record:
    lines: list[tuple[int, str]]  # the physical lines it took, in order
    fields: list[str] | None
    error: str | None = None  # csv's message, or why the feed stopped
    stopped: bool = False  # the feed stopped pulling lines (error says why)


def _read_record(first: tuple[int, str], lines: _Lines, limit: int, budget: int) -> _Record:
    """The record starting at `first`: one line, or several while a quoted field is open."""
    text = first[1]
    if '"' not in text:  # no quote: the line is the record, and csv would split it just so
        return _Record([first], _strip_eol(text).split(","))
    feed = _Feed(first, lines, budget)
    old = csv.field_size_limit(limit)  # process-wide: set only while this record is parsed
    try:
        fields = next(csv.reader(feed, strict=True), None)
    except csv.Error as exc:
        return _Record(feed.taken, None, str(exc))
    except _RecordEnd as exc:
        return _Record(feed.taken, None, exc.detail, stopped=True)
    finally:
        csv.field_size_limit(old)
    if fields is None:
        return _Record(feed.taken, None, _CSV_EOF_MESSAGE)
    return _Record(feed.taken, fields)


def _single_line_problem(record: _Record, width: int, limit: int) -> str | None:
    if record.error is not None:
        if record.error.startswith(_CSV_LIMIT_MESSAGE):
            return f"field larger than {limit} bytes"
        if record.error == _CSV_EOF_MESSAGE:
            return "unclosed quote: the file ends inside a quoted field opened on this line"
        return f"broken quoting: {record.error}"
    assert record.fields is not None
    if len(record.fields) != width:
        return f"expected {width} fields, found {len(record.fields)}"
    if _too_large(record.fields, limit):
        return f"field larger than {limit} bytes"
    return None


def _multi_line_problem(record: _Record, width: int, limit: int) -> str | None:
    """Why a record spanning lines is not a row (its first line is then rejected), or None."""
    fields, error = record.fields, record.error
    if fields is not None and len(fields) == width and not _too_large(fields, limit):
        return None
    first, last = record.lines[0][0], record.lines[-1][0]
    opened = "unclosed quote: the quoted field opened on this line"
    closes = f"broken quoting: a quoted field opened on this line closes on line {last}"
    if error == _CSV_EOF_MESSAGE:
        return f"{opened} never closes (end of file)"
    if error is not None and error.startswith(_CSV_LIMIT_MESSAGE):
        return f"{opened} does not close within the field size limit ({limit} bytes)"
    if record.stopped:
        return f"{opened} {error}"
    if error is not None:
        return f"{closes}, then: {error}"
    assert fields is not None
    if len(fields) != width:
        return f"{closes}, making a record of {len(fields)} fields, not {width}"
    return f"field larger than {limit} bytes (in the record of lines {first}-{last})"


@dataclass(frozen=True)
class CsvHeader:
    cmap: ColumnMap
    lines: int  # physical lines the header record takes (more than 1: a quoted newline)


def _parse_header(lines: _Lines, limit: int) -> CsvHeader | None:
    first = lines.next()
    if first is None:
        return None
    body = _strip_eol(first[1])
    if not body.strip(" \t\ufeff"):
        if lines.next() is None:
            return None  # a lone blank line: an empty file
        raise FileUnreadableError("the header (first line) is blank")
    record = _read_record(first, lines, limit, budget=2 * limit + 2)
    fields = record.fields if record.error is None else None
    used = len(record.lines)
    if fields is None:
        # The header's quote does not close into a record: take its first line alone, leniently.
        lines.push_back(record.lines[1:])
        used = 1
        old = csv.field_size_limit(limit)
        try:
            fields = next(csv.reader([body]), [])
        except csv.Error as exc:
            if str(exc).startswith(_CSV_LIMIT_MESSAGE):
                raise FileUnreadableError(f"header field larger than {limit} bytes") from exc
            raise FileUnreadableError(f"unreadable header: {exc}") from exc
        finally:
            csv.field_size_limit(old)
    fields = [_invalid_utf8(f)[0] if _has_surrogates(f) else f for f in fields]
    if _too_large(fields, limit):
        raise FileUnreadableError(f"header field larger than {limit} bytes")
    return CsvHeader(ColumnMap.from_header(fields), used)


def read_csv_header(path: Path, *, options: ReaderOptions | None = None) -> CsvHeader | None:
    """The header record of a CSV file; None for an empty file. Raises FileUnreadableError."""
    limit = (options or DEFAULT_OPTIONS).field_size_limit
    try:
        with _Lines(path) as lines:
            return _parse_header(lines, limit)
    except FileUnreadableError:
        raise
    except Exception as exc:
        raise FileUnreadableError(_unexpected(exc)) from exc


def _has_line_break(batch: pa.RecordBatch) -> bool:
    """Whether a value holds \\r or \\n: a quoted field went past its line (pyarrow lets one
    run to the end of its block, with a row count that still matches the line count)."""
    for column in batch.columns:
        data = column.buffers()[2]
        if data is not None:
            raw = data.to_pybytes()  # bytes' memchr search beats compute kernels by far here
            if b"\n" in raw or b"\r" in raw:
                return True
    return False


def _file_tail(path: Path) -> bytes:
    """The end of a file, enough to hold its last line (a fast-path row fits in a block)."""
    with path.open("rb") as fh:
        end = fh.seek(0, io.SEEK_END)
        for size in (1 << 16, 2 * FAST_BLOCK_BYTES):
            fh.seek(max(0, end - size))
            tail = fh.read()
            if size >= end or b"\n" in tail[:-2] or b"\r" in tail[:-2]:
                break
        return tail


def _last_line_agrees(tail: bytes, last_row: list[str] | None, limit: int) -> bool:
    """Whether the file's last line parses strictly into pyarrow's last row.

    pyarrow accepts a quote left open at the end of the file (`B,"2` gives B, 2); csv does not.
    """
    if last_row is None:
        return True
    line = tail
    for end in (b"\r\n", b"\n", b"\r"):
        if line.endswith(end):
            line = line[: -len(end)]
            break
    line = line[max(line.rfind(b"\n"), line.rfind(b"\r")) + 1 :]
    if b'"' not in line:
        return True
    old = csv.field_size_limit(limit)
    try:
        fields = next(csv.reader([line.decode("utf-8", "replace")], strict=True), None)
    except csv.Error:
        return False
    finally:
        csv.field_size_limit(old)
    return fields == last_row


def _max_field_bytes(batch: pa.RecordBatch) -> int:
    lengths = (pc.max(pc.binary_length(col)).as_py() for col in batch.columns)
    return max((n for n in lengths if n is not None), default=0)


def _fast_csv(
    path: Path,
    header: CsvHeader,
    report: ParseReport,
    data_lines: int | None,
    options: ReaderOptions,
) -> Iterator[pa.RecordBatch]:
    """pyarrow's multithreaded parser; valid only if every line parses into `width` fields.

    Any irregularity (wrong field count, blank line, bad quoting, invalid UTF-8, a field over
    the size limit, a value holding a line break, a line count that disagrees with the rows
    parsed, a last line csv would not parse the same) raises _FastPathFailed and the caller
    re-reads the file line by line, so row numbers stay exact. `data_lines`: the file's
    physical data lines when the caller counted them (and checked for NUL bytes) already;
    None to count them on the way.
    """
    cmap = header.cmap
    if header.lines != 1 or cmap.width == 0:
        raise _FastPathFailed  # skip_rows counts physical lines, not records

    counted = None
    source: str | _ByteSource = str(path)
    if data_lines is None or compression_of(path) is not None:
        source = counted = _ByteSource(path, count_lines=True)
    limit = options.field_size_limit
    names = [f"c{i}" for i in range(cmap.width)]
    try:
        reader = pacsv.open_csv(
            source,
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=1, block_size=FAST_BLOCK_BYTES, use_threads=True
            ),
            parse_options=pacsv.ParseOptions(
                # Blank lines are skipped here, so the row count falls short of the line count
                # and the file goes to the line-by-line parser, which rejects them.
                # No invalid_row_handler: a wrong field count raises ArrowInvalid (a handler
                # only gets printed errors for rows that are not UTF-8).
                newlines_in_values=False,
                ignore_empty_lines=True,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                check_utf8=True,
            ),
        )
        line = 1
        last_row: list[str] | None = None
        for batch in reader:
            if _has_line_break(batch):
                raise _FastPathFailed
            # A row cannot straddle a block, so a smaller limit needs a look at the lengths.
            if limit < FAST_BLOCK_BYTES and _max_field_bytes(batch) > limit:
                raise _FastPathFailed
            if batch.num_rows:
                last_row = [column[-1].as_py() for column in batch.columns]
            yield _batch_from_columns(batch.columns, cmap, line)
            line += batch.num_rows
            report.rows += batch.num_rows
    except (pa.ArrowInvalid, _FastPathFailed, UnicodeDecodeError) as exc:
        raise _FastPathFailed from exc
    finally:
        if counted is not None:
            counted.close()
    if counted is not None:
        data_lines = max(counted.lines - 1, 0)
    if report.rows != data_lines:
        raise _FastPathFailed
    tail = counted.tail if counted is not None else _file_tail(path)
    if not _last_line_agrees(tail, last_row, limit):
        raise _FastPathFailed
    report.physical_lines = report.row_lines = report.rows


def _slow_csv(
    path: Path, header: CsvHeader, report: ParseReport, options: ReaderOptions
) -> Iterator[pa.RecordBatch]:
    """Parse record by record; a line that does not parse becomes a reject.

    A record is one physical line, or several when a quoted field holds a line break. When a
    record spanning lines does not come out right (the quote never closes, the field outgrows
    the size limit, the fields do not match the header), its first line is rejected and
    parsing resumes on the next line, so one stray quote costs one line, not the rest of the
    file.
    """
    report.path = "line-by-line"
    cmap, limit = header.cmap, options.field_size_limit
    width = cmap.width
    budget = width * (2 * limit + 3) + 2  # no valid record is longer than that
    buffers: list[list[str]] = [[] for _ in range(width)]
    starts: list[int] = []

    def flush() -> pa.RecordBatch:
        cols = [pa.array(b, pa.string()) for b in buffers]
        batch = _batch_from_columns(cols, cmap, 0, np.asarray(starts, dtype=np.int64))
        for b in buffers:
            b.clear()
        starts.clear()
        return batch

    def reject(number: int, text: str, error: str) -> None:
        report.rejects.append(Reject(number, text, error))

    with _Lines(path) as lines:
        for _ in range(header.lines):
            lines.next()
        lines.start_data()
        while (first := lines.next()) is not None:
            number, text = first
            body = _strip_eol(text)
            if _has_surrogates(body):
                reject(number, *_invalid_utf8(body))
                continue
            if not body.strip():
                reject(number, body, "blank line")
                continue
            record = _read_record(first, lines, limit, budget)
            if len(record.lines) == 1:
                problem = _single_line_problem(record, width, limit)
            else:
                problem = _multi_line_problem(record, width, limit)
                if problem is not None:
                    lines.push_back(record.lines[1:])
            if problem is not None:
                reject(number, body, problem)
                continue
            assert record.fields is not None
            for buf, value in zip(buffers, record.fields, strict=True):
                buf.append(value)
            starts.append(number)
            report.rows += 1
            report.row_lines += len(record.lines)
            if len(starts) >= SLOW_BATCH_ROWS:
                yield flush()
        report.physical_lines = lines.data_lines
    report.check_accounting()
    if starts:
        yield flush()


def stream_csv_fast(
    path: Path,
    header: CsvHeader,
    report: ParseReport,
    data_lines: int | None = None,
    *,
    options: ReaderOptions | None = None,
) -> Iterator[pa.RecordBatch]:
    """The fast path alone, streaming; raises FastPathFailed when the file needs the slow one.

    `data_lines`: physical data lines (universal newlines, header excluded) of an uncompressed
    file whose every byte the caller already checked for NUL (ingest's `digest`); None makes
    the reader count and check them itself. A compressed file is always counted here.
    """
    try:
        yield from _guarded(
            report, _fast_csv(path, header, report, data_lines, options or DEFAULT_OPTIONS)
        )
    except _FastPathFailed as exc:
        # The exception may surface wrapped by the Delta writer, so leave a flag too.
        report.fast_path_failed = True
        raise FastPathFailed(str(path)) from exc


def stream_csv_slow(
    path: Path,
    header: CsvHeader,
    report: ParseReport,
    *,
    options: ReaderOptions | None = None,
) -> Iterator[pa.RecordBatch]:
    yield from _guarded(report, _slow_csv(path, header, report, options or DEFAULT_OPTIONS))


# -- JSON lines --------------------------------------------------------------------------
def _json_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"))  # ASCII: lone surrogates come out escaped


LONE_SURROGATE = "invalid JSON string: a lone surrogate escape (such as \\ud800) is not text"


class _JsonObject(dict[str, object]):
    """A JSON object that remembers its members in order, duplicates included."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, object]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs


def _json_row(
    obj: _JsonObject, limit: int
) -> tuple[dict[str, str | None], dict[str, str | None], str | None]:
    """(known columns, rescued members, problem) of one object."""
    values: dict[str, str | None] = {}
    extras: dict[str, str | None] = {}
    taken: set[str] = set()
    for position, (key, value) in enumerate(obj.pairs, start=1):
        name = normalise_header(key) or f"column_{position}"
        text = _json_text(value)
        if _has_surrogates(key) or (text is not None and _has_surrogates(text)):
            return values, extras, LONE_SURROGATE
        if name in SOURCE_COLUMNS and name not in values:
            values[name] = text
            taken.add(key.strip() or name)
        else:
            extras[_rescued_key(key, name, position, taken, duplicate=name in values)] = text
    if _too_large([*values.values(), *extras.values()], limit):
        return values, extras, f"field larger than {limit} bytes"
    return values, extras, None


def _read_jsonl(
    path: Path, report: ParseReport, options: ReaderOptions
) -> Iterator[pa.RecordBatch]:
    report.path = "jsonl"
    limit = options.field_size_limit
    rows: dict[str, list[str | None]] = {c: [] for c in SOURCE_COLUMNS}
    rescued: list[str | None] = []
    numbers: list[int] = []
    extra_names: set[str] = set()
    members: dict[str, None] = {}  # every member name seen, in first-seen order

    def flush() -> pa.RecordBatch:
        arrays = [pa.array(rows[c], pa.string()) for c in SOURCE_COLUMNS]
        arrays += [pa.array(rescued, pa.string()), pa.array(numbers, pa.int64())]
        for v in rows.values():
            v.clear()
        rescued.clear()
        numbers.clear()
        return pa.RecordBatch.from_arrays(arrays, schema=PARSED_SCHEMA)

    def reject(number: int, text: str, error: str) -> None:
        report.rejects.append(Reject(number, text, error))

    with _Lines(path) as lines:
        while (item := lines.next()) is not None:
            number, text = item
            body = _strip_eol(text)
            if _has_surrogates(body):
                reject(number, *_invalid_utf8(body))
                continue
            if not body.strip():
                reject(number, body, "blank line")
                continue
            try:
                obj = json.loads(
                    body,
                    parse_float=str,
                    parse_int=str,
                    parse_constant=str,
                    object_pairs_hook=_JsonObject,
                )
                if not isinstance(obj, _JsonObject):
                    reject(number, body, "not a JSON object")
                    continue
                values, extras, problem = _json_row(obj, limit)
            except RecursionError:
                reject(number, body, "invalid JSON: nested too deeply")
                continue
            except json.JSONDecodeError as exc:
                reject(number, body, f"invalid JSON: {exc.msg}")
                continue
            except ValueError as exc:
                reject(number, body, f"invalid JSON: {exc}")
                continue
            if problem is not None:
                reject(number, body, problem)
                continue
            for c in SOURCE_COLUMNS:
                rows[c].append(values.get(c))
            extra_names.update(extras)
            members.update((key.strip(), None) for key, _ in obj.pairs)
            rescued.append(json.dumps(extras) if extras else None)
            numbers.append(number)
            report.rows += 1
            report.row_lines += 1
            if len(numbers) >= SLOW_BATCH_ROWS:
                yield flush()
        report.physical_lines = lines.data_lines
    report.rescued_columns = sorted(extra_names)
    report.columns = list(members)
    report.check_accounting()
    if numbers:
        yield flush()


def read_jsonl(
    path: Path, report: ParseReport, *, options: ReaderOptions | None = None
) -> Iterator[pa.RecordBatch]:
    """One JSON object per line; numbers are kept as their exact source text."""
    yield from _guarded(report, _read_jsonl(path, report, options or DEFAULT_OPTIONS))


# -- Parquet -----------------------------------------------------------------------------
def _read_parquet(path: Path, report: ParseReport) -> Iterator[pa.RecordBatch]:
    report.path = "parquet"
    try:
        pfile = pq.ParquetFile(path)
        cmap = ColumnMap.from_header(pfile.schema_arrow.names)
        report.use_header(cmap)
        line = 1
        for batch in pfile.iter_batches(batch_size=SLOW_BATCH_ROWS):
            cols = [_as_string(col) for col in batch.columns]
            yield _batch_from_columns(cols, cmap, line)
            line += batch.num_rows
            report.rows += batch.num_rows
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise FileUnreadableError(f"not a readable Parquet file: {exc}") from exc
    report.physical_lines = report.row_lines = report.rows


def read_parquet(
    path: Path, report: ParseReport, *, options: ReaderOptions | None = None
) -> Iterator[pa.RecordBatch]:
    """Every column cast to its string form; row numbers are 1-based row positions."""
    yield from _guarded(report, _read_parquet(path, report))


def _as_string(array: pa.Array) -> pa.Array:
    if pa.types.is_string(array.type):
        return array
    if pa.types.is_large_string(array.type) or pa.types.is_string_view(array.type):
        return array.cast(pa.string())
    try:
        return array.cast(pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return pa.array([None if v is None else str(v) for v in array.to_pylist()], pa.string())


# -- whole files in memory ---------------------------------------------------------------
def read_table(path: Path, *, options: ReaderOptions | None = None) -> tuple[pa.Table, ParseReport]:
    """Parse a whole file into memory, as ingest would (fast path, else line by line).

    For tests, tools and small files; raises FileUnreadableError when the file fails as a whole.
    """
    options = options or DEFAULT_OPTIONS
    report = ParseReport()
    fmt = file_format(path, options=options) or "csv"
    if fmt == "jsonl":
        return _table(read_jsonl(path, report, options=options)), report
    if fmt == "parquet":
        return _table(read_parquet(path, report, options=options)), report
    header = read_csv_header(path, options=options)
    if header is None:
        return PARSED_SCHEMA.empty_table(), report
    report.use_header(header.cmap)
    try:
        return _table(stream_csv_fast(path, header, report, options=options)), report
    except FastPathFailed:
        report.reset()
    return _table(stream_csv_slow(path, header, report, options=options)), report


def _table(batches: Iterator[pa.RecordBatch]) -> pa.Table:
    return pa.Table.from_batches(list(batches), schema=PARSED_SCHEMA)
