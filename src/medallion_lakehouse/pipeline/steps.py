"""The step registry: name -> `run(lake, ctx) -> StepResult`, in pipeline order.

Steps of optional or not-yet-installed parts (ml, report) are imported when they run; a missing
module makes the step `skipped` with a message rather than failing the run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence

from medallion_lakehouse.bronze.contract import BRONZE_REJECTS, BRONZE_SALES
from medallion_lakehouse.config import require_landing
from medallion_lakehouse.errors import ConfigError
from medallion_lakehouse.lake import Lake
from medallion_lakehouse.meta import INGESTED_FILES, SCHEMA_CHANGES
from medallion_lakehouse.pipeline.context import StepContext, StepResult

StepFn = Callable[[Lake, StepContext], StepResult]

STEP_ORDER: tuple[str, ...] = ("bronze", "silver", "gold", "ml", "report")


def bronze_step(lake: Lake, ctx: StepContext) -> StepResult:
    """Ingest new landing files; a file that cannot be read is reported, the run goes on."""
    from medallion_lakehouse.bronze.ingest import discover, ingest
    from medallion_lakehouse.bronze.readers import ReaderOptions

    tables = (BRONZE_SALES.name, BRONZE_REJECTS.name, INGESTED_FILES.name, SCHEMA_CHANGES.name)
    before = {t: lake.version(t) for t in tables}
    landing = require_landing(lake.settings)  # a missing folder is an error, not "no new files"
    options = ReaderOptions.from_settings(lake.settings)
    total = sum(p.stat().st_size for p in discover(landing, options=options)) or None
    done = 0

    def on_bytes(n: int) -> None:
        nonlocal done
        done += n
        ctx.report(done, total, "hashing and reading landing files")

    outcome = ingest(
        lake,
        run_id=ctx.run_id,
        landing=landing,
        on_bytes=on_bytes,
        options=options,
        verify=lake.settings.landing_verify,
    )
    result = StepResult(
        step="bronze",
        rows_in=outcome.rows + outcome.rejects,
        rows_out=outcome.rows,
        rows_quarantined=outcome.rejects,
        metrics={
            "files_ingested": outcome.ingested,
            "files_skipped": outcome.skipped,
            "files_failed": outcome.failed,
            "files_waiting": outcome.waiting,
            "bytes": outcome.bytes,
            "repairs": outcome.repairs,
            "schema_changes": outcome.schema_changes,
            "batch_ids": outcome.batch_ids,
            "files": [vars(f) | {"seconds": round(f.seconds, 3)} for f in outcome.files],
        },
    )
    for table in tables:
        after = lake.version(table)
        if after != before[table]:
            result.tables[table] = after
    failed = [f for f in outcome.files if f.status == "failed"]
    if failed:
        # Not a step failure: later steps still process the good files, the run exits 1.
        result.metrics["errors"] = [f"{f.source_file}: {f.reason}" for f in failed]
        result.message = f"{len(failed)} file(s) failed: " + "; ".join(result.metrics["errors"])
    else:
        notes = []
        if not outcome.ingested:
            result.status = "skipped"  # nothing was ingested: never "ok" about nothing
            notes.append(
                f"no new files in {landing} ({outcome.skipped} already ingested)"
                if outcome.skipped or outcome.waiting
                else f"no landing files in {landing}: copy files there or run `medallion generate`"
            )
        if outcome.waiting:
            notes.append(f"{outcome.waiting} file(s) still being written, left for a later run")
        result.message = "; ".join(notes) or None
    said = [*outcome.repairs, *(f"schema change {c}" for c in outcome.schema_changes)]
    if said:
        result.message = "; ".join([*said, *([result.message] if result.message else [])])
    return result


def lazy_step(name: str, module: str, attr: str = "run") -> StepFn:
    """A step imported on first use; skipped with a message when its module is not installed."""

    def run(lake: Lake, ctx: StepContext) -> StepResult:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise  # a dependency of the step is missing: that is a real failure
            return StepResult(
                step=name, status="skipped", message=f"{module} is not installed in this build"
            )
        fn: StepFn = getattr(mod, attr)
        return fn(lake, ctx)

    return run


REGISTRY: dict[str, StepFn] = {
    "bronze": bronze_step,
    "silver": lazy_step("silver", "medallion_lakehouse.silver.step"),
    "gold": lazy_step("gold", "medallion_lakehouse.gold.step"),
    "ml": lazy_step("ml", "medallion_lakehouse.ml.step"),
    "report": lazy_step("report", "medallion_lakehouse.report.step"),
}


def parse_steps(spec: str | Sequence[str] | None) -> list[str]:
    """`bronze,silver` -> steps in pipeline order; unknown names are an error."""
    if spec is None:
        return list(STEP_ORDER)
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    wanted = {s.strip().lower() for s in items if s.strip()}
    unknown = sorted(wanted - set(REGISTRY))
    if unknown or not wanted:
        raise ConfigError(
            f"Unknown step(s) {', '.join(unknown) or '(none given)'}: choose from "
            f"{', '.join(STEP_ORDER)} (comma-separated)."
        )
    return [s for s in STEP_ORDER if s in wanted]


def resolve(
    names: Sequence[str], registry: Mapping[str, StepFn] | None = None
) -> list[tuple[str, StepFn]]:
    reg = registry or REGISTRY
    return [(n, reg[n]) for n in names]
