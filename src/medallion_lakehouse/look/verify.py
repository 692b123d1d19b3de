"""Verify the live lake against a full refresh: incremental equals full, engine equals engine.

Silver and gold are rebuilt from bronze into a scratch lake (a full refresh, on the live lake's
engine or another one), then compared with the live tables month by month: rows, an
order-independent hash of every column, and completed revenue. Bronze is read in place (never
written); the scratch lake gets a copy of the small bookkeeping silver reads, restricted to the
batches live silver has processed, so batches still pending live do not count as differences.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from medallion_lakehouse.bronze.contract import BRONZE_SALES
from medallion_lakehouse.config import EngineName, Settings
from medallion_lakehouse.contracts import TableContract
from medallion_lakehouse.errors import MedallionError
from medallion_lakehouse.gold import step as gold_step
from medallion_lakehouse.gold.tables import GOLD_TABLES
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.look.sql import register_views, view_name
from medallion_lakehouse.meta import INGESTED_FILES
from medallion_lakehouse.pipeline.context import StepContext, new_run_id
from medallion_lakehouse.silver import step as silver_step
from medallion_lakehouse.silver.contract import (
    HELD_BATCHES,
    SILVER_BATCHES,
    SILVER_QUARANTINE,
    SILVER_SALES,
)
from medallion_lakehouse.storage.delta import CommitInfo, WriteResult

# Tables compared, with the column that splits them into comparable parts and the revenue column
# (None: no money in it). The quarantine has no month: it is compared per rule.
COMPARED: tuple[tuple[TableContract, str, str | None], ...] = (
    (SILVER_SALES, "sale_month", "total"),
    (SILVER_QUARANTINE, "rule", None),
    *((t.contract, "sale_month", "revenue") for t in GOLD_TABLES),
)
# Columns that name the run that wrote a row, not its content.
RUN_COLUMNS = frozenset({"run_id"})
READ_IN_PLACE = frozenset({BRONZE_SALES.name})


class VerifyError(MedallionError):
    """The scratch rebuild could not be made (not a difference: differences exit 1 on their own)."""

    exit_code = 2


@dataclass(frozen=True)
class PartDiff:
    """One month (or quarantine rule) of one table, live against the rebuild."""

    table: str
    part: str | None
    live_rows: int
    rebuilt_rows: int
    live_revenue: Decimal | None
    rebuilt_revenue: Decimal | None
    same_rows: bool  # the hash of every row's content agrees

    @property
    def equal(self) -> bool:
        return (
            self.same_rows
            and self.live_rows == self.rebuilt_rows
            and self.live_revenue == self.rebuilt_revenue
        )


@dataclass
class VerifyReport:
    engine: str
    scratch: str
    parts: list[PartDiff] = field(default_factory=list)
    compared_batches: int = 0
    excluded_batches: list[str] = field(default_factory=list)  # pending or held live
    notes: list[str] = field(default_factory=list)

    @property
    def differences(self) -> list[PartDiff]:
        return [p for p in self.parts if not p.equal]

    @property
    def equal(self) -> bool:
        return not self.differences

    def as_dict(self) -> dict[str, Any]:
        return {
            "equal": self.equal,
            "engine": self.engine,
            "scratch": self.scratch,
            "compared_batches": self.compared_batches,
            "excluded_batches": self.excluded_batches,
            "notes": self.notes,
            "tables": [c.name for c, _, _ in COMPARED],
            "differences": [_part_dict(p) for p in self.differences],
            "parts": [_part_dict(p) for p in self.parts],
        }


def _part_dict(p: PartDiff) -> dict[str, Any]:
    return {**p.__dict__, "equal": p.equal}


class ScratchLake(Lake):
    """A lake in a scratch folder that reads bronze from the live lake and never writes it."""

    def __init__(self, settings: Settings, live: Lake) -> None:
        super().__init__(settings)
        self._live = live

    def uri(self, name: str) -> str:
        return self._live.uri(name) if name in READ_IN_PLACE else super().uri(name)

    @property
    def storage_options(self) -> dict[str, str]:
        return self._live.storage_options

    def _refuse(self, name: str) -> None:
        if name in READ_IN_PLACE:
            raise VerifyError(f"verify must not write {name} of the live lake")

    def write(self, name: str, expr: Any, **kwargs: Any) -> WriteResult:
        self._refuse(name)
        return super().write(name, expr, **kwargs)

    def write_arrow(self, name: str, data: Any, **kwargs: Any) -> WriteResult:
        self._refuse(name)
        return super().write_arrow(name, data, **kwargs)

    def delete_where(self, name: str, predicate: str, *, commit: CommitInfo) -> int:
        self._refuse(name)
        return super().delete_where(name, predicate, commit=commit)


def _copy(live: Lake, scratch: Lake, name: str, rows: pa.Table, commit: CommitInfo) -> None:
    """Give the scratch lake its own copy of a small bookkeeping table (if the live one exists)."""
    if rows.num_rows or live.exists(name):
        scratch.write_arrow(name, rows, commit=commit, mode="overwrite")


def rebuild(
    live: Lake, folder: Path, *, engine: EngineName | None = None
) -> tuple[ScratchLake, VerifyReport]:
    """A full refresh of silver and gold from live bronze into `folder` (a new lake)."""
    settings = live.settings.model_copy(
        update={"lake_dir": str(folder), **({"engine": engine} if engine else {})}
    )
    report = VerifyReport(engine=settings.engine, scratch=str(folder))
    processed = set(
        live.read_arrow(SILVER_BATCHES.name, columns=["batch_id"]).column(0).to_pylist()
    )
    files = live.read_arrow(INGESTED_FILES.name)
    keep = pc.is_in(files.column("batch_id"), pa.array(sorted(processed), pa.string()))
    report.compared_batches = len(processed)
    report.excluded_batches = sorted(set(files.column("batch_id").to_pylist()) - processed)
    scratch = ScratchLake(settings, live)
    run_id = new_run_id()
    commit = CommitInfo(run_id=run_id, step="verify")
    _copy(live, scratch, INGESTED_FILES.name, files.filter(keep), commit)
    _copy(live, scratch, HELD_BATCHES.name, live.read_arrow(HELD_BATCHES.name), commit)
    if not processed:
        report.notes.append("silver has processed no bronze batch yet: nothing to rebuild")
        return scratch, report
    ctx = StepContext(run_id=run_id, full_refresh=True)
    silver = silver_step.run(scratch, ctx)
    for message in silver.metrics.get("errors", []):
        report.notes.append(f"rebuild: {message}")
    gold_step.run(scratch, ctx)
    return scratch, report


def _columns(contract: TableContract) -> list[str]:
    return [c for c in contract.column_names if c not in RUN_COLUMNS]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def summarise(
    con: duckdb.DuckDBPyConnection, view: str, contract: TableContract, part: str, money: str | None
) -> dict[str | None, tuple[int, int, Decimal | None]]:
    """part value -> (rows, sum of row hashes, completed revenue) of one view."""
    cols = ", ".join(_ident(c) for c in _columns(contract))
    if money is None:
        revenue = "NULL"
    elif contract.name == SILVER_SALES.name:  # silver's revenue is gold's: completed totals
        revenue = f"coalesce(sum({_ident(money)}) FILTER (WHERE status = 'completed'), 0)"
    else:
        revenue = f"coalesce(sum({_ident(money)}), 0)"
    # A sum (not XOR) of 64-bit row hashes: order-independent, and duplicates do not cancel out.
    sql = (
        f"SELECT {_ident(part)}, count(*), sum(hash({cols})::HUGEINT)::VARCHAR, {revenue} "
        f"FROM {view} GROUP BY ALL"
    )
    return {r[0]: (int(r[1]), int(r[2]), r[3]) for r in con.sql(sql).fetchall()}


def compare(live: Lake, scratch: Lake, report: VerifyReport) -> VerifyReport:
    """Fill `report.parts` with every month (rule) of every compared table."""
    con = duckdb.connect()
    try:
        register_views(con, live, prefix="live_")
        register_views(con, scratch, prefix="rebuilt_")
        for contract, part, money in COMPARED:
            name = view_name(contract)
            a = summarise(con, _qualified("live_" + name), contract, part, money)
            b = summarise(con, _qualified("rebuilt_" + name), contract, part, money)
            for key in sorted(a.keys() | b.keys(), key=lambda k: (k is None, k or "")):
                la, lb = a.get(key, (0, 0, None)), b.get(key, (0, 0, None))
                report.parts.append(
                    PartDiff(
                        table=contract.name,
                        part=key,
                        live_rows=la[0],
                        rebuilt_rows=lb[0],
                        live_revenue=la[2],
                        rebuilt_revenue=lb[2],
                        same_rows=la[1] == lb[1] and la[0] == lb[0],
                    )
                )
    finally:
        con.close()
    return report


def _qualified(view: str) -> str:
    return ".".join(_ident(p) for p in view.split("."))


def verify(
    live: Lake,
    *,
    engine: EngineName | None = None,
    scratch_dir: Path | None = None,
    keep: bool = False,
) -> VerifyReport:
    """Rebuild into a scratch lake and compare; the scratch is removed unless `keep`."""
    folder = Path(tempfile.mkdtemp(prefix="medallion-verify-", dir=scratch_dir))
    try:
        scratch, report = rebuild(live, folder, engine=engine)
        with scratch:
            return compare(live, scratch, report)
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def differing_months(report: VerifyReport) -> list[str]:
    """The sale months with any difference, over every table (quarantine rules excluded)."""
    return sorted(
        {p.part for p in report.differences if p.part and p.table != SILVER_QUARANTINE.name}
    )
