"""`generate`: options -> landing files + `_manifest.json`, in bounded memory.

Time is cut into one period per file, so files arrive in date order as a real feed's would.
Each file holds (1) fresh sales of its own period, (2) late sales dated weeks before its period
(files after the first), and (3) corrections of sales sent in earlier files (same `sale_id`,
later status). Rows are drawn and written `chunk_rows` at a time, so memory depends on the chunk
size and the customer pool, never on `rows`; only the pending corrections (a small share of
rows, kept as integer codes) wait in memory for their file.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medallion_lakehouse import __version__
from medallion_lakehouse.errors import MedallionError
from medallion_lakehouse.generate.defects import TRANSITIONS, Quota, inject
from medallion_lakehouse.generate.manifest import MANIFEST_NAME, FileStats, Manifest
from medallion_lakehouse.generate.options import FileFormat, GenerateOptions
from medallion_lakehouse.generate.population import Population, build_population
from medallion_lakehouse.generate.sales import (
    COLUMNS,
    SEED_COLUMNS,
    CodeTables,
    SalesCodes,
    WindowSampler,
    build_code_tables,
    render,
)
from medallion_lakehouse.generate.writers import EXTENSIONS, LandingWriter, open_writer

if TYPE_CHECKING:
    import pyarrow as pa

ProgressCallback = Callable[[int], None]
LATE_MIN_DAYS, LATE_MAX_DAYS = 14, 56  # late rows are two to eight weeks old


class LandingNotEmptyError(MedallionError):
    """The output folder already holds generated files."""

    exit_code = 2


@dataclass(frozen=True)
class FilePlan:
    """One landing file: its period and how many fresh and late sales it carries."""

    index: int
    name: str
    lo: int  # first day of its period (day index)
    hi: int  # one past the last day
    fresh: int  # on-time sales
    late_lo: int
    late_hi: int
    late: int


def file_name(index: int, fmt: FileFormat) -> str:
    """`sales_0001.csv`, ...: lexical order is arrival order."""
    return f"sales_{index + 1:04d}{EXTENSIONS[fmt]}"


def _split(total: int, weights: np.ndarray) -> np.ndarray:
    """Integers proportional to `weights` summing exactly to `total` (largest remainder)."""
    if total == 0 or weights.sum() <= 0:
        out = np.zeros(len(weights), dtype=np.int64)
        if total:
            out[-1] = total
        return out
    share = weights / weights.sum() * total
    out = np.floor(share).astype(np.int64)
    rest = total - int(out.sum())
    out[np.argsort(-(share - out), kind="stable")[:rest]] += 1
    return out


def plan_files(opts: GenerateOptions, pop: Population) -> list[FilePlan]:
    """Cut the period into `files` slices and spread fresh and late sales over them."""
    n, days = opts.files, opts.days
    bounds = [k * days // n for k in range(n + 1)]
    mass = np.array(
        [pop.customers.window_mass(pop.calendar, bounds[k], bounds[k + 1]).sum() for k in range(n)]
    )
    late_total = round(opts.rows * opts.late_fraction) if n > 1 else 0
    fresh = _split(opts.rows - late_total, mass)
    late = np.zeros(n, dtype=np.int64)
    if n > 1:
        late[1:] = _split(late_total, fresh[1:].astype(np.float64) + 1.0)
    plans = []
    for k in range(n):
        lo, hi = bounds[k], bounds[k + 1]
        late_hi = lo - LATE_MIN_DAYS if lo - LATE_MIN_DAYS >= 1 else lo
        late_lo = max(0, lo - LATE_MAX_DAYS) if late_hi < lo else 0
        plans.append(
            FilePlan(
                k, file_name(k, opts.format), lo, hi, int(fresh[k]), late_lo, late_hi, int(late[k])
            )
        )
    return plans


class _BackgroundWriter:
    """Renders and writes chunks on a thread while the caller draws the next one.

    NumPy (drawing) and Arrow (rendering, writing) both release the GIL for most of their
    work, so on two cores the two halves overlap. The queue is short: at most two chunks of
    codes wait in memory.
    """

    def __init__(self, render: Callable[[SalesCodes], pa.Table]) -> None:
        self._render = render
        self._queue: queue.Queue[tuple[LandingWriter, SalesCodes | None] | None] = queue.Queue(2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="landing-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            writer, codes = item
            if self._error is not None:
                continue
            try:
                if codes is None:
                    writer.close()
                else:
                    writer.write(self._render(codes))
            except BaseException as exc:  # re-raised in the generating thread
                self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, writer: LandingWriter, codes: SalesCodes) -> None:
        self._check()
        self._queue.put((writer, codes))

    def close_file(self, writer: LandingWriter) -> None:
        self._queue.put((writer, None))

    def finish(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._check()


def _batched(parts: list[SalesCodes], size: int) -> Iterator[SalesCodes]:
    """Concatenate small pieces into batches of about `size` rows, freeing them as it goes."""
    group: list[SalesCodes] = []
    rows = 0
    while parts:
        part = parts.pop(0)
        group.append(part)
        rows += len(part)
        if rows >= size:
            yield SalesCodes.concat(group)
            group, rows = [], 0
    if group:
        yield SalesCodes.concat(group)


def _chunks(total: int, size: int) -> Iterator[int]:
    while total > 0:
        yield min(total, size)
        total -= size


def _prepare_folder(out_dir: Path, overwrite: bool) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = sorted(
        p for p in out_dir.iterdir() if p.name == MANIFEST_NAME or p.name.startswith("sales_")
    )
    if existing and not overwrite:
        raise LandingNotEmptyError(
            f"{out_dir} already holds generated files ({existing[0].name}, ...). "
            "Pass --overwrite (overwrite=True) to replace them, or choose another --out."
        )
    for path in existing:
        path.unlink()


def generate(
    options: GenerateOptions,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> Manifest:
    """Write landing files and `_manifest.json` into `out_dir`; return the manifest.

    The same options (after `resolved()`) and seed give byte-identical files.
    """
    opts = options.resolved()
    out = Path(out_dir)
    _prepare_folder(out, overwrite)
    pop = build_population(opts)
    tables = build_code_tables(pop)
    plans = plan_files(opts, pop)
    columns = list(SEED_COLUMNS if opts.seed_compatible else COLUMNS)
    last_source = len(plans) - 1 if len(plans) > 1 else 1  # files whose sales may be corrected
    fresh_in_sources = sum(p.fresh + p.late for p in plans[:last_source])
    invalid_q = Quota(round(opts.rows * opts.invalid_fraction), opts.rows)
    dup_q = Quota(round(opts.rows * opts.duplicate_fraction), opts.rows)
    update_q = Quota(round(opts.rows * opts.update_fraction), fresh_in_sources)
    pending: dict[int, list[SalesCodes]] = {k: [] for k in range(len(plans))}
    sale_no = 0
    stats: list[FileStats] = []
    with_sale_id = not opts.seed_compatible
    background = _BackgroundWriter(
        lambda codes: render(codes, tables, seed=opts.seed, with_sale_id=with_sale_id)
    )
    try:
        for plan in plans:
            fs = FileStats(
                name=plan.name,
                sale_date_from=_day(pop, plan.lo),
                sale_date_to=_day(pop, plan.hi - 1),
            )
            if plan.late:
                fs.late_date_from = _day(pop, plan.late_lo)
                fs.late_date_to = _day(pop, plan.late_hi - 1)
            tmp = out / f".{plan.name}.tmp"
            writer = open_writer(opts.format, tmp, columns)
            segments = (
                (0, plan.lo, plan.hi, plan.fresh),
                (1, plan.late_lo, plan.late_hi, plan.late),
            )
            for segment, lo, hi, count in segments:
                if count == 0:
                    continue
                sampler = WindowSampler(pop, lo, hi)
                for c, n in enumerate(_chunks(count, opts.chunk_rows)):
                    rng = np.random.default_rng([opts.seed, 1, plan.index, segment, c])
                    codes = sampler.draw(
                        rng, n, sale_no, opts.missing_price_fraction, opts.missing_status_fraction
                    )
                    sale_no += n
                    wanted = update_q.take(n) if plan.index < last_source else 0
                    found = inject(
                        rng,
                        codes,
                        tables,
                        invalid=invalid_q.take(n),
                        duplicates=dup_q.take(n),
                        updates=wanted,
                    )
                    got = sum(found.transitions.values())
                    if plan.index < last_source:
                        update_q.shortfall(wanted, got)
                    _route_updates(rng, found.updates, plan.index, len(plans), pending)
                    fs.fresh_rows += n
                    fs.late_rows += n if segment == 1 else 0
                    fs.duplicate_rows += found.duplicates
                    for kind, v in found.invalid.items():
                        fs.invalid[kind] += v
                    _emit(background, writer, found.lines, tables, fs, progress)
            for part in _batched(pending.pop(plan.index), opts.chunk_rows):
                fs.update_rows += len(part)
                for name, _before, after in TRANSITIONS:
                    fs.updates[name] += int((part.status == after).sum())
                _emit(background, writer, part, tables, fs, progress)
            background.close_file(writer)
            stats.append(fs)
        background.finish()
    except BaseException:
        try:
            background.finish()
        finally:  # leave no half-written files behind
            for plan in plans:
                (out / f".{plan.name}.tmp").unlink(missing_ok=True)
        raise
    for plan in plans:
        (out / f".{plan.name}.tmp").replace(out / plan.name)
    manifest = Manifest(
        generator=f"medallion-lakehouse {__version__}",
        seed=opts.seed,
        options=opts.to_dict(),
        columns=columns,
        files=stats,
    )
    manifest.write(out)
    return manifest


def _day(pop: Population, day: int) -> str:
    return (pop.calendar.start + timedelta(days=day)).isoformat()


def _route_updates(
    rng: np.random.Generator,
    updates: SalesCodes,
    source: int,
    files: int,
    pending: dict[int, list[SalesCodes]],
) -> None:
    """Send each correction to a later file: usually the next, sometimes a few later."""
    if len(updates) == 0:
        return
    if files == 1:  # a single file: corrections follow the originals in the same file
        pending[0].append(updates.compact())
        return
    target = np.minimum(source + rng.geometric(0.6, len(updates)), files - 1)
    for k in np.unique(target):
        pending[int(k)].append(updates.take(np.flatnonzero(target == k)).compact())


def _emit(
    background: _BackgroundWriter,
    writer: LandingWriter,
    lines: SalesCodes,
    tables: CodeTables,
    fs: FileStats,
    progress: ProgressCallback | None,
) -> None:
    fs.rows += len(lines)
    fs.missing_price += int(np.isnan(lines.price).sum())
    fs.missing_status += int((lines.status == tables.status_null).sum())
    background.write(writer, lines)
    if progress is not None:
        progress(len(lines))
