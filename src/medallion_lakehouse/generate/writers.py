"""Streaming writers for landing files: open once, append Arrow tables chunk by chunk.

All columns are written as strings, as a source system exports them (an invalid quantity such
as `two` must survive the trip). CSV and JSONL are built by Arrow compute kernels, never by a
Python loop over rows.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from medallion_lakehouse.generate.options import FileFormat

EXTENSIONS: dict[FileFormat, str] = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}
# Columns that a JSON source would send as numbers when they are numbers.
NUMERIC_COLUMNS = frozenset({"quantity", "price", "total"})


class LandingWriter(Protocol):
    """Appends tables (all string columns, fixed schema) to one landing file."""

    def write(self, table: pa.Table) -> None: ...

    def close(self) -> None: ...


class CsvWriter:
    """RFC 4180 CSV with an unquoted header and empty fields for nulls, like the seed data.

    Arrow's CSV writer quotes every string with `quoting_style="needed"` and always quotes the
    header, neither of which the original exports do; so the header is written here and values
    use `quoting_style="none"`, which raises rather than write a value that would need quotes
    (none of the generated values does).
    """

    def __init__(self, path: Path, columns: list[str]) -> None:
        self._file: BinaryIO = path.open("wb")
        self._file.write((",".join(columns) + "\n").encode())
        self._options = pacsv.WriteOptions(include_header=False, quoting_style="none")

    def write(self, table: pa.Table) -> None:
        pacsv.write_csv(table, self._file, self._options)

    def close(self) -> None:
        self._file.close()


class JsonlWriter:
    """One JSON object per line; numbers unquoted when they parse, nulls as `null`.

    Lines are assembled with Arrow string kernels and the resulting string buffer is written
    as-is (zero copy). Values never contain quotes or backslashes, so no escaping is needed.
    """

    def __init__(self, path: Path, columns: list[str]) -> None:
        self._file: BinaryIO = path.open("wb")
        self._columns = columns

    def _field(self, name: str, values: pa.Array) -> pa.Array:
        quoted = pc.binary_join_element_wise('"', values, '"', "")
        if name in NUMERIC_COLUMNS:
            is_number = pc.match_substring_regex(values, r"^-?[0-9]+(\.[0-9]+)?$")
            quoted = pc.if_else(is_number, values, quoted)
        return pc.fill_null(quoted, "null")

    def write(self, table: pa.Table) -> None:
        parts: list[pa.Array | str] = []
        for i, name in enumerate(self._columns):
            values = table.column(name).combine_chunks()
            parts.append(("{" if i == 0 else ",") + f'"{name}":')
            parts.append(self._field(name, values))
        parts.append("}\n")
        lines = pc.binary_join_element_wise(*parts, "")
        if isinstance(lines, pa.ChunkedArray):
            lines = lines.combine_chunks()
        _validity, offsets_buf, data = lines.buffers()
        if data is None or offsets_buf is None or len(lines) == 0:
            return
        offsets = np.frombuffer(offsets_buf, dtype=np.int32)
        first, last = int(offsets[lines.offset]), int(offsets[lines.offset + len(lines)])
        self._file.write(memoryview(data)[first:last])

    def close(self) -> None:
        self._file.close()


class ParquetWriter:
    """One Parquet file, one row group per chunk, string columns."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        schema = pa.schema([pa.field(c, pa.string()) for c in columns])
        self._writer = pq.ParquetWriter(path, schema, compression="zstd")

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table)

    def close(self) -> None:
        self._writer.close()


def open_writer(fmt: FileFormat, path: Path, columns: list[str]) -> LandingWriter:
    """A writer for `fmt` at `path` (truncated)."""
    if fmt == "csv":
        return CsvWriter(path, columns)
    if fmt == "jsonl":
        return JsonlWriter(path, columns)
    return ParquetWriter(path, columns)


class WriterContext:
    """`with` support for any LandingWriter."""

    def __init__(self, writer: LandingWriter) -> None:
        self.writer = writer

    def __enter__(self) -> LandingWriter:
        return self.writer

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.writer.close()
