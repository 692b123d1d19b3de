"""Any bytes, in any landing format: no exception, and every physical line accounted for.

A physical line (universal newlines: `\\n`, `\\r\\n`, a lone `\\r`) ends up as a bronze row (a CSV
record whose quoted field holds line breaks covers all of its lines), a reject, or part of a file
recorded as failed. The bytes are drawn from pieces that hit the parsers' edges: quotes,
separators, every line ending, invalid UTF-8, JSON punctuation, escapes, rarely a NUL.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medallion_lakehouse.bronze import readers
from medallion_lakehouse.bronze.contract import SOURCE_COLUMNS
from medallion_lakehouse.bronze.ingest import ingest
from medallion_lakehouse.bronze.readers import ReaderOptions
from medallion_lakehouse.lake import Lake

PIECES = [
    b",", b",", b'"', b'"', b'""', b"\n", b"\n", b"\r", b"\r\n", b"a", b"1", b"Z9", b" ", b"\t",
    "é".encode(), "😀".encode(), b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xef\xbb\xbf",
    b"{", b"}", b"[", b"]", b":", b'"sale_id"', b'"Sale_ID"', b"\\", b"\\ud800", b"\\n", b"null",
    b"sale_id", b"quantity", b"x" * 40,
    b"A,1\n", b"A,1\r", b'A,"1\n2"\n', b'"q\r\nq",', b'"\r"', b'"a""\nb"', b'{"sale_id":"A"}\n',
]  # fmt: skip
BODY = st.lists(st.sampled_from(PIECES), max_size=60).map(b"".join)
RARE_NUL = st.sampled_from([b"", b"", b"", b"", b"", b"", b"", b"", b"", b"\x00"])
HEADERS = st.sampled_from([b"sale_id,quantity\n", b"sale_id\n", b"sale_id,quantity,extra\r\n"])
LIMITS = st.sampled_from([8, 64, 1 << 20])
FORMATS = st.sampled_from(["csv", "csv-free-header", "jsonl", "csv.gz", "csv-records"])
# Mostly well-formed records (two fields), some with quoted line breaks, some broken.
FIELD = st.sampled_from(
    [b"A", b"1", b"", b'"q,q"', b'"q\nq"', b'"q\r\nq"', b'"\r"', b'"a""\nb"', b'"open', b"x\xff"]
)
RECORD = st.tuples(FIELD, FIELD).map(b",".join)
ENDINGS = st.sampled_from([b"\n", b"\n", b"\r\n", b"\r"])
RECORDS = st.lists(st.tuples(RECORD, ENDINGS).map(b"".join), max_size=12).map(b"".join)

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
FILE_FAILURES = ("binary content (NUL bytes)", "header field larger than", "the header")


@st.composite
def landing_files(draw: st.DrawFn) -> tuple[str, bytes, bytes, int, bool]:
    """(file name, bytes on disk, the text they hold, field limit, header has one line)."""
    fmt = draw(FORMATS)
    if fmt == "csv-records":
        body = draw(RECORDS) + draw(RARE_NUL) + draw(BODY)
    else:
        body = draw(BODY) + draw(RARE_NUL) + draw(BODY)
    fixed_header = fmt in ("csv", "csv.gz", "csv-records")
    text = draw(HEADERS) + body if fixed_header else body
    name = {"csv-free-header": "f.csv", "csv.gz": "f.csv.gz", "csv-records": "f.csv"}.get(
        fmt, f"f.{fmt}"
    )
    on_disk = gzip.compress(text, mtime=0) if fmt == "csv.gz" else text
    return name, on_disk, text, draw(LIMITS), fixed_header


def physical_lines(text: bytes) -> int:
    if text.startswith(b"\xef\xbb\xbf"):
        text = text[3:]
    lines = re.split(rb"\r\n|\r|\n", text)
    if lines and lines[-1] == b"":
        lines.pop()
    return len(lines)


def _breaks(value: str | None) -> int:
    return 0 if value is None else len(re.findall(r"\r\n|\r|\n", value))


def record_span(row: dict[str, Any]) -> int:
    """Physical lines a CSV bronze row covers: 1 + the line breaks its values hold."""
    values = [row[c] for c in SOURCE_COLUMNS]
    if row["_rescued_data"] is not None:
        values += list(json.loads(row["_rescued_data"]).values())
    return 1 + sum(_breaks(v) for v in values)


def check_tiling(starts: list[tuple[int, int]], total: int, header_lines: int, kind: str) -> None:
    """(line, span) of rows and rejects cover data lines 1..N exactly once each."""
    covered = 0
    for line, span in sorted(starts):
        assert line == covered + 1, (kind, sorted(starts))
        covered += span
    assert covered == max(total - header_lines, 0), (kind, covered, total, header_lines)


def _expect_outcome(name: str, text: bytes, limit: int, fixed_header: bool) -> str | None:
    """The whole-file failure the input must give, where it is certain (else None)."""
    if b"\x00" in text:
        return "binary content (NUL bytes)"
    if fixed_header:  # its fields are at most 8 bytes, the smallest limit drawn
        return "ingested"
    if name.endswith(".jsonl"):
        return "ingested"
    return None


# -- through the readers (many examples, no Delta) --------------------------------------------
@PROPERTY
@given(landing_files())
def test_readers_account_for_every_line(tmp_path: Path, drawn: tuple) -> None:  # type: ignore[type-arg]
    name, on_disk, text, limit, fixed_header = drawn
    path = tmp_path / name
    path.write_bytes(on_disk)
    options = ReaderOptions(field_size_limit=limit)
    expected = _expect_outcome(name, text, limit, fixed_header)
    try:
        table, report = readers.read_table(path, options=options)
    except readers.FileUnreadableError as exc:
        assert str(exc).startswith(FILE_FAILURES), str(exc)
        assert expected in (None, "binary content (NUL bytes)") and str(exc).startswith(
            expected or ""
        ), (expected, str(exc))
        return
    assert expected in (None, "ingested"), (expected, text)
    assert report.row_lines + len(report.rejects) == report.physical_lines
    rows = table.to_pylist()
    jsonl = name.endswith(".jsonl")
    spans = [(r["_source_line"], 1 if jsonl else record_span(r)) for r in rows]
    spans += [(r.line, 1) for r in report.rejects]
    total = physical_lines(text)
    check_tiling(spans, total, _header_lines(path, options, total), "readers")
    assert sum(span for _, span in spans) == report.physical_lines
    assert table.num_rows == report.rows


# -- through the real ingest into a Delta lake (fewer examples: a commit each) -----------------
@settings(PROPERTY, max_examples=40)
@given(landing_files())
def test_ingest_accounts_for_every_line(lake: Lake, workspace: Path, drawn: tuple) -> None:  # type: ignore[type-arg]
    name, on_disk, text, limit, fixed_header = drawn
    landing = workspace / "data" / "landing"
    path = landing / name
    path.write_bytes(on_disk)
    options = ReaderOptions(field_size_limit=limit)
    try:
        [outcome] = ingest(lake, run_id="prop", files=[path], options=options).files
        total = physical_lines(text)
        header = _header_lines(path, options, total) if outcome.status == "ingested" else 0
    finally:
        path.unlink()
    if outcome.status == "skipped":  # the same bytes were drawn before
        assert outcome.reason == "already ingested (same sha256)"
        return
    expected = _expect_outcome(name, text, limit, fixed_header)
    if outcome.status == "failed":
        assert outcome.reason is not None and outcome.reason.startswith(FILE_FAILURES)
        assert expected in (None, "binary content (NUL bytes)")
        assert outcome.batch_id is None or _batch(lake, "bronze/sales", outcome.batch_id) == []
        return
    assert outcome.status == "ingested" and expected in (None, "ingested"), outcome
    assert outcome.batch_id is not None
    rows = _batch(lake, "bronze/sales", outcome.batch_id)
    rejects = _batch(lake, "bronze/sales_rejects", outcome.batch_id)
    assert (len(rows), len(rejects)) == (outcome.rows, outcome.rejects)
    jsonl = name.endswith(".jsonl")
    spans = [(r["_source_line"], 1 if jsonl else record_span(r)) for r in rows]
    spans += [(r["_source_line"], 1) for r in rejects]
    check_tiling(spans, total, header, "ingest")
    if fixed_header:
        assert header == 1


def _header_lines(path: Path, options: ReaderOptions, total: int) -> int:
    """Physical lines the CSV header record takes (0 for JSONL)."""
    if readers.file_format(path) != "csv":
        return 0
    header = readers.read_csv_header(path, options=options)
    if header is None:  # an empty file, or a lone blank line: no data lines either way
        assert total <= 1
        return total
    return header.lines


def _batch(lake: Lake, table: str, batch_id: str) -> list[dict[str, Any]]:
    return lake.read_arrow(table, where={"_batch_id": [batch_id]}).to_pylist()


# -- the fast path agrees with the line-by-line parser wherever a stray quote sits -------------
@pytest.mark.parametrize("block_bytes", [48, 64, 100])
def test_fast_path_never_keeps_a_quote_that_ran_to_its_block_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_bytes: int
) -> None:
    # pyarrow (newlines_in_values=False) lets an open quote run to the end of its block; on a
    # block's last line the row count still matches the line count, so the value check catches it.
    monkeypatch.setattr(readers, "FAST_BLOCK_BYTES", block_bytes)
    for stray in range(1, 13):
        lines = [f"S{n},{n}" for n in range(1, 13)]
        lines[stray - 1] = f'S{stray},"{stray}'
        path = tmp_path / f"stray_{stray}.csv"
        path.write_text("sale_id,quantity\n" + "\n".join(lines) + "\n")
        table, report = readers.read_table(path)
        header = readers.read_csv_header(path)
        assert header is not None
        slow_report = readers.ParseReport()
        slow = list(readers.stream_csv_slow(path, header, slow_report))
        assert [(r.line, r.error) for r in report.rejects] == [
            (r.line, r.error) for r in slow_report.rejects
        ]
        assert [r.line for r in report.rejects] == [stray], (stray, report.path)
        assert table.column("quantity").to_pylist() == [
            v for b in slow for v in b.column("quantity").to_pylist()
        ]
