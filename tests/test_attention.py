"""A file bronze could not read and a batch the gate holds show in `status` and the report."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from medallion_lakehouse.cli.main import app

HEADER = "sale_id,sale_date,store_id,customer_id,product,quantity,price,total,status\n"


def test_failed_files_and_held_batches_are_shown_until_dealt_with(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    landing = ws / "data" / "landing"
    landing.mkdir(parents=True)
    (landing / "broken.csv").write_bytes(b"sale_id,qty\n\x00\x01\x02 binary")
    good = "".join(f"S{i},2025-01-0{i},NW-1,C{i},Laptop,1,10,10,completed\n" for i in range(1, 4))
    (landing / "mostly_bad.csv").write_text(
        HEADER + good + "B1,2025-01-01,none,C9,Laptop,0,1,1,x\n" * 3
    )
    cli = CliRunner()
    run = cli.invoke(app, ["run", "-w", str(ws), "--steps", "bronze,silver,gold"])
    assert run.exit_code == 1, run.output  # the failed file's exit code comes first

    status = json.loads(cli.invoke(app, ["status", "-w", str(ws), "--json"]).stdout)
    failed = status["attention"]["failed_files"]
    assert [(f["source_file"], "binary" in f["reason"]) for f in failed] == [("broken.csv", True)]
    assert [b["source_file"] for b in status["attention"]["held_batches"]] == ["mostly_bad.csv"]
    text = cli.invoke(app, ["status", "-w", str(ws)]).output
    assert "failed file broken.csv" in text and "held batch" in text

    report = cli.invoke(app, ["report", "-w", str(ws), "--json"])
    assert report.exit_code == 0, report.output
    html = max((ws / "data" / "reports").glob("*.html"), key=lambda p: p.stat().st_mtime)
    page = html.read_text()
    assert "Needs attention" in page and "broken.csv" in page and "mostly_bad.csv" in page

    (landing / "broken.csv").unlink()  # dealt with: the next bronze step has nothing failed
    batch = status["attention"]["held_batches"][0]["batch_id"]
    assert cli.invoke(app, ["held", "-w", str(ws), "--drop", batch]).exit_code == 0
    assert cli.invoke(app, ["run", "-w", str(ws), "--steps", "bronze,silver"]).exit_code == 0
    after = json.loads(cli.invoke(app, ["status", "-w", str(ws), "--json"]).stdout)
    assert after["attention"] == {"failed_files": [], "held_batches": []}
