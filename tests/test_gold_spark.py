"""Gold on Spark: the same Ibis expressions give the pandas reference's numbers, incrementally."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from medallion_lakehouse.config import Settings, load_settings
from medallion_lakehouse.engines import Engine, create_engine
from medallion_lakehouse.gold.tables.daily_sales import DAILY_SALES
from medallion_lakehouse.lake import Lake
from tests.test_gold import (
    T0,
    assert_matches_reference,
    put_silver,
    reference_silver,
    run_gold,
)

pytestmark = [
    pytest.mark.spark,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("java") is None and not os.environ.get("JAVA_HOME"), reason="no Java"
    ),
]


@pytest.fixture(scope="module")
def spark_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    settings = load_settings(
        tmp_path_factory.mktemp("spark"),
        engine="spark",
        spark_master="local[2]",
        spark_conf={"spark.sql.shuffle.partitions": "4"},
    )
    engine = create_engine(settings)
    yield engine
    engine.close()


def test_seed_gold_on_spark_equals_reference(
    settings: Settings, spark_engine: Engine, seed_dir: Path
) -> None:
    raw, late = seed_dir / "raw_sales.csv", seed_dir / "late_sales.csv"
    first = reference_silver([raw])
    both = reference_silver([raw, late])
    new = both[~both.sale_id.isin(first.sale_id)]
    spark_settings = settings.model_copy(update={"engine": "spark"})
    with Lake(spark_settings, engine=spark_engine) as lake:
        put_silver(lake, first.assign(_ingested_at=T0), "s1")
        run_gold(lake, run="g1")
        assert_matches_reference(lake, first)
        put_silver(
            lake,
            pd.concat([first.assign(_ingested_at=T0), new.assign(_ingested_at=T0 + timedelta(1))]),
            "s2",
        )
        result = run_gold(lake, run="g2")
        assert result.metrics["rebuilt_months"][DAILY_SALES.name] == ["2025-11", "2025-12"]
        assert_matches_reference(lake, both)
