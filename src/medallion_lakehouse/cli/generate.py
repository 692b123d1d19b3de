"""`medallion generate` (synthetic landing files) and `medallion explore` (a file's EDA)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from medallion_lakehouse.cli.app import (
    OUTPUT,
    JsonOpt,
    WorkspaceOpt,
    app,
    emit_json,
    err_console,
    handle_errors,
    log,
    say,
    settings_from,
    show_table,
)
from medallion_lakehouse.cli.args import parse_day
from medallion_lakehouse.config import Settings
from medallion_lakehouse.errors import ConfigError
from medallion_lakehouse.generate.options import FileFormat, GenerateOptions
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.meta import INGESTED_FILES

if TYPE_CHECKING:
    from medallion_lakehouse.bronze.profile import ExploreResult
    from medallion_lakehouse.generate import Manifest

_DEFAULTS = GenerateOptions()


def _expected_lines(opts: GenerateOptions) -> int:
    resolved = opts.resolved()
    extra = resolved.duplicate_fraction + resolved.update_fraction
    return round(resolved.rows * (1 + extra))


def manifest_table(manifest: Manifest) -> Table:
    """One row per file: lines and the defects in it."""
    table = Table(title="generated landing files")
    for col in ("file", "rows", "late", "dups", "updates", "invalid", "no price", "period"):
        table.add_column(col, justify="left" if col in ("file", "period") else "right")
    for f in manifest.files:
        table.add_row(
            f.name,
            f"{f.rows:,}",
            f"{f.late_rows:,}",
            f"{f.duplicate_rows:,}",
            f"{f.update_rows:,}",
            f"{sum(f.invalid.values()):,}",
            f"{f.missing_price:,}",
            f"{f.sale_date_from}..{f.sale_date_to}",
        )
    return table


@app.command("generate")
def generate_command(
    workspace: WorkspaceOpt = None,
    rows: Annotated[int, typer.Option(help="Distinct sales to generate.")] = _DEFAULTS.rows,
    customers: Annotated[
        int | None, typer.Option(help="Customer pool size (default: rows / 50, at least 100).")
    ] = None,
    stores: Annotated[int, typer.Option(help="Number of stores (1-999).")] = _DEFAULTS.stores,
    start: Annotated[
        str | None,
        typer.Option(help="First sale date, YYYY-MM-DD (default: a year before end)."),
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Last sale date, YYYY-MM-DD (default: yesterday).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed + options = same bytes.")] = (
        _DEFAULTS.seed
    ),
    fmt: Annotated[
        str, typer.Option("--format", help="File format: csv, jsonl or parquet.")
    ] = _DEFAULTS.format,
    files: Annotated[
        int, typer.Option(help="Split into N landing files, one period each.")
    ] = _DEFAULTS.files,
    late_fraction: Annotated[
        float, typer.Option(help="Share of sales sent weeks late, in later files.")
    ] = _DEFAULTS.late_fraction,
    update_fraction: Annotated[
        float, typer.Option(help="Share of sales re-sent later with a new status.")
    ] = _DEFAULTS.update_fraction,
    duplicate_fraction: Annotated[
        float, typer.Option(help="Share of sales sent twice (exact duplicate lines).")
    ] = _DEFAULTS.duplicate_fraction,
    invalid_fraction: Annotated[
        float, typer.Option(help="Share with an invalid quantity, store id or date.")
    ] = _DEFAULTS.invalid_fraction,
    missing_price_fraction: Annotated[
        float, typer.Option(help="Share with an empty price (total still present).")
    ] = _DEFAULTS.missing_price_fraction,
    missing_status_fraction: Annotated[
        float, typer.Option(help="Share with an empty status.")
    ] = _DEFAULTS.missing_status_fraction,
    seed_compatible: Annotated[
        bool,
        typer.Option(
            "--seed-compatible", help="Exactly the original 8 columns: no sale_id, no corrections."
        ),
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: the workspace's landing folder).")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace files of an earlier generate run.")
    ] = False,
    chunk_rows: Annotated[
        int, typer.Option(help="Rows drawn and written at a time (bounds memory).")
    ] = _DEFAULTS.chunk_rows,
    json_out: JsonOpt = False,
) -> None:
    """Generate synthetic retail sales landing files with realistic defects and a manifest.

    Vectorised and seeded: the same --seed and options give byte-identical files; memory is
    bounded by --chunk-rows, not --rows. `_manifest.json` next to the files counts every
    injected defect (duplicates, late rows, corrections, invalid values, missing fields).
    sale_ids derive from the seed: a lake that already ingested files of the same seed gets a
    warning. Exit codes: 0 ok; 2 bad option or files already there (see --overwrite).
    """
    with handle_errors():
        if fmt not in ("csv", "jsonl", "parquet"):
            raise ConfigError(f"--format {fmt!r}: choose csv, jsonl or parquet.")
        fmt_checked: FileFormat = fmt  # type: ignore[assignment]
        opts = GenerateOptions(
            rows=rows,
            customers=customers,
            stores=stores,
            start=parse_day(start, "--start"),
            end=parse_day(end, "--end"),
            seed=seed,
            format=fmt_checked,
            files=files,
            late_fraction=late_fraction,
            update_fraction=update_fraction,
            duplicate_fraction=duplicate_fraction,
            invalid_fraction=invalid_fraction,
            missing_price_fraction=missing_price_fraction,
            missing_status_fraction=missing_status_fraction,
            seed_compatible=seed_compatible,
            chunk_rows=chunk_rows,
        )
        target = out
        if target is None:
            # Writing landing files is what makes a workspace: generate may create one (and
            # says where it wrote), unlike the commands that would only read an empty lake.
            settings = settings_from(workspace, require_workspace=False)
            target = Path(settings.landing_path)
            reused = reused_seed(settings, seed) if not seed_compatible else None
            if reused:
                log(
                    "warning",
                    f"this lake already ingested {reused}, generated with seed {seed}: the same "
                    "seed gives the same sale_ids, so these sales would replace the earlier ones "
                    "in silver instead of adding to them. Pass another --seed, or use a new "
                    "workspace (`medallion init -w DIR`).",
                )
        from medallion_lakehouse.generate import generate  # NumPy and pandas: only when used

        began = time.perf_counter()
        with Progress(
            TextColumn("[bold]generate[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err_console,
            disable=OUTPUT.plain or OUTPUT.quiet or not sys.stderr.isatty(),
            transient=True,
        ) as bar:
            task = bar.add_task("rows", total=_expected_lines(opts))
            manifest = generate(
                opts, target, overwrite=overwrite, progress=lambda n: bar.advance(task, n)
            )
        seconds = time.perf_counter() - began
        if json_out:  # the manifest, plus how long this run took (not stored in the file)
            emit_json({**manifest.to_dict(), "elapsed_seconds": round(seconds, 3)})
            return
        show_table(manifest_table(manifest))
        rate = manifest.rows / seconds if seconds > 0 else 0.0
        say(
            f"[green]wrote[/] {len(manifest.files)} file(s), {manifest.rows:,} rows to {target} "
            f"in {seconds:.1f} s ({rate:,.0f} rows/s); manifest: _manifest.json"
        )


def reused_seed(settings: Settings, seed: int) -> str | None:
    """A landing file generated with `seed` that the lake already ingested, if any.

    The generator's manifests say which files a seed made; the ingest ledger says which of
    them reached bronze.
    """
    landing = Path(settings.landing_path)
    if not landing.is_dir() or not Path(settings.table_uri(INGESTED_FILES.name)).exists():
        return None
    with Lake(settings) as lake:
        ingested = set(
            lake.read_arrow(INGESTED_FILES.name, columns=["source_file"]).column(0).to_pylist()
        )
    from medallion_lakehouse.generate import MANIFEST_NAME, Manifest

    for path in sorted(landing.rglob(MANIFEST_NAME)):
        try:
            manifest = Manifest.read(path)
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not one of ours, or damaged: nothing to compare
        if manifest.seed != seed or "sale_id" not in manifest.columns:
            continue
        folder = path.parent.relative_to(landing)
        for f in manifest.files:
            name = (folder / f.name).as_posix()
            if name in ingested:
                return name
    return None


def explore_tables(result: ExploreResult) -> list[Table]:
    """The EDA as Rich tables: overview, columns, store shapes, value counts, totals."""
    overview = Table(title=f"{result.path}", show_header=False)
    overview.add_column("", style="bold")
    overview.add_column("")
    overview.add_row("format", result.format)
    overview.add_row("size", f"{result.size_bytes:,} bytes")
    overview.add_row("rows", f"{result.rows:,}")
    overview.add_row("columns", ", ".join(result.columns))
    overview.add_row("sale dates", f"{result.sale_date_min} .. {result.sale_date_max}")
    overview.add_row("unparseable dates", f"{result.unparseable_dates:,}")

    columns = Table(title="columns")
    for col in ("column", "nulls/empty", "blank", "distinct"):
        columns.add_column(col, justify="left" if col == "column" else "right")
    for p in result.column_profiles:
        columns.add_row(
            p.name,
            f"{p.nulls:,}",
            f"{p.blank:,}",
            "-" if p.distinct is None else f"{p.distinct:,}",
        )

    shapes = Table(title="store_id shapes")
    shapes.add_column("shape")
    shapes.add_column("rows", justify="right")
    for shape, n in result.store_shapes.items():
        shapes.add_row(shape, f"{n:,}")

    values = Table(title="value counts")
    for col in ("column", "value", "rows"):
        values.add_column(col, justify="right" if col == "rows" else "left")
    for p in result.column_profiles:
        for value, n in p.top:
            values.add_row(p.name, repr(value) if value != value.strip() else value, f"{n:,}")

    t = result.totals
    totals = Table(title="total")
    totals.add_column("statistic")
    totals.add_column("value", justify="right")
    totals.add_row("numeric values", f"{t.count:,}")
    totals.add_row("unparseable", f"{t.unparseable:,}")
    totals.add_row("with float noise", f"{t.float_noise:,}")
    stats: list[tuple[str, float | None]] = [("min", t.min), ("mean", t.mean), ("max", t.max)]
    stats.extend(t.quantiles.items())
    for name, stat in stats:
        totals.add_row(name, "-" if stat is None else f"{stat:,.2f}")
    for bucket, n in t.histogram:
        totals.add_row(f"in {bucket}", f"{n:,}")
    return [overview, columns, shapes, values, totals]


@app.command("explore")
def explore_command(
    file: Annotated[Path, typer.Argument(help="A landing file (csv, jsonl or parquet).")],
    json_out: JsonOpt = False,
) -> None:
    """Quick EDA of a landing file: rows, nulls per column, store-id shapes, values, totals.

    Reads the FILE only (no workspace). Exit codes: 0 ok; 2 a file that is missing or cannot
    be read as csv, jsonl or parquet.
    """
    with handle_errors():
        from medallion_lakehouse.bronze.profile import explore_file

        result = explore_file(file)
        if json_out:
            emit_json(result.to_dict())
            return
        for table in explore_tables(result):
            show_table(table)
