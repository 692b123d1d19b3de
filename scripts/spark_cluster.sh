#!/usr/bin/env bash
# A standalone Spark cluster on loopback (one master, one worker) from the pyspark install.
#
#   scripts/spark_cluster.sh start|stop|status
#   medallion run --engine spark --spark-master spark://127.0.0.1:7077
#
# The pip wheel of pyspark ships bin/spark-class but not sbin/start-master.sh, so the daemons
# are started with spark-class directly, in the background, with pid files in $SPARK_CLUSTER_DIR.
# Settings (environment): SPARK_MASTER_PORT (7077), SPARK_MASTER_WEBUI_PORT (8080),
# SPARK_WORKER_WEBUI_PORT (8081), SPARK_WORKER_CORES (1), SPARK_WORKER_MEMORY (1g),
# SPARK_CLUSTER_DIR (${TMPDIR:-/tmp}/medallion-spark-cluster), PYTHON (the project's venv python).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-$here/../.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON="$(command -v python3)"
PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")"
SPARK_HOME="${SPARK_HOME:-$("$PYTHON" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')}"
STATE="${SPARK_CLUSTER_DIR:-${TMPDIR:-/tmp}/medallion-spark-cluster}"
HOST=127.0.0.1
MASTER_PORT="${SPARK_MASTER_PORT:-7077}"
MASTER_WEBUI_PORT="${SPARK_MASTER_WEBUI_PORT:-8080}"
WORKER_WEBUI_PORT="${SPARK_WORKER_WEBUI_PORT:-8081}"
WORKER_CORES="${SPARK_WORKER_CORES:-1}"
WORKER_MEMORY="${SPARK_WORKER_MEMORY:-1g}"
MASTER_URL="spark://$HOST:$MASTER_PORT"
WAIT_SECONDS="${SPARK_CLUSTER_WAIT:-90}"

# Executors must run the driver's Python (same venv, same libraries); logs stay on loopback.
export SPARK_HOME SPARK_LOCAL_IP="$HOST" PYSPARK_PYTHON="$PYTHON"
export SPARK_LOG_DIR="$STATE/logs" SPARK_WORKER_DIR="$STATE/work"

running() {  # running NAME -> 0 if its pid file names a live process
    local pid_file="$STATE/$1.pid"
    [[ -f "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null
}

alive_workers() {  # number of workers the master reports ALIVE (0 if it does not answer)
    "$PYTHON" - "$HOST" "$MASTER_WEBUI_PORT" <<'EOF' 2>/dev/null || echo 0
import json, sys, urllib.request
url = f"http://{sys.argv[1]}:{sys.argv[2]}/json/"
print(json.load(urllib.request.urlopen(url, timeout=2)).get("aliveworkers", 0))
EOF
}

port_open() {
    "$PYTHON" -c 'import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1)' \
        "$HOST" "$1" 2>/dev/null
}

wait_for() {  # wait_for DESCRIPTION COMMAND...
    local what="$1"; shift
    for _ in $(seq "$WAIT_SECONDS"); do
        if "$@"; then return 0; fi
        sleep 1
    done
    echo "spark_cluster: timed out after ${WAIT_SECONDS}s waiting for $what; logs in $STATE" >&2
    tail -n 20 "$STATE"/*.log >&2 || true
    return 1
}

has_worker() { [[ "$(alive_workers)" -ge 1 ]]; }

start() {
    command -v java >/dev/null || [[ -n "${JAVA_HOME:-}" ]] || {
        echo "spark_cluster: Java 17 or 21 is needed (no java on PATH, no JAVA_HOME)" >&2
        exit 2
    }
    mkdir -p "$STATE" "$SPARK_LOG_DIR" "$SPARK_WORKER_DIR"
    if running master; then
        echo "master already running (pid $(cat "$STATE/master.pid"))"
    else
        if port_open "$MASTER_PORT"; then
            echo "spark_cluster: port $MASTER_PORT is taken by another process" >&2
            exit 1
        fi
        nohup "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.master.Master \
            --host "$HOST" --port "$MASTER_PORT" --webui-port "$MASTER_WEBUI_PORT" \
            >"$STATE/master.log" 2>&1 </dev/null &
        echo $! >"$STATE/master.pid"
        wait_for "the master on $MASTER_URL" port_open "$MASTER_PORT"
    fi
    if running worker; then
        echo "worker already running (pid $(cat "$STATE/worker.pid"))"
    else
        nohup "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.worker.Worker "$MASTER_URL" \
            --host "$HOST" --cores "$WORKER_CORES" --memory "$WORKER_MEMORY" \
            --webui-port "$WORKER_WEBUI_PORT" --work-dir "$SPARK_WORKER_DIR" \
            >"$STATE/worker.log" 2>&1 </dev/null &
        echo $! >"$STATE/worker.pid"
    fi
    wait_for "the worker to register" has_worker
    echo "Spark standalone cluster up: $MASTER_URL (web UI http://$HOST:$MASTER_WEBUI_PORT)"
}

stop_one() {
    local name="$1" pid_file="$STATE/$1.pid"
    if running "$name"; then
        local pid
        pid="$(cat "$pid_file")"
        kill "$pid"
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
        echo "$name stopped"
    fi
    rm -f "$pid_file"
}

stop() {
    stop_one worker
    stop_one master
}

status() {
    local rc=0
    for name in master worker; do
        if running "$name"; then
            echo "$name: running (pid $(cat "$STATE/$name.pid"))"
        else
            echo "$name: stopped"; rc=3
        fi
    done
    echo "master URL: $MASTER_URL, alive workers: $(alive_workers)"
    return $rc
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 64 ;;
esac
