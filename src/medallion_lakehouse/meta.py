"""Operational metadata tables under `_meta/`: ingested files, runs, data-quality results."""

from __future__ import annotations

import pyarrow as pa

from medallion_lakehouse.contracts import Column, TableContract, register

TIMESTAMP = pa.timestamp("us", tz="UTC")

INGESTED_FILES = TableContract(
    name="_meta/ingested_files",
    grain="one row per landing file ingested into bronze (the commit marker of its batch)",
    key=("sha256",),
    description=(
        "A file whose sha256 is listed here is skipped by later ingests. A row is written after "
        "the file's bronze commits; a batch in bronze without a row here (an interrupted ingest, "
        "a lost or restored ledger) gets its row back from the intent and bronze's lineage "
        "columns. Nothing in bronze is ever deleted to make the two agree."
    ),
    columns=(
        Column("source_file", pa.string(), "Path relative to the landing folder."),
        Column("sha256", pa.string(), "sha256 of the file's bytes."),
        Column("size_bytes", pa.int64(), "File size."),
        Column(
            "mtime_ns",
            pa.int64(),
            "The file's modification time (ns) when it was read: a later run skips a file with "
            "the same path, size and mtime without reading it again (`--verify` re-hashes).",
        ),
        Column("format", pa.string(), "csv | jsonl | parquet."),
        Column("batch_id", pa.string(), "The bronze batch the file became."),
        Column("seq", pa.int64(), "The batch's _batch_seq (the lake's batch order)."),
        Column("rows", pa.int64(), "Rows written to bronze/sales."),
        Column("rejects", pa.int64(), "Rows written to bronze/sales_rejects."),
        Column("rescued_columns", pa.string(), "JSON list of unexpected columns kept as rescued."),
        Column("parser", pa.string(), "Which parser read it (fast, line-by-line, jsonl, parquet)."),
        Column("ingested_at", TIMESTAMP, "Same as the batch's _ingested_at."),
        Column("run_id", pa.string(), "The run that ingested it."),
        Column(
            "columns",
            pa.string(),
            "JSON list of the file's columns as received (CSV header, Parquet schema, JSONL "
            "member names in first-seen order), compared across a source's batches for "
            "`_meta/schema_changes`; null for an empty file, a row rebuilt from bronze's lineage "
            "and files ingested before the column existed (last, so older ledgers gain it).",
        ),
    ),
)

RUNS = TableContract(
    name="_meta/runs",
    grain="one row per step per run",
    key=("run_id", "step"),
    columns=(
        Column("run_id", pa.string(), "Run identifier (time-ordered)."),
        Column("step", pa.string(), "bronze | silver | gold | ml | report | ..."),
        Column("engine", pa.string(), "duckdb | spark."),
        Column("status", pa.string(), "ok | failed | skipped."),
        Column("started_at", TIMESTAMP, "Step start (UTC)."),
        Column("finished_at", TIMESTAMP, "Step end (UTC)."),
        Column("seconds", pa.float64(), "Wall-clock duration."),
        Column("rows_in", pa.int64(), "Rows read."),
        Column("rows_out", pa.int64(), "Rows written."),
        Column("rows_quarantined", pa.int64(), "Rows sent to quarantine."),
        Column("tables", pa.string(), "JSON {table: version} written by the step."),
        Column("message", pa.string(), "Failure reason or skip reason."),
        Column("metrics", pa.string(), "JSON of step-specific metrics."),
    ),
)

QUALITY = TableContract(
    name="_meta/quality",
    grain="one row per data-quality rule per table per run",
    key=("run_id", "table", "rule"),
    columns=(
        Column("run_id", pa.string(), "Run identifier."),
        Column("table", pa.string(), "Table the rule guards."),
        Column("rule", pa.string(), "Rule name."),
        Column("severity", pa.string(), "warn | drop | fail."),
        Column("rows_checked", pa.int64(), "Rows the rule saw."),
        Column("rows_failed", pa.int64(), "Rows that broke it."),
        Column("checked_at", TIMESTAMP, "When (UTC)."),
        Column("description", pa.string(), "What the rule says, in words."),
        Column(
            "threshold",
            pa.float64(),
            "The rule's fail_share when it gates batches (medallion.toml [rules.NAME]); null "
            "when it has none.",
        ),
    ),
)

INTENTS = TableContract(
    name="_meta/intents",
    grain="one row per state change of a unit of work that spans several commits",
    key=("intent_id", "state"),
    description=(
        "Written before the first data commit of a unit of work (a landing file's ingest, a "
        "silver full refresh) and closed after its last one. An intent left `started` is an "
        "unfinished write of this lake: the next run completes it (bronze: from the file or from "
        "the rows already committed; silver: it resumes the full refresh)."
    ),
    write_mode="append",
    columns=(
        Column("intent_id", pa.string(), "The unit of work: a bronze batch_id, a silver run_id."),
        Column("step", pa.string(), "bronze | silver."),
        Column("kind", pa.string(), "ingest_file | full_refresh."),
        Column("state", pa.string(), "started | done | abandoned."),
        Column("seq", pa.int64(), "bronze: the batch's _batch_seq."),
        Column("payload", pa.string(), "JSON with what is needed to finish the work."),
        Column("run_id", pa.string(), "The run that recorded this state."),
        Column("recorded_at", TIMESTAMP, "When (UTC, information only)."),
    ),
)

SCHEMA_CHANGES = TableContract(
    name="_meta/schema_changes",
    grain="one row per batch whose columns differ from the previous batch of the same source",
    key=("batch_id",),
    description=(
        "Derived from `_meta/ingested_files` after each ingest (and so rebuilt if lost): a "
        "source is a folder of the landing area, its batches are compared in `_batch_seq` "
        "order by column name (case-insensitive, order ignored: bronze maps columns by name). "
        "A removed column and an added alias of it (medallion.toml [columns]) are a rename."
    ),
    write_mode="append",
    columns=(
        Column("source", pa.string(), "The landing folder the files came from (`.` for the top)."),
        Column("batch_id", pa.string(), "The batch whose columns changed."),
        Column("seq", pa.int64(), "Its _batch_seq."),
        Column("source_file", pa.string(), "Its file, relative to the landing folder."),
        Column("previous_batch_id", pa.string(), "The source's batch it is compared with."),
        Column("previous_file", pa.string(), "That batch's file."),
        Column("added", pa.string(), "JSON list of columns new in this batch (as received)."),
        Column("removed", pa.string(), "JSON list of columns the previous batch had."),
        Column(
            "renamed",
            pa.string(),
            'JSON list of {"from", "to", "column"}: a column replaced by an alias of the same '
            "canonical column.",
        ),
        Column("detected_at", TIMESTAMP, "When the change was recorded (UTC)."),
        Column("run_id", pa.string(), "The run that recorded it."),
    ),
)

register(INGESTED_FILES, RUNS, QUALITY, INTENTS, SCHEMA_CHANGES)
