"""Data quality, one system: checks declared on table contracts, row rules, their outcomes.

`checks` holds the declarations (table checks that count breaking rows, row rules with a
severity); `outcomes` evaluates them on an engine and records every outcome in `_meta/quality`.
"""
