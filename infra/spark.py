"""The one place a SparkSession is built: master, JVM jars (Kafka connector, scorer, Delta Lake), time zone, loopback."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from infra.exceptions import ConfigError, LakeError, ServiceError
from infra.logs import jvm_launch_output, spark_java_options
from infra.probes import port_is_open
from infra.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def _jars(settings: Settings, module: str, marker: str, what: str) -> list[str]:
    folder = settings.jars_dir / module
    jars = sorted(str(p) for p in folder.glob("*.jar"))
    if not any(marker in jar for jar in jars):
        raise ConfigError(f"{what} is not in {folder}; run `make jvm` to build it with Maven")
    return jars


def connector_jars(settings: Settings) -> list[str]:
    """Spark's Kafka connector and what it needs, as fetched by `make jvm`."""
    return _jars(settings, "spark-kafka", "spark-sql-kafka", "Spark's Kafka connector")


def scoring_jars(settings: Settings) -> list[str]:
    """XGBoost scoring in the JVM (`infra/jvm/scoring`) and xgboost4j, as built by `make jvm`."""
    return _jars(settings, "scoring", "streamwarden-scoring", "streamwarden's JVM scorer")


def check_reachable(settings: Settings) -> None:
    """Fail in one line, before a JVM starts, when the Spark master or the lake's NameNode does not
    answer: Spark would otherwise retry for a minute and end in a Java stack trace."""
    if settings.spark.master.startswith("spark://"):
        host, port = settings.spark.master_listen
        if not port_is_open(host, port, timeout=2.0):
            raise ServiceError(
                f"the Spark master {settings.spark.master} does not answer; start it with "
                "`warden up --spark-cluster`, or fix WARDEN_SPARK_MASTER"
            )
    if settings.lake_on_hdfs:
        host, port = settings.hdfs_namenode
        if not port_is_open(host, port, timeout=2.0):
            raise LakeError(
                f"the lake's NameNode hdfs://{host}:{port} does not answer; start it with "
                "`warden up --lake hdfs`, or fix WARDEN_LAKE_ROOT"
            )


def delta_jars(settings: Settings) -> list[str]:
    """Delta Lake for Spark (`infra/jvm/delta`), as fetched by `make jvm`."""
    return _jars(settings, "delta", "delta-spark", "Delta Lake for Spark")


def spark_session(settings: Settings, app_name: str, with_kafka: bool = True) -> SparkSession:
    """A session on WARDEN_SPARK_MASTER; on a cluster `spark.jars` also ships the jars to executors.

    Build it through `infra.context.Context`, which sets the environment pyspark reads first
    (`infra.environment`: loopback, UTC, this interpreter for Python workers, the JDK)."""
    check_reachable(settings)
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(settings.spark.master)
        .appName(app_name)
        .config("spark.driver.memory", settings.spark.driver_memory)
        .config("spark.executor.memory", settings.spark.executor_memory)
        .config("spark.driver.maxResultSize", settings.spark.driver_max_result_size)
        # On a shared standalone cluster one long-running app (the stream) must not take every
        # core: a retraining job would wait for executors forever.
        .config("spark.cores.max", str(settings.spark.app_max_cores))
        # Python workers (pandas UDFs) on a cluster run this interpreter too.
        .config("spark.pyspark.python", sys.executable)
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(settings.spark.shuffle_partitions))
        .config("spark.sql.adaptive.enabled", "true")
        # Write each date partition with its own writer instead of sorting every batch by date.
        .config("spark.sql.maxConcurrentOutputFileWriters", "8")
        .config("spark.local.dir", str(settings.home / "spark-tmp"))
        .config("spark.sql.warehouse.dir", str(settings.home / "spark-warehouse"))
        .config("spark.sql.streaming.metricsEnabled", "true")
        # A micro-batch is cached for seconds, then dropped: compressing the cache costs more than it saves.
        .config("spark.sql.inMemoryColumnarStorage.compressed", "false")
        # pandas to Spark (a batch's online statistics) and back through Arrow: a local relation,
        # not an RDD of pickled rows.
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        # The lake's Delta tables (`telemetry`, `scored`, `rejected`), by path.
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        # Rebuilding a table's state from its log is a Spark job of 50 tasks by default: far more
        # tasks than a log of a few hundred small commits needs on two cores.
        .config("spark.databricks.delta.snapshotPartitions", str(settings.spark.shuffle_partitions))
        # The stream commits to its tables every micro-batch. Per commit, the operation metrics in
        # the table's history cost ~50 ms here (bench/README.md) and nothing of ours reads them.
        # The checksum file of each version (~60 ms a commit) stays: a driver that takes the
        # stream over reads the table's protocol and metadata from it, where it would otherwise
        # replay the log in two Spark jobs before its first write (1-2 s).
        .config("spark.databricks.delta.history.metricsEnabled", "false")
        # An idle Kafka consumer stays in Spark's pool this long (5 minutes by default): a standby
        # that waits for hours still finds the ones its rehearsal made (`streaming.kafka_io`).
        .config("spark.kafka.consumer.cache.timeout", "7d")
    )
    jars = scoring_jars(settings) + delta_jars(settings) + (connector_jars(settings) if with_kafka else [])
    builder = builder.config("spark.jars", ",".join(jars))
    java_options = spark_java_options(settings, app_name)
    if java_options is not None:
        builder = builder.config("spark.driver.extraJavaOptions", java_options)
    with jvm_launch_output(settings, app_name):
        session = builder.getOrCreate()
    if java_options is None:
        session.sparkContext.setLogLevel("WARN")
    return session


def hadoop_filesystem(spark: SparkSession, url: str) -> tuple[Any, Any]:
    """(FileSystem, Path class) of Hadoop for `url`: the same calls for a local folder and HDFS."""
    path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path  # type: ignore[union-attr]
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    return path(url).getFileSystem(conf), path
