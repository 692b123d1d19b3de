#!/usr/bin/env bash
# Create .venv-airflow with Apache Airflow 3.3.2, in its own virtualenv (idempotent).
#
# Airflow lives apart from the project's .venv on purpose: the DAG must parse without the
# project installed, and its tasks reach the project through $MEDALLION_BIN (the project venv's
# `medallion`), exactly as in a real deployment where Airflow workers call a packaged CLI.
#
# Usage: scripts/setup_airflow.sh            (from anywhere; the venv goes in the repo root)
#        AIRFLOW_VENV=/path PYTHON=python3.11 scripts/setup_airflow.sh
set -euo pipefail

AIRFLOW_VERSION="3.3.2"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${AIRFLOW_VENV:-$ROOT/.venv-airflow}"
PYTHON="${PYTHON:-python3}"

installed_version() {
    "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("apache-airflow"))' \
        2>/dev/null || true
}

if [[ -x "$VENV/bin/airflow" && "$(installed_version)" == "$AIRFLOW_VERSION" ]]; then
    echo "setup_airflow: $VENV already has apache-airflow $AIRFLOW_VERSION"
    exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "setup_airflow: creating $VENV with $("$PYTHON" --version)"
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# No constraint file needed for 3.3.2 on Python 3.11 (measured: resolves cleanly, ~30 s).
"$VENV/bin/python" -m pip install --quiet "apache-airflow==$AIRFLOW_VERSION"
"$VENV/bin/python" -m pip check
echo "setup_airflow: installed apache-airflow $(installed_version) into $VENV"
