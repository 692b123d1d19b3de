"""Write notebooks/01..04 with nbformat, outputs cleared, so they stay reviewable in git.

    python scripts/make_notebooks.py            # rewrite the notebooks
    python scripts/make_notebooks.py --check    # exit 1 if a committed notebook differs

The notebooks walk through the layers by calling the package: no pipeline logic lives in a cell.
Each one reads the workspace from $MEDALLION_WORKSPACE, or uses ./workspace next to the notebooks
(notebook 01 creates it), and runs top to bottom on a fresh workspace.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

SETUP = """\
import os
from pathlib import Path

import pandas as pd
from IPython.display import SVG, Markdown, display

from medallion_lakehouse.config import load_settings
from medallion_lakehouse.lake import Lake

# The workspace: $MEDALLION_WORKSPACE, or ./workspace next to the notebooks (created by 01).
WORKSPACE = Path(os.environ.get("MEDALLION_WORKSPACE", "workspace")).resolve()
settings = load_settings(WORKSPACE)
lake = Lake(settings)
print("workspace:", WORKSPACE)"""


def show_table() -> str:
    return '''\
def show(name: str, n: int = 5, version: int | None = None) -> pd.DataFrame:
    """The first rows of a lake table (through the active engine), for display."""
    return lake.engine.to_arrow(lake.read(name, version=version).limit(n)).to_pandas()'''


def nb01() -> list[nbformat.NotebookNode]:
    return [
        new_markdown_cell(
            "# 01 · Generate and explore the raw data\n\n"
            "A lakehouse starts with data nobody cleaned. The generator writes retail sales the "
            "way real sources send them: store ids in half a dozen shapes (`NW-7`, `NW007`, "
            "`007-NW`, ...), missing prices and statuses, totals with float noise, duplicate "
            "records, status updates that arrive later (pending → completed → returned), a few "
            "invalid rows, and *late* sales that belong to days already delivered.\n\n"
            "It is vectorised and seeded: the same options give byte-identical files. Here we "
            "keep it small (50,000 sales in 3 files) so the notebooks run in a minute."
        ),
        new_code_cell(
            SETUP.replace(
                "settings = ", "WORKSPACE.mkdir(parents=True, exist_ok=True)\nsettings = "
            )
        ),
        new_code_cell(
            "from medallion_lakehouse.generate import GenerateOptions, generate\n\n"
            "# overwrite=True: rerunning the notebook regenerates the same files.\n"
            "options = GenerateOptions(rows=50_000, files=3, seed=42)\n"
            "manifest = generate(options, settings.landing_path, overwrite=True)\n"
            "pd.DataFrame([vars(f) for f in manifest.files])"
        ),
        new_markdown_cell(
            "## A first look\n\n"
            "The landing folder is never modified: bronze reads it as is. Every column is a "
            "string here, exactly as the pipeline will see it."
        ),
        new_code_cell(
            "from medallion_lakehouse.bronze.ingest import discover\n\n"
            "files = discover(Path(settings.landing_path))\n"
            "print([f.name for f in files])\n"
            "pd.read_csv(files[0], dtype=str, keep_default_na=False, nrows=8)"
        ),
        new_markdown_cell(
            "## Profile of a file\n\n"
            "`explore_file` is the function behind `medallion explore` (and the report's "
            "exploration panel): missing values per column, the shapes store ids arrive in, "
            "and the distribution of totals. It streams the file, so it also works on large ones."
        ),
        new_code_cell(
            "from medallion_lakehouse.bronze.profile import explore_file\n\n"
            "profile = explore_file(files[-1])\n"
            'print(f"{profile.rows:,} rows, sale dates {profile.sale_date_min} .. '
            '{profile.sale_date_max}, {profile.unparseable_dates} unparseable")\n'
            "pd.DataFrame(\n"
            "    [(c.name, c.nulls, c.blank, c.distinct) for c in profile.column_profiles],\n"
            '    columns=["column", "empty", "blank", "distinct"],\n'
            ")"
        ),
        new_code_cell('pd.Series(profile.store_shapes, name="store ids").to_frame()'),
        new_code_cell(
            'pd.DataFrame(profile.totals.histogram, columns=["total", "sales"]).set_index("total")'
            '.plot.bar(legend=False, title="totals");'
        ),
        new_markdown_cell(
            "Every one of these defects has a rule in silver (notebook 03): standardise what "
            "can be standardised, repair what can be repaired *and flag it*, quarantine the "
            "rest with a reason. Next: notebook 02 loads these files into bronze."
        ),
    ]


def nb02() -> list[nbformat.NotebookNode]:
    return [
        new_markdown_cell(
            "# 02 · Bronze: land the raw records, exactly as received\n\n"
            "Bronze is an append-only Delta table, `bronze/sales`: one row per source record, "
            "every source column kept as a string (nothing parsed, nothing lost), plus lineage: "
            "source file, its sha256, line number, batch id and ingestion time. Lines that cannot "
            "even be split into fields go to `bronze/sales_rejects`.\n\n"
            "Ingestion is idempotent: a file whose sha256 is already recorded in "
            "`_meta/ingested_files` is skipped."
        ),
        new_code_cell(SETUP),
        new_code_cell(show_table()),
        new_code_cell(
            "from medallion_lakehouse.bronze.ingest import ingest\n"
            "from medallion_lakehouse.pipeline.context import new_run_id\n\n"
            "result = ingest(lake, run_id=new_run_id())\n"
            'print(f"{result.ingested} ingested, {result.skipped} skipped, {result.rows:,} rows, '
            '{result.rejects} rejected lines")\n'
            "pd.DataFrame([vars(f) for f in result.files])[\n"
            '    ["source_file", "status", "rows", "rejects", "parser", "batch_id"]\n'
            "]"
        ),
        new_code_cell('show("bronze/sales")'),
        new_markdown_cell(
            "## Idempotent by content\n\n"
            "Running the ingest again finds nothing new: every file's sha256 is already in "
            "`_meta/ingested_files`. (A file changed under the same name would be a new batch.)"
        ),
        new_code_cell(
            "again = ingest(lake, run_id=new_run_id())\n"
            'print(f"{again.ingested} ingested, {again.skipped} skipped")\n'
            "assert again.ingested == 0"
        ),
        new_markdown_cell(
            "## Delta Lake: commits, history, time travel\n\n"
            "Each file is one commit, tagged with the run and step that wrote it."
        ),
        new_code_cell(
            'pd.DataFrame(lake.history("bronze/sales"))[\n'
            '    ["version", "operation", "run_id", "step"]\n'
            "]"
        ),
        new_code_cell(
            'first = lake.engine.count(lake.read("bronze/sales", version=0))\n'
            'now = lake.engine.count(lake.read("bronze/sales"))\n'
            "print(f\"version 0: {first:,} rows; current version {lake.version('bronze/sales')}: "
            '{now:,} rows")'
        ),
        new_markdown_cell(
            "Late sales are already in here, mixed with the rest: bronze does not judge. "
            "Notebook 03 builds silver and gold from these records."
        ),
    ]


def nb03() -> list[nbformat.NotebookNode]:
    return [
        new_markdown_cell(
            "# 03 · Silver and gold\n\n"
            "**Silver** (`silver/sales`) holds one clean, typed row per `sale_id`: store ids "
            "become `NW-###`, statuses and products are case-folded, dates parsed; a missing "
            "price is imputed from total / quantity and a wrong total recomputed, each with a "
            "flag column. When a sale arrives several times (status updates, re-sends), the "
            "latest record wins. Rows that break a `drop` rule go to `silver/sales_quarantine` "
            "with the rule and a reason, and every rule's counts land in `_meta/quality`.\n\n"
            "**Gold** aggregates silver for analysis: `gold/daily_sales` (one row per day) and "
            "`gold/product_store_daily` (per day, product and store).\n\n"
            "Both are incremental: they rebuild only the `sale_month` partitions that new "
            "batches touch, in one commit each."
        ),
        new_code_cell(SETUP),
        new_code_cell(show_table()),
        new_code_cell(
            "from medallion_lakehouse.pipeline.runner import run_pipeline\n\n"
            "# The same code path as `medallion run --steps silver,gold`, with a row per step in\n"
            "# _meta/runs. (bronze is included too: it skips files already ingested in 02.)\n"
            'run = run_pipeline(settings, steps=["bronze", "silver", "gold"])\n'
            "assert run.ok, run.error\n"
            'pd.DataFrame(run.as_dict()["steps"])[\n'
            '    ["step", "status", "rows_in", "rows_out", "rows_quarantined", "seconds"]\n'
            "]"
        ),
        new_code_cell('show("silver/sales")'),
        new_markdown_cell(
            "## Nothing is deleted silently\n\n"
            "Every bronze record ends up in exactly one place: the current silver row of its "
            "sale, a superseded older version of it, or the quarantine. The audit proves it "
            "(`medallion audit` exits 1 if not)."
        ),
        new_code_cell(
            "from medallion_lakehouse.silver.audit import audit\n\n"
            "report = audit(lake)\n"
            "assert report.ok, report.violations\n"
            'pd.Series(report.as_dict()).to_frame("audit")'
        ),
        new_code_cell(
            "from medallion_lakehouse.report import data as report_data\n\n"
            "report_data.quarantine_reasons(lake)"
        ),
        new_code_cell(
            "quality = report_data.quality(lake)\n"
            'quality[["table", "rule", "severity", "rows_checked", "rows_failed"]]'
        ),
        new_markdown_cell(
            "## Late-arriving data\n\n"
            "A sale is *late* when its date is older than the newest date silver already held "
            "when its batch arrived. Late rows land in old months, which is why silver and gold "
            "rebuild affected partitions rather than appending."
        ),
        new_code_cell('report_data.late_arrivals(lake)[["source_file", "rows", "late"]]'),
        new_markdown_cell("## Gold"),
        new_code_cell('show("gold/daily_sales")'),
        new_code_cell(
            "from medallion_lakehouse.report import plots\n\n"
            "display(SVG(plots.daily_revenue_plot(report_data.daily_revenue(lake))))\n"
            "display(SVG(plots.product_plot(report_data.revenue_by_product(lake))))"
        ),
        new_markdown_cell(
            "Run the cell with `run_pipeline` again: silver finds no new batch and gold is "
            "already up to date with silver, so nothing is rewritten (idempotent re-runs)."
        ),
    ]


def nb04() -> list[nbformat.NotebookNode]:
    return [
        new_markdown_cell(
            "# 04 · Table maintenance, the churn model, and the report\n\n"
            "Delta tables accumulate small files and old versions. Time travel reads any "
            "version still referenced; `medallion optimize` compacts small files and vacuums "
            "files no version needs any more.\n\n"
            "The churn model predicts which customers will make **no completed purchase in the "
            "next 90 days**. It is evaluated *out of time*: features use only data up to a "
            "cutoff T1, labels come from (T1, T1 + 90 days], and the test set is a later "
            "cutoff T2. It is compared with a baseline that ranks customers by recency alone, "
            "so a good-looking AUC has to beat something simple."
        ),
        new_code_cell(SETUP),
        new_code_cell(
            "from medallion_lakehouse.status import lake_status\n\n"
            "pd.DataFrame([vars(s) for s in lake_status(lake)])[\n"
            '    ["name", "exists", "version", "rows", "files", "last_operation"]\n'
            "]"
        ),
        new_markdown_cell(
            "## Optimize\n\n"
            "Every incremental run adds small files. Compaction rewrites them into fewer, larger "
            "ones as a new table version with the same content; vacuum then deletes files that "
            "no version within the retention window (7 days by default) references. This is "
            "what `medallion optimize --apply` runs for every table."
        ),
        new_code_cell(
            "from medallion_lakehouse.pipeline.context import new_run_id\n"
            "from medallion_lakehouse.storage.delta import CommitInfo\n"
            "from medallion_lakehouse.storage.maintenance import optimize_table\n\n"
            'before = lake.version("silver/sales")\n'
            'commit = CommitInfo(run_id=new_run_id(), step="optimize")\n'
            "rows = [\n"
            "    optimize_table(\n"
            "        name, lake.uri(name), apply=True, retention_hours=168, commit=commit,\n"
            "        storage_options=lake.storage_options,\n"
            "    ).as_dict()\n"
            '    for name in ("bronze/sales", "silver/sales", "gold/product_store_daily")\n'
            "]\n"
            'pd.DataFrame(rows)[["table", "version", "files", "small_files", "compacted"]]'
        ),
        new_code_cell(
            "# Same rows before and after compaction, and the old version is still readable.\n"
            'old = lake.engine.count(lake.read("silver/sales", version=before))\n'
            'new = lake.engine.count(lake.read("silver/sales"))\n'
            'after = lake.version("silver/sales")\n'
            'print(f"silver/sales v{before}: {old:,} rows; v{after}: {new:,} rows")\n'
            "assert old == new"
        ),
        new_markdown_cell(
            "## The churn model\n\n"
            "`run_pipeline` runs the `ml` step (customer features → out-of-time training → "
            "scores) and then writes the HTML report."
        ),
        new_code_cell(
            "from medallion_lakehouse.pipeline.runner import run_pipeline\n\n"
            'run = run_pipeline(settings, steps=["ml", "report"])\n'
            "assert run.ok, run.error\n"
            'pd.DataFrame(run.as_dict()["steps"])[["step", "status", "seconds", "message"]]'
        ),
        new_code_cell(
            "from medallion_lakehouse.report import data as report_data\n\n"
            "report_data.model_metrics(lake)[\n"
            '    ["model", "train_cutoff", "test_cutoff", "n_test", "test_churn_rate", '
            '"roc_auc", "pr_auc"]\n'
            "]"
        ),
        new_code_cell(
            "from medallion_lakehouse.report import plots\n\n"
            "curves = report_data.churn_curves(lake)\n"
            'display(SVG(plots.curve_plot(curves, "roc")))\n'
            'display(SVG(plots.curve_plot(curves, "pr")))'
        ),
        new_markdown_cell(
            "The model card (written next to the model in `data/models/churn-<run>/`) records "
            "the data window, cutoffs, features, metrics and library versions."
        ),
        new_code_cell(
            "model_dir = Path(settings.models_path) / curves.source\n"
            'display(Markdown((model_dir / "card.md").read_text()))'
        ),
        new_code_cell(
            "import ibis\n\n"
            "# The customers most likely to churn, highest probability first.\n"
            'scores = lake.read("gold/churn_scores")\n'
            'top = scores.order_by(ibis.desc("churn_probability")).limit(10)\n'
            "lake.engine.to_arrow(top).to_pandas()"
        ),
        new_markdown_cell(
            "## The report\n\n"
            "One self-contained HTML file (plots inline as SVG, no server, works offline). Open "
            "it in a browser; `medallion report` rewrites it any time."
        ),
        new_code_cell(
            'report_path = Path(settings.reports_path) / "report.html"\n'
            'print(report_path, f"{report_path.stat().st_size / 1024:,.0f} KiB")'
        ),
    ]


BUILDERS = {
    "01_generate_and_explore.ipynb": nb01,
    "02_bronze.ipynb": nb02,
    "03_silver_gold.ipynb": nb03,
    "04_optimize_and_ml.ipynb": nb04,
}


def build(name: str) -> str:
    notebook = new_notebook(cells=BUILDERS[name]())
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    notebook.metadata["language_info"] = {"name": "python"}
    # Stable cell ids: regenerating gives the same file.
    for i, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{i:02d}"
    nbformat.validate(notebook)
    return nbformat.writes(notebook) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Fail if a notebook is stale.")
    args = parser.parse_args(argv)
    stale = []
    for name in BUILDERS:
        path = NOTEBOOKS / name
        text = build(name)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            NOTEBOOKS.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"stale: {', '.join(stale)}; run python scripts/make_notebooks.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
