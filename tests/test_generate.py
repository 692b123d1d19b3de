"""The synthetic generator: reproducible, counted defects, realistic distributions, seed shapes."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import medallion_lakehouse.cli.generate  # noqa: F401  (registers generate/explore)
from medallion_lakehouse.cli.app import app
from medallion_lakehouse.errors import ConfigError
from medallion_lakehouse.generate import (
    MANIFEST_NAME,
    GenerateOptions,
    LandingNotEmptyError,
    Manifest,
    generate,
)
from medallion_lakehouse.generate.population import PRICE_HIGH, PRICE_LOW, PRODUCTS
from medallion_lakehouse.generate.sales import INVALID_QUANTITY, INVALID_STORE

SEED_HEADER = "sale_date,store_id,customer_id,product,quantity,price,total,status"
SEED_STORE_SHAPES = {  # the original's shapes: NW-58, NW-166, NW-09, NW017, 078-NW
    "NW-<n>": r"NW-\d{2,3}",
    "NW<nnn>": r"NW\d{3}",
    "<nnn>-NW": r"\d{3}-NW",
}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
YEAR = {"start": date(2025, 1, 1), "end": date(2025, 12, 31)}


def small(**changes: object) -> GenerateOptions:
    """A fast, fully specified run (dates fixed so results do not depend on today)."""
    base: dict[str, object] = {"rows": 20_000, "customers": 600, "seed": 7, **YEAR}
    base.update(changes)
    return GenerateOptions(**base)  # type: ignore[arg-type]


def read(path: Path) -> pd.DataFrame:
    """A landing file as strings, empty fields as "" (as bronze keeps them)."""
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pandas().fillna("")
    if path.suffix == ".jsonl":
        records = [
            json.loads(line, parse_float=str, parse_int=str)
            for line in path.read_text().splitlines()
        ]
        return pd.DataFrame.from_records(records).fillna("")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def sha256s(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# -- reproducibility ----------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, fmt: str) -> None:
    opts = small(format=fmt, files=3, chunk_rows=5_000)
    generate(opts, tmp_path / "a")
    generate(opts, tmp_path / "b")
    generate(small(format=fmt, files=3, chunk_rows=5_000, seed=8), tmp_path / "c")
    a, b, c = (sha256s(tmp_path / x) for x in "abc")
    assert a == b
    assert len(a) == 4  # three files and the manifest
    assert all(a[name] != c[name] for name in a if name != MANIFEST_NAME)


def test_formats_hold_the_same_records(tmp_path: Path) -> None:
    frames = {}
    for fmt in ("csv", "jsonl", "parquet"):
        m = generate(small(rows=3_000, format=fmt, files=2), tmp_path / fmt)
        frames[fmt] = pd.concat([read(tmp_path / fmt / f.name) for f in m.files])
    pd.testing.assert_frame_equal(frames["csv"], frames["parquet"])
    pd.testing.assert_frame_equal(frames["csv"], frames["jsonl"])


def test_manifest_reproduces_the_run(tmp_path: Path) -> None:
    first = generate(GenerateOptions(rows=2_000, seed=3), tmp_path / "a")
    again = generate(Manifest.read(tmp_path / "a").generate_options, tmp_path / "b")
    assert first.to_dict() == again.to_dict()
    assert sha256s(tmp_path / "a") == sha256s(tmp_path / "b")


# -- manifest == files ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def defective(tmp_path_factory: pytest.TempPathFactory) -> tuple[Manifest, list[pd.DataFrame]]:
    """50k sales in 4 files, several chunks each, every defect at a visible rate."""
    out = tmp_path_factory.mktemp("defective")
    opts = small(
        rows=50_000,
        customers=1_500,
        files=4,
        chunk_rows=6_000,
        late_fraction=0.03,
        update_fraction=0.04,
        duplicate_fraction=0.02,
        invalid_fraction=0.01,
    )
    manifest = generate(opts, out)
    return manifest, [read(out / f.name) for f in manifest.files]


def _store_number(store_id: str) -> int | None:
    digits = re.sub(r"\D", "", store_id)
    return int(digits) if digits else None


def test_manifest_counts_equal_file_contents(
    defective: tuple[Manifest, list[pd.DataFrame]],
) -> None:
    manifest, frames = defective
    seen_status: dict[str, str] = {}
    for stats, df in zip(manifest.files, frames, strict=True):
        assert stats.rows == len(df)
        assert stats.duplicate_rows == int(df.duplicated().sum())
        assert stats.missing_price == int((df.price == "").sum())
        assert stats.missing_status == int((df.status == "").sum())
        assert (df.total != "").all(), "total is always present, even without a price"

        # Corrections: a sale_id first sent in an earlier file, now with a later status.
        resent = df[df.sale_id.isin(seen_status.keys())]
        assert stats.update_rows == len(resent)
        transitions = Counter(
            f"{seen_status[s].strip().lower()}_to_{new.lower()}"
            for s, new in zip(resent.sale_id, resent.status, strict=True)
        )
        assert transitions == Counter({k: v for k, v in stats.updates.items() if v})
        fresh = df[~df.sale_id.isin(seen_status.keys())].drop_duplicates()
        seen_status.update(zip(fresh.sale_id, fresh.status, strict=True))

        # Invalid values, one broken field per row.
        qty = fresh.quantity
        assert stats.invalid["quantity_zero"] == int((qty == "0").sum())
        assert stats.invalid["quantity_text"] == int(
            qty.isin(INVALID_QUANTITY["quantity_text"]).sum()
        )
        numbers = fresh.store_id.map(_store_number)
        assert stats.invalid["store_no_digits"] == int(numbers.isna().sum())
        out_of_range = numbers.notna() & ~numbers.between(1, 999)
        assert stats.invalid["store_out_of_range"] == int(out_of_range.sum())
        dates = pd.to_datetime(fresh.sale_date, format="%Y-%m-%d", errors="coerce")
        assert stats.invalid["date_unparseable"] == int(dates.isna().sum())

        # Late rows: fresh rows dated before this file's own period, inside its late window.
        valid = dates.dropna()
        late = valid[valid < pd.Timestamp(stats.sale_date_from)]
        # A late row may also be one whose date was made unparseable.
        assert len(late) <= stats.late_rows <= len(late) + stats.invalid["date_unparseable"]
        if stats.late_rows:
            assert late.min() >= pd.Timestamp(stats.late_date_from)
            assert late.max() <= pd.Timestamp(stats.late_date_to)
        assert valid.max() <= pd.Timestamp(stats.sale_date_to)
    assert len(seen_status) == manifest.options["rows"]


@pytest.mark.parametrize(
    ("defect", "option"),
    [
        ("duplicate_rows", "duplicate_fraction"),
        ("late_rows", "late_fraction"),
        ("update_rows", "update_fraction"),
        ("invalid_rows", "invalid_fraction"),
    ],
    ids=["duplicates", "late", "updates", "invalid"],
)
def test_defect_counts_are_exactly_the_configured_share(
    defective: tuple[Manifest, list[pd.DataFrame]], defect: str, option: str
) -> None:
    manifest, _ = defective
    expected = round(manifest.options["rows"] * manifest.options[option])
    assert manifest.defects()[defect] == expected


def test_invalid_values_cover_every_kind_and_shape(
    defective: tuple[Manifest, list[pd.DataFrame]],
) -> None:
    manifest, frames = defective
    assert all(v > 0 for v in manifest.defects()["invalid"].values())
    stores = set(pd.concat(frames).store_id)
    assert {*INVALID_STORE["store_no_digits"], *INVALID_STORE["store_out_of_range"]} <= stores


def test_corrections_and_late_rows_arrive_in_later_files(
    defective: tuple[Manifest, list[pd.DataFrame]],
) -> None:
    manifest, _ = defective
    first = manifest.files[0]
    assert first.update_rows == 0 and first.late_rows == 0
    assert all(f.update_rows > 0 and f.late_rows > 0 for f in manifest.files[1:])
    assert [f.name for f in manifest.files] == sorted(f.name for f in manifest.files)


def test_a_single_file_has_corrections_after_their_originals(tmp_path: Path) -> None:
    m = generate(small(rows=5_000, files=1, late_fraction=0.05), tmp_path)
    df = read(tmp_path / m.files[0].name)
    assert m.options["late_fraction"] == 0.0 and m.files[0].late_rows == 0
    assert m.files[0].update_rows == 100
    repeated = df[df.sale_id.duplicated(keep=False) & ~df.duplicated(keep=False)]
    last_lines = repeated.groupby("sale_id").tail(1)
    assert set(last_lines.status) <= {"Completed", "Returned"}
    assert (last_lines.index >= len(df) - m.files[0].update_rows).all()


# -- realism --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Manifest, pd.DataFrame]:
    """100k sales without injected defects, for distribution checks."""
    out = tmp_path_factory.mktemp("clean")
    opts = small(
        rows=100_000,
        customers=2_000,
        late_fraction=0,
        update_fraction=0,
        duplicate_fraction=0,
        invalid_fraction=0,
    )
    m = generate(opts, out)
    return m, read(out / m.files[0].name)


@pytest.mark.parametrize(
    ("status", "share", "tolerance"),
    [
        ("completed", 0.80, 0.03),
        ("pending", 0.10, 0.02),
        ("cancelled", 0.05, 0.015),
        ("returned", 0.05, 0.02),
    ],
    ids=["completed", "pending", "cancelled", "returned"],
)
def test_status_mix(
    clean: tuple[Manifest, pd.DataFrame], status: str, share: float, tolerance: float
) -> None:
    _, df = clean
    known = df.status[df.status != ""].str.strip().str.lower()
    assert abs((known == status).mean() - share) < tolerance


@pytest.mark.parametrize(
    ("column", "option"),
    [("price", "missing_price_fraction"), ("status", "missing_status_fraction")],
    ids=["price", "status"],
)
def test_missing_shares_follow_options(
    clean: tuple[Manifest, pd.DataFrame], column: str, option: str
) -> None:
    m, df = clean
    assert abs((df[column] == "").mean() - m.options[option]) < 0.004


def test_values_vary_in_case_and_whitespace_a_little(clean: tuple[Manifest, pd.DataFrame]) -> None:
    _, df = clean
    for column, canonical in (
        ("product", set(PRODUCTS)),
        ("status", {"Completed", "Pending", "Cancelled", "Returned", ""}),
    ):
        odd = ~df[column].isin(canonical)
        assert 0.01 < odd.mean() < 0.05
        assert set(df[column][odd].str.strip().str.title().replace("Smartphone", "Smartphone")) <= {
            c.title() for c in canonical
        } | {""}


@pytest.mark.parametrize("product", PRODUCTS)
def test_prices_lie_in_the_products_range(
    clean: tuple[Manifest, pd.DataFrame], product: str
) -> None:
    _, df = clean
    rows = df[(df["product"].str.strip().str.lower() == product.lower()) & (df.price != "")]
    prices = rows.price.astype(float)
    i = PRODUCTS.index(product)
    assert prices.between(PRICE_LOW[i], PRICE_HIGH[i]).all()
    assert prices.median() > PRICE_LOW[i]
    totals = rows.total.astype(float)
    assert np.allclose(totals, prices * rows.quantity.astype(int))


def test_totals_carry_float_noise_like_the_original(clean: tuple[Manifest, pd.DataFrame]) -> None:
    _, df = clean
    noisy = df.total.str.contains(r"\.\d{3,}")
    assert 0.005 < noisy.mean() < 0.2
    assert df.total.str.endswith(".0").any()  # 5420.0, not 5420
    assert all(repr(float(t)) == t for t in df.total.head(5_000))


def test_customers_come_back_and_the_calendar_has_seasons(
    clean: tuple[Manifest, pd.DataFrame],
) -> None:
    _, df = clean
    per_customer = df.customer_id.value_counts()
    assert len(per_customer) <= 2_000 and per_customer.median() >= 10
    assert df.customer_id.head(1_000).str.match(UUID).all()
    dates = pd.to_datetime(df.sale_date)
    by_weekday = dates.dt.weekday.value_counts(normalize=True)
    assert by_weekday[5] > by_weekday[0] * 1.2  # Saturday busier than Monday
    by_month = dates.dt.month.value_counts()
    assert by_month[12] > by_month[2] * 1.3  # December busier than February


def test_store_ids_come_in_the_original_shapes_and_a_few_more(
    clean: tuple[Manifest, pd.DataFrame],
) -> None:
    _, df = clean
    shares = {
        name: df.store_id.str.fullmatch(pattern).mean()
        for name, pattern in SEED_STORE_SHAPES.items()
    }
    assert all(share > 0.25 for share in shares.values()), shares
    assert df.store_id.str.fullmatch(r"nw \d{1,3}").any()
    assert df.store_id.str.fullmatch(r"\d{1,3}").any()
    numbers = df.store_id.map(_store_number)
    assert numbers.between(1, 180).all()


# -- seed-compatible ------------------------------------------------------------------------
def test_seed_compatible_output_looks_like_the_original(tmp_path: Path, seed_dir: Path) -> None:
    m = generate(small(rows=5_000, seed_compatible=True, files=2), tmp_path)
    first = tmp_path / m.files[0].name
    original = (seed_dir / "raw_sales.csv").read_text().splitlines()[0]
    assert first.read_text().splitlines()[0] == original == SEED_HEADER
    df = pd.concat([read(tmp_path / f.name) for f in m.files])
    assert list(df.columns) == SEED_HEADER.split(",")
    assert m.defects()["update_rows"] == 0 and m.options["update_fraction"] == 0.0
    seed = pd.read_csv(seed_dir / "raw_sales.csv", dtype=str, keep_default_na=False)
    for name, pattern in SEED_STORE_SHAPES.items():
        assert seed.store_id.str.fullmatch(pattern).any(), name
        assert df.store_id.str.fullmatch(pattern).mean() > 0.25, name
    assert df.customer_id.str.match(UUID).all()
    assert set(df["product"].str.strip().str.title()) == {p.title() for p in PRODUCTS}


# -- options and edge cases -------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes",
    [
        {"rows": 0},
        {"customers": 0},
        {"stores": 1000},
        {"files": 0},
        {"late_fraction": -0.1},
        {"duplicate_fraction": 0.9},
        {"format": "xml"},
        {"start": date(2025, 2, 1), "end": date(2025, 1, 1)},
        {"start": date(2025, 1, 1), "end": date(2025, 1, 2), "files": 3},
        {"chunk_rows": 10},
    ],
    ids=[
        "rows",
        "customers",
        "stores",
        "files",
        "late",
        "dups",
        "format",
        "dates",
        "files>days",
        "chunk",
    ],
)
def test_invalid_options_are_refused_with_a_message(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="Invalid generate options"):
        GenerateOptions(**changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("rows", [1, 7, 1_000], ids=["one", "seven", "thousand"])
def test_tiny_runs_work(tmp_path: Path, rows: int) -> None:
    m = generate(GenerateOptions(rows=rows, files=min(rows, 3), **YEAR), tmp_path)  # type: ignore[arg-type]
    assert sum(f.fresh_rows for f in m.files) == rows
    assert sum(len(read(tmp_path / f.name)) for f in m.files) == m.rows


def test_defaults_resolve_to_the_year_before_today() -> None:
    opts = GenerateOptions(rows=1_000).resolved(today=date(2026, 3, 1))
    assert (opts.start, opts.end) == (date(2025, 3, 1), date(2026, 2, 28))
    assert opts.customers == 100


def test_refuses_to_mix_with_an_earlier_run(tmp_path: Path) -> None:
    generate(small(rows=1_000, files=2), tmp_path)
    with pytest.raises(LandingNotEmptyError, match="--overwrite"):
        generate(small(rows=1_000), tmp_path)
    m = generate(small(rows=1_000), tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME, m.files[0].name]


# -- CLI ------------------------------------------------------------------------------------
def test_cli_generate_json_prints_the_manifest(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "generate",
            "--rows",
            "2000",
            "--files",
            "2",
            "--start",
            "2025-01-01",
            "--end",
            "2025-12-31",
            "--format",
            "jsonl",
            "--out",
            str(tmp_path),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["files"] == json.loads((tmp_path / MANIFEST_NAME).read_text())["files"]
    assert [f["name"] for f in printed["files"]] == ["sales_0001.jsonl", "sales_0002.jsonl"]


def test_cli_generate_defaults_to_the_workspace_landing_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["generate", "-w", str(tmp_path), "--rows", "500"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "landing" / "sales_0001.csv").is_file()
    assert "rows/s" in result.stdout


def test_cli_generate_rejects_a_bad_format(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["generate", "--format", "xml", "--out", str(tmp_path)])
    assert result.exit_code == 2


# -- churn is learnable, but not trivially ----------------------------------------------------
def _churn_frame(df: pd.DataFrame, cutoff: str, horizon: int = 90) -> pd.DataFrame:
    """Customer features from sales up to `cutoff`; label: no completed sale in the horizon."""
    t = pd.Timestamp(cutoff)
    past = df[df.date <= t]
    completed = past[past.completed]
    feats = pd.DataFrame(
        {
            "first": past.groupby("customer_id").date.min(),
            "return_rate": past.groupby("customer_id").returned.mean(),
            "last": completed.groupby("customer_id").date.max(),
            "frequency": completed.groupby("customer_id").size(),
        }
    )
    feats["recency"] = (t - feats["last"].fillna(feats["first"])).dt.days
    feats["tenure"] = (t - feats["first"]).dt.days
    feats["rate"] = feats.frequency.fillna(0) / feats.tenure.clip(lower=7)
    for days in (30, 90):
        recent = completed[completed.date > t - pd.Timedelta(days=days)].groupby("customer_id")
        feats[f"spend_{days}"] = recent.amount.sum()
        feats[f"orders_{days}"] = recent.size()
    future = df[(df.date > t) & (df.date <= t + pd.Timedelta(days=horizon)) & df.completed]
    feats["churned"] = ~feats.index.isin(future.customer_id.unique())
    return feats.drop(columns=["first", "last"]).fillna(0)


@pytest.mark.slow
def test_churn_beats_recency_out_of_time_without_being_trivial(tmp_path: Path) -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score

    opts = small(
        rows=1_000_000,
        customers=20_000,
        late_fraction=0,
        update_fraction=0,
        duplicate_fraction=0,
        invalid_fraction=0,
    )
    m = generate(opts, tmp_path)
    df = read(tmp_path / m.files[0].name)
    status = df.status.str.strip().str.lower()
    df = pd.DataFrame(
        {
            "customer_id": df.customer_id,
            "date": pd.to_datetime(df.sale_date),
            "amount": df.total.astype(float),
            "completed": status == "completed",
            "returned": status == "returned",
        }
    )
    train, test = _churn_frame(df, "2025-06-01"), _churn_frame(df, "2025-09-01")
    columns = ["recency", "rate", "return_rate", "spend_30", "spend_90", "orders_30", "orders_90"]
    model = RandomForestClassifier(200, min_samples_leaf=50, n_jobs=2, random_state=0)
    model.fit(train[columns], train.churned)
    auc = roc_auc_score(test.churned, model.predict_proba(test[columns])[:, 1])
    baseline = roc_auc_score(test.churned, test.recency)
    assert 0.1 < test.churned.mean() < 0.5
    assert baseline < 0.95, "recency alone must not solve it"
    assert auc > baseline + 0.005, (auc, baseline)
    assert auc < 0.97, auc


def test_a_failure_leaves_no_partial_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import medallion_lakehouse.generate.generator as generator

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(generator, "render", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        generate(small(rows=3_000, files=2), tmp_path)
    assert list(tmp_path.iterdir()) == []
