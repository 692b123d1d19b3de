"""storage.delta helpers that other tests only reach indirectly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa
import pytest

from medallion_lakehouse.storage.delta import CommitInfo, WriteSpec, distinct_values, write_arrow

SCHEMA = pa.schema([("sha", pa.string()), ("n", pa.int64())])
COMMIT = CommitInfo(run_id="r", step="test")


def _append(uri: str, shas: list[str | None]) -> None:
    data = pa.table({"sha": shas, "n": list(range(len(shas)))}, schema=SCHEMA)
    write_arrow(uri, data, WriteSpec(schema=SCHEMA, commit=COMMIT))


def test_distinct_values_from_single_value_files_and_mixed_ones(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    assert distinct_values(uri, "sha") == set()  # no table yet
    _append(uri, ["aaa"] * 3)  # one value per file: answered from the footer
    _append(uri, ["bbb"])
    _append(uri, ["ccc", "ddd", "ccc", None])  # mixed and nulls: scanned
    assert distinct_values(uri, "sha") == {"aaa", "bbb", "ccc", "ddd"}


def test_distinct_values_follow_the_current_version(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    _append(uri, ["old"])
    write_arrow(
        uri,
        pa.table({"sha": ["new"], "n": [0]}, schema=SCHEMA),
        WriteSpec(schema=SCHEMA, commit=COMMIT, mode="overwrite"),
    )
    # The removed file is still on disk; only the live one counts.
    assert distinct_values(uri, "sha") == {"new"}


def test_distinct_values_read_the_column_only_when_the_log_cannot_prove_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medallion_lakehouse.storage import delta

    scans: list[str] = []
    scan = delta._scan_distinct
    monkeypatch.setattr(
        delta, "_scan_distinct", lambda table, column: scans.append(column) or scan(table, column)
    )
    uri = str(tmp_path / "t")
    _append(uri, ["x", "x", "x"])
    _append(uri, [None, None])  # only nulls: no value, nothing to read
    assert distinct_values(uri, "sha") == {"x"} and scans == []
    # Values sharing their first 100 characters: writers truncate long statistics (delta-rs
    # at 64 characters, the maximum rounded up), which must not pass for one value.
    long = "p" * 100
    _append(uri, [long + "a", long + "a"])
    _append(uri, [long + "a", long + "b"])
    assert distinct_values(uri, "sha") == {"x", long + "a", long + "b"} and scans == ["sha"]
    assert distinct_values(uri, "not_a_column") == set()


def test_distinct_values_of_a_partition_column_come_from_the_log(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    data = pa.table({"sha": ["a", "b", None], "n": [1, 2, 3]}, schema=SCHEMA)
    write_arrow(uri, data, WriteSpec(schema=SCHEMA, commit=COMMIT, partition_by=("sha",)))
    assert distinct_values(uri, "sha") == {"a", "b"}


def test_partition_diff_names_the_partitions_whose_files_changed(tmp_path: Path) -> None:
    from medallion_lakehouse.storage.delta import partition_diff

    uri = str(tmp_path / "t")
    spec = WriteSpec(schema=SCHEMA, commit=COMMIT, partition_by=("sha",))
    write_arrow(uri, pa.table({"sha": ["a", "b", "c"], "n": [1, 2, 3]}, schema=SCHEMA), spec)
    # v1 rewrites b (same rows, new files) and adds d; v2 drops c; a is never touched.
    again = dataclasses.replace(spec, replace={"sha": ["b", "d"]})
    write_arrow(uri, pa.table({"sha": ["b", "d", "d"], "n": [2, 4, 5]}, schema=SCHEMA), again)
    gone = dataclasses.replace(spec, replace={"sha": ["c"]})
    write_arrow(uri, SCHEMA.empty_table(), gone)

    diff = partition_diff(uri, "sha", since=0, version=2)
    assert diff is not None
    assert diff.changed == {"b", "c", "d"}
    assert diff.rows == {"a": 1, "b": 1, "d": 2}
    assert partition_diff(uri, "sha", since=2, version=2) == type(diff)(set(), diff.rows)
    assert partition_diff(uri, "sha", since=0, version=7) is None  # no such version
    assert partition_diff(uri, "n", since=0, version=2) is None  # not a partition column
    assert partition_diff(str(tmp_path / "none"), "sha", since=0, version=1) is None


def test_read_rows_filters_on_quoted_values_and_keeps_the_table_types(tmp_path: Path) -> None:
    from medallion_lakehouse.storage.delta import open_table, read_rows

    uri = str(tmp_path / "t")
    _append(uri, ["it's", 'say "hi"', "plain", None])
    table = open_table(uri)
    assert table is not None
    got = read_rows(table, columns=["n", "sha"], where={"sha": ["it's", 'say "hi"', "x') OR (1=1"]})
    assert got.schema == pa.schema([("n", pa.int64()), ("sha", pa.string())])
    assert sorted(got.column("sha").to_pylist()) == ["it's", 'say "hi"']
    assert read_rows(table, columns=["sha"], where={"sha": []}).num_rows == 0
    assert read_rows(table, columns=[]).num_columns == 0


def test_unique_columns_are_written_without_a_dictionary(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from medallion_lakehouse.silver.contract import SILVER_SALES

    assert "sale_id" in SILVER_SALES.unique_columns  # the contract says which columns
    uri = str(tmp_path / "t")
    data = pa.table({"id": [f"id-{i}" for i in range(1000)], "kind": ["a", "b"] * 500})
    schema = data.schema
    write_arrow(uri, data, WriteSpec(schema, COMMIT, unique_columns=("id", "not_a_column")))
    [path] = list((tmp_path / "t").glob("*.parquet"))
    meta = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(2)}
    assert not any("DICTIONARY" in e for e in encodings["id"])
    assert any("DICTIONARY" in e for e in encodings["kind"])


def test_row_groups_are_bounded_so_open_partition_files_stay_small(tmp_path: Path) -> None:
    """delta-rs builds each open partition file's row group in memory: writes cap it at
    ROW_GROUP_ROWS rows (a 30M-row silver write held 2.4 GiB at delta-rs' default)."""
    import pyarrow.parquet as pq

    from medallion_lakehouse.storage.delta import ROW_GROUP_ROWS

    uri = str(tmp_path / "t")
    rows = 2 * ROW_GROUP_ROWS + 10
    data = pa.table({"id": pa.array(range(rows), pa.int64())})
    write_arrow(uri, data, WriteSpec(data.schema, COMMIT))
    [path] = list((tmp_path / "t").glob("*.parquet"))
    meta = pq.ParquetFile(path).metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sum(sizes) == rows and max(sizes) <= ROW_GROUP_ROWS and len(sizes) == 3


def test_a_small_write_is_split_in_two_row_groups_so_both_threads_read_it(tmp_path: Path) -> None:
    """DuckDB scans one row group per thread: a late batch of 100k rows in one group was
    parsed on one core. A write known to be small is cut in halves, not below MIN_SPLIT_ROWS."""
    import pyarrow.parquet as pq

    from medallion_lakehouse.storage.delta import MIN_SPLIT_ROWS, ROW_GROUP_ROWS, row_group_rows

    assert row_group_rows(None) == ROW_GROUP_ROWS  # a stream of unknown size
    assert row_group_rows(2 * ROW_GROUP_ROWS + 1) == ROW_GROUP_ROWS
    assert row_group_rows(100_001) == 50_001
    assert row_group_rows(1_000) == MIN_SPLIT_ROWS

    def groups(data: pa.Table | pa.RecordBatchReader, name: str, **spec: int) -> list[int]:
        write_arrow(str(tmp_path / name), data, WriteSpec(schema, COMMIT, **spec))
        [path] = list((tmp_path / name).glob("*.parquet"))
        meta = pq.ParquetFile(path).metadata
        return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]

    rows = 3 * MIN_SPLIT_ROWS
    data = pa.table({"id": pa.array(range(rows), pa.int64())})
    schema = data.schema
    half = rows // 2
    assert groups(data, "table") == [half, half]  # a table knows its size
    assert groups(data.to_reader(), "bounded", rows=rows + 10) == [half + 5, half - 5]
    assert groups(data.to_reader(), "unknown") == [rows]


def test_bronze_passes_the_line_count_as_its_row_bound(tmp_path: Path) -> None:
    """An ingested file's rows land in two row groups (the digest's line count bounds them)."""
    import pyarrow.parquet as pq

    from medallion_lakehouse.bronze.ingest import ingest
    from medallion_lakehouse.config import load_settings
    from medallion_lakehouse.lake import Lake
    from medallion_lakehouse.storage.delta import MIN_SPLIT_ROWS

    rows = 2 * MIN_SPLIT_ROWS + 100
    landing = tmp_path / "data" / "landing"
    landing.mkdir(parents=True)
    lines = ["sale_date,store_id,customer_id,product,quantity,unit_price,total,status"]
    row = "2025-01-{:02d},NW-001,c{},Laptop,1,10.00,10.00,completed"
    lines += [row.format(1 + i % 28, i) for i in range(rows)]
    (landing / "a.csv").write_text("\n".join(lines) + "\n")
    with Lake(load_settings(tmp_path)) as lake:
        result = ingest(lake, run_id="r1", settle_seconds=0)
    assert result.rows == rows, result
    [path] = list((tmp_path / "data" / "lake" / "bronze" / "sales").rglob("*.parquet"))
    meta = pq.ParquetFile(path).metadata
    assert meta.num_rows == rows and meta.num_row_groups == 2


def test_files_in_partitions_lists_the_live_files_of_those_values(tmp_path: Path) -> None:
    from deltalake import DeltaTable

    from medallion_lakehouse.storage.delta import files_in_partitions

    uri = str(tmp_path / "t")
    schema = pa.schema([("sale_id", pa.string()), ("sale_month", pa.string())])
    spec = WriteSpec(schema=schema, commit=CommitInfo("r", "test"), partition_by=["sale_month"])
    months = ["2025-01", "2025-01", "2025-02", None]
    write_arrow(uri, pa.table({"sale_id": list("abcd"), "sale_month": months}, schema=schema), spec)
    table = DeltaTable(uri)
    january = files_in_partitions(table, {"sale_month": ["2025-01", "2025-03"]})
    assert january.column("num_records").to_pylist() == [2]
    assert files_in_partitions(table, {}).num_rows == 3  # no columns: every live file
    assert files_in_partitions(table, {"sale_month": []}).num_rows == 0
