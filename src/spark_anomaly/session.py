"""The SparkSession both jobs use: Delta and Kafka wired in, sized from configuration."""

from __future__ import annotations

import glob
import os
import sys

from pyspark.sql import SparkSession

from .config import AppConfig, ConfigError

# On a cluster these coordinates go to --packages (or spark.jars.packages); locally the same
# jars are fetched once by scripts/fetch_jars.sh and handed over with spark.jars.
PACKAGES = (
    "org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0",
    "io.delta:delta-spark_4.2_2.13:4.4.0",
    "io.delta:delta-storage:4.4.0",
)


# Local mode (one JVM, tables and checkpoints on the local disk). Without Hadoop's native library,
# every rename through Hadoop's FileContext API runs `readlink` in a child process and every file
# created runs `chmod`: the streaming checkpoint's offset and commit files and each Delta commit
# and checksum paid for several forks, 15% of the micro-batch thread in jstack samples. The
# FileSystem-based checkpoint manager renames with java.io.File, and Delta's LocalLogStore
# serialises this JVM's commits with a lock instead; both assume what local mode is: one process
# writing each table. Median batch at 5k events/s: 1,180 -> 670 ms. (Hadoop's raw local file
# system, without `.crc` side files, would save more forks but breaks the RocksDB state store,
# which casts the local file system to LocalFileSystem.)
LOCAL_FS_SETTINGS = {
    "spark.sql.streaming.checkpointFileManagerClass": (
        "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"
    ),
    "spark.delta.logStore.file.impl": "io.delta.storage.LocalLogStore",
}


def local_jars(cfg: AppConfig) -> list[str]:
    jars_dir = cfg.spark.jars_dir
    if not jars_dir:
        return []
    jars = sorted(glob.glob(os.path.join(cfg.path(jars_dir), "*.jar")))
    if not jars:
        raise ConfigError(
            f"spark.jars_dir {cfg.path(jars_dir)} has no jars: run scripts/fetch_jars.sh "
            "(or set spark.jars_dir: null and spark.packages for a cluster)"
        )
    return jars


def build_spark(cfg: AppConfig, app_name: str | None = None) -> SparkSession:
    """Create (or return the running) SparkSession for ``cfg``.

    Settings passed by spark-submit win over ours only where we leave them unset: the master is
    set only when configured (``spark.master: null`` for clusters).
    """
    sc = cfg.spark
    if sc.local_ip:
        os.environ.setdefault("SPARK_LOCAL_IP", sc.local_ip)
    if sc.master and sc.master.startswith("local"):
        # Python workers must run the interpreter that has pandas/pyarrow, not whatever
        # `python3` is first on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    b = SparkSession.builder.appName(app_name or sc.app_name)
    if sc.master:
        b = b.master(sc.master)
    jars = local_jars(cfg)
    if jars:
        b = b.config("spark.jars", ",".join(jars))
    if sc.packages:
        b = b.config("spark.jars.packages", ",".join(sc.packages))
    settings = {
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.shuffle.partitions": str(sc.shuffle_partitions),
        # Delta rebuilds a table's snapshot (log replay) in 50 tasks by default. Every micro-batch
        # write and every model look-up does that; on two cores it was most of the train job's
        # CPU (12.8 of 21.5 CPU-s for 11M records) and of each detect batch's fixed cost.
        "spark.databricks.delta.snapshotPartitions": str(sc.shuffle_partitions),
        # Idempotent appends (txnAppId/txnVersion) look up the table's transaction ids on every
        # commit; keeping them in the per-commit checksum file saves a log scan per micro-batch.
        "spark.databricks.delta.setTransactionsInCrc.writeOnCommit": "true",
        "spark.sql.streaming.stateStore.providerClass": "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
        # Commit a state version as a changelog of its puts instead of flushing RocksDB and
        # copying its new SST files into the checkpoint every micro-batch (snapshots are then
        # uploaded in the background). cad in 1M-event batches: 478 -> 444-458 CPU-s per 3M
        # events (docs/benchmarks-notes.md). Existing checkpoints can switch either way.
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.extraJavaOptions": "-Dlog4j2.level=WARN",
    }
    if sc.master and sc.master.startswith("local"):
        settings["spark.driver.host"] = sc.local_ip or "127.0.0.1"
        settings["spark.driver.bindAddress"] = sc.local_ip or "127.0.0.1"
        settings["spark.ui.enabled"] = "false"
        settings.update(LOCAL_FS_SETTINGS)
    settings.update(sc.conf)
    for k, v in settings.items():
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel(sc.log_level)
    return spark
