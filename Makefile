# medallion-lakehouse: every target creates and uses .venv by itself.
#   make demo       set up, generate a sample, run bronze -> silver -> gold -> ml -> report
#   make test       set up everything the tests need (Java check, Airflow venv, Chromium) and run all tests
#   make test-fast  the fast tier only (no Spark, Airflow, browser, notebooks, crash tests)

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MEDALLION := $(VENV)/bin/medallion
STAMP := $(VENV)/.installed
# Delta Lake's Spark connector and hadoop-aws for --engine spark (jvm/pom.xml, from Maven Central).
SPARK_JARS := build/spark-jars
# Parallel workers for the test suite (pytest-xdist); 2 matches the CI machine's cores.
TEST_WORKERS ?= 2
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup demo test test-fast lint format bench bench-curve docs clean setup-airflow setup-browser check-java spark-jars

help:  ## show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[spark,notebooks,dev]'
	@# pip byte-compiles what it installs, but not an editable install's src; where
	@# PYTHONDONTWRITEBYTECODE is set nothing is ever cached, and every command would compile
	@# the package again (0.4 s of a 1.6 s rerun with nothing new).
	$(PY) -m compileall -q src
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the package with the spark, notebooks and dev extras

demo: setup  ## generate a sample and run the whole pipeline on DuckDB (workspace: ./data)
	$(MEDALLION) demo

check-java:
	@command -v java >/dev/null 2>&1 || { echo "Java 17 is needed for the Spark tests: apt-get install -y openjdk-17-jre-headless" >&2; exit 1; }

$(SPARK_JARS)/.complete: jvm/pom.xml
	@command -v mvn >/dev/null 2>&1 || { echo "Maven is needed to fetch the Spark jars: apt-get install -y maven" >&2; exit 1; }
	rm -rf $(SPARK_JARS) $(SPARK_JARS).partial
	mvn -q -B -f jvm/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
		-DoutputDirectory=$(abspath $(SPARK_JARS)).partial
	mv $(SPARK_JARS).partial $(SPARK_JARS)
	@touch $@

spark-jars: $(SPARK_JARS)/.complete  ## fetch delta-spark and hadoop-aws with Maven into build/spark-jars (for --engine spark)

setup-airflow:  ## create .venv-airflow with Apache Airflow (for the DAG tests)
	bash scripts/setup_airflow.sh

setup-browser:  ## install headless Chromium (for the report browser test)
	bash scripts/setup_browser.sh

test: setup check-java spark-jars setup-airflow setup-browser  ## set up and run every test (slow tiers included)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

test-fast: setup  ## run the fast tier only (skips tests marked slow)
	$(PY) -m pytest -n $(TEST_WORKERS) -m "not slow" $(PYTEST_ARGS)

lint: setup  ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check src tests bench scripts orchestration
	$(VENV)/bin/ruff format --check src tests bench scripts orchestration
	$(VENV)/bin/mypy

format: setup  ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix src tests bench scripts orchestration
	$(VENV)/bin/ruff format src tests bench scripts orchestration

docs: setup  ## regenerate docs/contracts.md and docs/cli.md from the code
	$(PY) scripts/gen_docs.py

bench: setup spark-jars  ## benchmarks: generator, bronze, silver, end to end (1M and 10M rows; takes a while)
	$(PY) bench/bench_generate.py
	$(PY) bench/bench_bronze.py
	$(PY) bench/bench_silver.py
	$(PY) bench/bench_e2e.py --rows 1000000,10000000

bench-curve: setup  ## growth curve: the pipeline at 1M, 10M, 30M, 100M rows (seconds, peak RSS, spill; ~1 h, ~40 GB disk)
	$(PY) bench/bench_e2e.py --rows 1000000,10000000,30000000,100000000 --shapes original --variants pipeline

clean:  ## remove the virtualenvs, caches and the default workspace
	rm -rf $(VENV) .venv-airflow .pytest_cache .mypy_cache .ruff_cache data
