"""Starting Spark for `--engine spark`: Java, the master, the Delta Lake and S3 jars, the session.

One SparkSession per process (starting one costs seconds): sessions are cached by master and
configuration, `SparkEngine.close()` leaves the session running, `stop_spark()` ends it.

The JVM parts pyspark does not ship, Delta Lake's Spark connector and hadoop-aws, come from Maven
Central: `make spark-jars` copies them into build/spark-jars/ (jvm/pom.xml), which the session puts
on the driver's and executors' class path when it is there (or wherever MEDALLION_SPARK_JARS
points); otherwise Spark resolves the same coordinates itself (`spark.jars.packages`), as it does
for a user on a connected laptop.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medallion_lakehouse.errors import EngineUnavailableError, MissingDependencyError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# Keep equal to jvm/pom.xml (tests/test_spark_engine.py checks): Delta 4.0.x is built for Spark
# 4.0.x, and hadoop-aws must be the release of the Hadoop client pyspark bundles.
DELTA_VERSION = "4.0.1"
HADOOP_VERSION = "3.4.1"
PACKAGES = (
    f"io.delta:delta-spark_2.13:{DELTA_VERSION}",
    f"org.apache.hadoop:hadoop-aws:{HADOOP_VERSION}",
)
JARS_ENV = "MEDALLION_SPARK_JARS"
# build/spark-jars of a source checkout (an editable install): src/medallion_lakehouse/engines/.
_CHECKOUT_JARS = Path(__file__).resolve().parents[3] / "build" / "spark-jars"
MASTER_PROBE_SECONDS = 3.0
# JIT-compile huge generated methods too (see default_conf).
HUGE_METHODS_JIT = "-XX:-DontCompileHugeMethods"
INSTALL_HINT = "pip install 'medallion-lakehouse[spark]'"

_SESSIONS: dict[tuple[str, tuple[tuple[str, str], ...]], SparkSession] = {}


def import_pyspark() -> Any:
    try:
        import pyspark
        import pyspark.sql
    except ImportError as exc:
        raise MissingDependencyError(
            f"--engine spark needs PySpark, which is not installed: {INSTALL_HINT}"
        ) from exc
    return pyspark


def find_java() -> str:
    """Path of the `java` Spark will launch; raises EngineUnavailableError if there is none."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
        raise EngineUnavailableError(
            f"JAVA_HOME is {java_home!r} but {candidate} is not an executable: point JAVA_HOME "
            "at a Java 17 or 21 installation (or unset it to use `java` from PATH)."
        )
    found = shutil.which("java")
    if found is None:
        raise EngineUnavailableError(
            "--engine spark needs Java 17 or 21 and none was found (no JAVA_HOME, no `java` on "
            "PATH): install a JDK (e.g. `apt-get install openjdk-17-jre-headless`) or set "
            "JAVA_HOME, or use --engine duckdb."
        )
    return found


def master_endpoints(master: str) -> list[tuple[str, int]]:
    """(host, port) pairs of a standalone master URL; empty for local[...], yarn, k8s, ..."""
    if not master.startswith("spark://"):
        return []
    endpoints = []
    for part in master[len("spark://") :].split(","):
        host, _, port = part.rstrip("/").rpartition(":")
        endpoints.append((host or part, int(port) if port.isdigit() else 7077))
    return endpoints


def check_master(master: str, timeout: float = MASTER_PROBE_SECONDS) -> None:
    """Fail fast when a standalone master does not answer, instead of Spark retrying for minutes."""
    endpoints = master_endpoints(master)
    errors = []
    for host, port in endpoints:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return
        except OSError as exc:
            errors.append(f"{host}:{port} ({exc.strerror or exc})")
    if errors:
        raise EngineUnavailableError(
            f"Spark master {master} is unreachable: {', '.join(errors)}. Start it (e.g. "
            "`scripts/spark_cluster.sh start`), check --spark-master, or use "
            "--spark-master 'local[*]'."
        )


def is_loopback(master: str) -> bool:
    if master.startswith("local"):
        return True
    return all(host in {"127.0.0.1", "localhost", "::1"} for host, _ in master_endpoints(master))


# -- the jars ---------------------------------------------------------------------------------
def jars_dir() -> Path | None:
    """The folder of fetched jars (MEDALLION_SPARK_JARS, else a checkout's build/spark-jars)."""
    env = os.environ.get(JARS_ENV)
    if env:
        folder = Path(env)
        if not any(folder.glob("delta-spark_*.jar")):
            raise EngineUnavailableError(
                f"{JARS_ENV} is {env!r}, which holds no delta-spark jar: run `make spark-jars` "
                f"(or unset {JARS_ENV} to let Spark fetch {PACKAGES[0]})."
            )
        return folder
    if (_CHECKOUT_JARS / ".complete").is_file():
        return _CHECKOUT_JARS
    return None


def jar_conf(master: str) -> dict[str, str]:
    """Where the Delta and S3 jars come from: a local folder, else Maven (spark.jars.packages).

    A local folder's jars are named as `local:` URIs in spark.jars: each node opens its own copy
    (nothing is shipped to executors, which matters for the 0.5 GB AWS SDK bundle), and they load
    after Spark's own classes (the bundle carries unshaded slf4j and netty: first on the class
    path, they silenced Spark's log). The same path must exist on every node, which holds for
    local masters and a cluster on this machine; other clusters resolve the packages (or get
    them from --spark-conf).
    """
    folder = jars_dir()
    if folder is not None and is_loopback(master):
        jars = ",".join(f"local:{p.absolute()}" for p in sorted(folder.glob("*.jar")))
        return {"spark.jars": jars}
    return {"spark.jars.packages": ",".join(PACKAGES)}


# -- object stores ----------------------------------------------------------------------------
def s3a_conf(storage_options: Mapping[str, str]) -> dict[str, str]:
    """delta-rs S3 storage options as Hadoop S3A settings (the same store from Spark).

    Only what is set is mapped; credentials Spark finds itself (instance roles, the AWS
    environment) need nothing here.
    """
    options = {k.upper(): str(v) for k, v in storage_options.items()}
    conf: dict[str, str] = {}
    pairs = {
        "AWS_ACCESS_KEY_ID": "fs.s3a.access.key",
        "AWS_SECRET_ACCESS_KEY": "fs.s3a.secret.key",
        "AWS_SESSION_TOKEN": "fs.s3a.session.token",
        "AWS_REGION": "fs.s3a.endpoint.region",
        "AWS_DEFAULT_REGION": "fs.s3a.endpoint.region",
    }
    for key, name in pairs.items():
        if key in options:
            conf[f"spark.hadoop.{name}"] = options[key]
    endpoint = options.get("AWS_ENDPOINT_URL") or options.get("AWS_ENDPOINT")
    if endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
        # S3-compatible servers (MinIO, moto, ...) address buckets by path.
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
        if endpoint.startswith("http://"):
            conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = "false"
    if "AWS_SESSION_TOKEN" in options:
        conf["spark.hadoop.fs.s3a.aws.credentials.provider"] = (
            "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider"
        )
    elif "AWS_ACCESS_KEY_ID" in options:
        conf["spark.hadoop.fs.s3a.aws.credentials.provider"] = (
            "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
        )
    return conf


# -- the session ------------------------------------------------------------------------------
def default_conf(master: str) -> dict[str, str]:
    """Laptop-friendly defaults; every key can be overridden with --spark-conf KEY=VALUE."""
    cores = os.cpu_count() or 2
    conf = {
        "spark.app.name": "medallion-lakehouse",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": "2g",
        "spark.sql.shuffle.partitions": str(2 * cores),
        # Timestamps are UTC instants everywhere (contracts use timestamp[us, UTC]).
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
        # Executors must run the same Python as the driver (same venv, same libraries).
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        # Delta Lake: format("delta"), DeltaTable, time travel.
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        # Rebuilding a snapshot from the log is a Spark job: 50 partitions (the default) for logs
        # of a few files is pure task overhead on every read and commit.
        "spark.databricks.delta.snapshotPartitions": str(max(2, cores)),
        # HotSpot never JIT-compiles a method over 8,000 bytes of bytecode: it stays
        # interpreted. Silver's parse generates such methods (one wide projection of every
        # standardisation and rule), so without this flag the rows of the step's biggest job go
        # through the interpreter (about a third of that job's time at 1M rows, local[2]).
        # Executors run the generated code on a cluster, the driver in local mode.
        "spark.driver.extraJavaOptions": HUGE_METHODS_JIT,
        "spark.executor.extraJavaOptions": HUGE_METHODS_JIT,
    }
    if is_loopback(master):
        # Containers often have a hostname that does not resolve; loopback always does.
        conf["spark.driver.host"] = "127.0.0.1"
        conf["spark.driver.bindAddress"] = "127.0.0.1"
    return conf


def session_conf(
    master: str,
    conf: Mapping[str, str] | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Every setting the session starts with: defaults, jars, S3A, then the user's."""
    return {
        **default_conf(master),
        **jar_conf(master),
        **s3a_conf(storage_options or {}),
        **dict(conf or {}),
        "spark.master": master,
    }


def get_spark(
    master: str = "local[*]",
    conf: Mapping[str, str] | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> SparkSession:
    """The process's SparkSession for this master and configuration, started on first use.

    Spark allows one SparkContext per process: asking for a different master or configuration
    stops the running session first.
    """
    pyspark = import_pyspark()
    settings = session_conf(master, conf, storage_options)
    key = (master, tuple(sorted(settings.items())))
    session = _SESSIONS.get(key)
    if session is not None and alive(session):
        return session
    # Check before stopping a running session: a typo must not take the old session down.
    find_java()
    check_master(master)
    stop_spark()
    if is_loopback(master):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = pyspark.sql.SparkSession.builder
    for name, value in settings.items():
        builder = builder.config(name, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:
        raise EngineUnavailableError(
            f"Spark could not start with master {master}: {str(exc).strip().splitlines()[0]}. "
            "Check Java (17 or 21), --spark-master and --spark-conf."
        ) from exc
    session.sparkContext.setLogLevel("ERROR")
    _SESSIONS[key] = session
    return session


def alive(session: SparkSession) -> bool:
    context = session.sparkContext
    return context._jsc is not None and not context._jsc.sc().isStopped()


def stop_spark() -> None:
    """Stop the process's SparkSession (the CLI calls this when a command ends)."""
    while _SESSIONS:
        _, session = _SESSIONS.popitem()
        session.stop()
