"""`medallion rules`: silver's data-quality rules as this workspace applies them."""

from __future__ import annotations

from rich.table import Table

from medallion_lakehouse.cli.app import (
    JsonOpt,
    WorkspaceOpt,
    app,
    emit_json,
    handle_errors,
    plain,
    settings_from,
    show_table,
)
from medallion_lakehouse.silver import reference
from medallion_lakehouse.silver.rules import resolve


@app.command("rules", epilog="Exit codes: 0 ok; 2 invalid settings or not a workspace.")
def rules_cmd(workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Every silver rule: its severity and fail_share, and where each value came from.

    A value comes from the rule's declaration (`default`), a medallion.toml line
    (`[rules.NAME]`), or the MEDALLION_RULES variable (JSON); the quarantine-share gate's
    fail_share defaults to `quarantine_fail_share`. Reads no table and takes no lock.
    """
    with handle_errors():
        settings = settings_from(workspace)
        rules = resolve(settings)
        rows = reference.describe(rules)
        if json_out:
            emit_json(
                {
                    "rules": rows,
                    "reference": {
                        "products": {
                            "source": rules.products_source,
                            "count": len(rules.catalogue),
                        },
                        "stores": {
                            "source": rules.stores_source,
                            "count": None if rules.stores is None else len(rules.stores),
                        },
                    },
                    "columns": settings.columns,
                }
            )
            return
        out = Table(title=plain(f"silver rules of {settings.workspace}"))
        for name in ("rule", "severity", "fail_share", "source"):
            out.add_column(name, no_wrap=name == "rule", overflow="fold")
        for r in rows:
            share = r["fail_share"]
            shown = "-" if share is None else f"{share:g}"
            source = f"severity: {r['severity_source']}; fail_share: {r['fail_share_source']}"
            out.add_row(plain(str(r["rule"])), plain(str(r["severity"])), shown, plain(source))
        show_table(out)
