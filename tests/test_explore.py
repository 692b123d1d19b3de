"""`explore_file` / `medallion explore`: the stage-1 EDA of a landing file."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

import medallion_lakehouse.cli.generate  # noqa: F401  (registers generate/explore)
from medallion_lakehouse.bronze.profile import ExploreError, explore_file, store_shape
from medallion_lakehouse.cli.app import app
from medallion_lakehouse.generate import GenerateOptions, generate


def test_explore_the_original_seed_file(seed_dir: Path) -> None:
    result = explore_file(seed_dir / "raw_sales.csv")
    assert result.rows == 5_000
    nulls = {p.name: p.nulls for p in result.column_profiles}
    assert nulls["price"] == 237 and nulls["status"] == 139  # as the seed README says
    assert set(result.store_shapes) == {"NW-<n>", "NW<nnn>", "<nnn>-NW"}
    assert sum(result.store_shapes.values()) == 5_000
    products = next(p for p in result.column_profiles if p.name == "product")
    assert products.distinct == 5 and sum(n for _, n in products.top) == 5_000
    assert result.totals.count == 5_000 and result.totals.float_noise > 0
    assert sum(n for _, n in result.totals.histogram) == 5_000
    assert (result.sale_date_min, result.sale_date_max) == ("2024-12-21", "2025-12-21")


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_explore_agrees_with_the_manifest(tmp_path: Path, fmt: str) -> None:
    opts = GenerateOptions(
        rows=4_000,
        seed=5,
        format=fmt,
        start=date(2025, 1, 1),
        end=date(2025, 12, 31),
        invalid_fraction=0.02,
    )
    m = generate(opts, tmp_path)
    result = explore_file(tmp_path / m.files[0].name)
    stats = m.files[0]
    nulls = {p.name: p.nulls for p in result.column_profiles}
    assert result.format == fmt and result.rows == stats.rows
    assert nulls["price"] == stats.missing_price and nulls["status"] == stats.missing_status
    assert result.unparseable_dates == stats.invalid["date_unparseable"]
    quantity = dict(next(p for p in result.column_profiles if p.name == "quantity").top)
    assert quantity.get("0", 0) == stats.invalid["quantity_zero"]
    assert json.loads(json.dumps(result.to_dict()))["rows"] == stats.rows


@pytest.mark.parametrize(
    ("store_id", "shape"),
    [
        ("NW-58", "NW-<n>"),
        ("NW-166", "NW-<n>"),
        ("NW-09", "NW-<n>"),
        ("NW017", "NW<nnn>"),
        ("078-NW", "<nnn>-NW"),
        ("NW-007", "NW-<nnn>"),
        ("nw 7", "nw <n>"),
        ("7", "<n>"),
        ("NW-XX", "other"),
        ("NW-1500", "other"),
    ],
)
def test_store_shapes(store_id: str, shape: str) -> None:
    assert store_shape(store_id) == shape


def test_explore_a_missing_file_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(ExploreError, match="not a file"):
        explore_file(tmp_path / "nope.csv")


def test_cli_explore_prints_tables_and_json(seed_dir: Path) -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["explore", str(seed_dir / "raw_sales.csv")])
    assert shown.exit_code == 0, shown.output
    assert "store_id shapes" in shown.stdout and "5,000" in shown.stdout
    as_json = runner.invoke(app, ["explore", str(seed_dir / "raw_sales.csv"), "--json"])
    assert json.loads(as_json.stdout)["rows"] == 5_000
    missing = runner.invoke(app, ["explore", "/nonexistent.csv"])
    assert missing.exit_code == 2


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("broken.csv", "a,b\n1,2\n1,2,3\n"),
        ("broken.jsonl", '{"sale_id": "1"}\n{"sale_id": \n'),
    ],
    ids=["csv-field-count", "jsonl-truncated"],
)
def test_explore_counts_the_lines_bronze_would_reject(tmp_path: Path, name: str, text: str) -> None:
    # The profile reads through bronze's readers: a broken line is a reject there, not a
    # failure of the whole file, and the profile says how many there are.
    path = tmp_path / name
    path.write_text(text)
    result = explore_file(path)
    assert result.rows == 1 and result.rejected_lines == 1


def test_explore_reports_unreadable_files(tmp_path: Path) -> None:
    path = tmp_path / "binary.csv"
    path.write_bytes(b"sale_id,total\n1,\x002\n")
    with pytest.raises(ExploreError, match="Cannot read"):
        explore_file(path)


def test_explore_sees_the_columns_bronze_sees(tmp_path: Path) -> None:
    # A quoted header field with a comma and a quoted line break: a plain split(",") of the
    # header (the old profiler) named columns the file does not have.
    path = tmp_path / "quoted.csv"
    path.write_text('"sale_date","store_id","note, free"\n2025-01-02,NW-7,"two\nlines"\n')
    result = explore_file(path)
    assert result.columns == ["sale_date", "store_id"] and result.rows == 1
    assert result.store_shapes == {"NW-<n>": 1}
