"""Contracts of bronze/sales and bronze/sales_rejects (DESIGN.md section 4)."""

from __future__ import annotations

import pyarrow as pa

from medallion_lakehouse.checks import unique_key
from medallion_lakehouse.contracts import Column, TableContract, register

# The source columns bronze knows by name. Anything else lands in `_rescued_data`.
SOURCE_COLUMNS: tuple[str, ...] = (
    "sale_id",
    "sale_date",
    "store_id",
    "customer_id",
    "product",
    "quantity",
    "price",
    "total",
    "status",
)

TIMESTAMP = pa.timestamp("us", tz="UTC")

LINEAGE_COLUMNS: tuple[Column, ...] = (
    Column(
        "_source_file", pa.string(), "Path of the landing file, relative to the landing folder."
    ),
    Column("_source_file_sha256", pa.string(), "sha256 of the file's bytes."),
    Column(
        "_source_line",
        pa.int64(),
        "1-based physical data line in the file (the header is line 0; `\\n`, `\\r\\n` and a "
        "lone `\\r` each end a line); for a CSV record whose quoted field spans lines, its first.",
        unique=True,
    ),
    Column("_batch_id", pa.string(), "One per ingested file."),
    Column(
        "_batch_seq",
        pa.int64(),
        "The lake's batch sequence number, one more per ingested file, allocated under the "
        "writer lock: it decides which version of a sale is latest (wall clocks do not).",
    ),
    Column("_ingested_at", TIMESTAMP, "When the file was ingested (UTC, information only)."),
)

BRONZE_SALES = TableContract(
    name="bronze/sales",
    grain="one row per source record, exactly as received",
    key=("_batch_id", "_source_line"),
    partition_by=("_ingest_date",),
    description=(
        "Every source column kept as a string (nothing parsed, nothing lost); a column that is "
        "absent from a file is null, an empty field is an empty string."
    ),
    write_mode="append",
    write_note="one commit per file; files already ingested are skipped by sha256",
    columns=(
        *(
            Column(c, pa.string(), f"Source column `{c}` as received.", unique=c == "sale_id")
            for c in SOURCE_COLUMNS
        ),
        *LINEAGE_COLUMNS,
        Column("_rescued_data", pa.string(), "JSON of columns not in the expected schema."),
        Column("_ingest_date", pa.string(), "UTC date of ingestion, YYYY-MM-DD (partition)."),
    ),
    checks=(unique_key(),),
)

BRONZE_REJECTS = TableContract(
    name="bronze/sales_rejects",
    grain="one row per physical line that could not be parsed into fields",
    key=("_batch_id", "_source_line"),
    partition_by=("_ingest_date",),
    description=(
        "Wrong field count, broken quoting, a quote that never closes (its first line only: "
        "parsing resumes on the next line), a field over the size limit, undecodable bytes, "
        "blank lines, invalid JSON (including nesting too deep and lone surrogate escapes)."
    ),
    write_mode="append",
    write_note="same commit rules as bronze/sales",
    columns=(
        *LINEAGE_COLUMNS,
        Column("raw_line", pa.string(), "The line's text (undecodable bytes replaced by U+FFFD)."),
        Column("error", pa.string(), "Why the line could not be parsed."),
        Column("_ingest_date", pa.string(), "UTC date of ingestion, YYYY-MM-DD (partition)."),
    ),
)

register(BRONZE_SALES, BRONZE_REJECTS)
