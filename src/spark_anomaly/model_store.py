"""Model versions: a Delta table (source of truth) plus seed 003's JSON-lines export.

One row per series per version. A version becomes visible in one Delta commit, so a reader
never sees half of one; "latest" is the highest ``version`` in the table (named in the commit that
wrote it, so finding it is one log read). The JSON file
``sensors-m2-<version>.json`` is written to a temporary name and renamed into place after the
commit, so a seed-003 reader listing ``*.json`` never picks up a partial file either.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

MODEL_SCHEMA = T.StructType(
    [
        T.StructField("version", T.LongType(), False),
        T.StructField("trained_at", T.TimestampType(), False),
        T.StructField("mode", T.StringType(), False),
        T.StructField("data_start", T.LongType(), True),
        T.StructField("data_end", T.LongType(), True),
        T.StructField("source", T.StringType(), True),
        T.StructField("source_offsets", T.StringType(), True),
        T.StructField("sensor_id", T.StringType(), False),
        T.StructField("metric", T.StringType(), False),
        T.StructField("n", T.LongType(), False),
        T.StructField("mean", T.DoubleType(), True),
        T.StructField("m2", T.DoubleType(), True),
        T.StructField("min", T.DoubleType(), True),
        T.StructField("max", T.DoubleType(), True),
        T.StructField("first_ts", T.LongType(), True),
        T.StructField("last_ts", T.LongType(), True),
    ]
)
STAT_COLUMNS = ["sensor_id", "metric", "n", "mean", "m2", "min", "max", "first_ts", "last_ts"]
PRIOR_COLUMNS = ["n", "mean", "m2", "min", "max"]  # what a detector's SeriesPrior is built from
PRIOR_SCHEMA = T.StructType(
    [f for f in MODEL_SCHEMA.fields if f.name in ("sensor_id", "metric", *PRIOR_COLUMNS)]
)


@dataclass(frozen=True)
class VersionInfo:
    version: int
    mode: str
    series: int
    data_start: int | None
    data_end: int | None
    source_offsets: str | None
    # the versions the table holds, newest first, when the train job prunes (``model.keep_versions``)
    kept: list[int] | None = None


def table_exists(spark: SparkSession, table: str) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, table)


def last_commit(spark: SparkSession, table: str) -> tuple[int, str | None] | None:
    """(commit number, userMetadata) of the model table's last commit; None without a table.

    One small log read: the commit number changes whenever a version lands, and the userMetadata
    of a version write names that version (``latest_version``)."""
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, table):
        return None
    row = DeltaTable.forPath(spark, table).history(1).select("version", "userMetadata").first()
    return None if row is None else (int(row.version), row.userMetadata)


# The key of a version's VersionInfo in its commit's userMetadata: the newest version is read from
# the last commit (one small log read) instead of scanning the table's version column.
VERSION_KEY = "spark_anomaly_model"


def latest_version(
    spark: SparkSession, table: str, last: tuple[int, str | None] | None = None
) -> VersionInfo | None:
    """The newest version; ``last`` is the table's ``last_commit`` when the caller already has it."""
    last = last if last is not None else last_commit(spark, table)
    if last is None:
        return None
    info = _info_from_commit(last[1])
    return info if info is not None else _scan_latest_version(spark, table)


def _info_from_commit(user_metadata: str | None) -> VersionInfo | None:
    """The VersionInfo ``write_version`` put in a commit (None for other commits, e.g. OPTIMIZE)."""
    try:
        info = json.loads(user_metadata or "null")[VERSION_KEY]
        return VersionInfo(**info)
    except (ValueError, TypeError, KeyError):
        return None


def _scan_latest_version(spark: SparkSession, table: str) -> VersionInfo | None:
    """The newest version from the data (tables whose last commit is not a version write)."""
    df = spark.read.format("delta").load(table)
    row = df.agg(F.max("version").alias("v")).first()
    if row is None or row.v is None:
        return None
    meta = (
        df.where(F.col("version") == row.v)
        .agg(
            F.first("mode").alias("mode"),
            F.count(F.lit(1)).alias("series"),
            F.first("data_start").alias("data_start"),
            F.first("data_end").alias("data_end"),
            F.first("source_offsets").alias("source_offsets"),
        )
        .first()
    )
    return VersionInfo(
        int(row.v), meta.mode, int(meta.series), meta.data_start, meta.data_end, meta.source_offsets
    )


def read_version(spark: SparkSession, table: str, version: int) -> DataFrame:
    return spark.read.format("delta").load(table).where(F.col("version") == F.lit(version))


def read_latest(
    spark: SparkSession, table: str, last: tuple[int, str | None] | None = None
) -> tuple[int | None, DataFrame | None]:
    info = latest_version(spark, table, last)
    if info is None:
        return None, None
    return info.version, read_version(spark, table, info.version)


def next_version(previous: int | None) -> int:
    """Epoch ms of now, strictly above the previous version (clocks can step back)."""
    now = int(time.time() * 1000)
    return max(now, (previous or 0) + 1)


def write_version(
    spark: SparkSession,
    stats: DataFrame,
    table: str,
    json_dir: str | None,
    *,
    version: int,
    mode: str,
    source: str,
    source_offsets: str | None = None,
    kept: list[int] | None = None,
) -> VersionInfo:
    """Append ``stats`` (STAT_COLUMNS per series) as model ``version``: one Delta commit.

    ``stats`` is computed once (a local checkpoint, its range and count observed on the way) and
    the Delta rows and the JSON export both read that small result. Not cache(): when ``stats``
    derives from this table (an incremental merge with the previous version), the commit below
    makes Spark re-plan and re-read every cached plan over the table's path, export included.
    """
    seen = Observation()
    stats = (
        stats.select(*STAT_COLUMNS)
        .observe(
            seen, F.min("first_ts").alias("a"), F.max("last_ts").alias("b"), F.count(F.lit(1)).alias("c")
        )
        .localCheckpoint()
    )
    start, end, count = seen.get["a"], seen.get["b"], int(seen.get["c"])
    rows = stats.select(
        F.lit(version).cast("long").alias("version"),
        F.lit(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(version / 1000)))
        .cast("timestamp")
        .alias("trained_at"),
        F.lit(mode).alias("mode"),
        F.lit(start).cast("long").alias("data_start"),
        F.lit(end).cast("long").alias("data_end"),
        F.lit(source).alias("source"),
        F.lit(source_offsets).cast("string").alias("source_offsets"),
        *[F.col(c) for c in STAT_COLUMNS],
    )
    info = VersionInfo(version, mode, count, start, end, source_offsets, kept)
    (
        rows.write.format("delta")
        .mode("append")
        .option("userMetadata", json.dumps({VERSION_KEY: dataclasses.asdict(info)}))
        .save(table)
    )
    if json_dir:
        export_json(spark, stats, json_dir, version)
    return info


def versions(spark: SparkSession, table: str) -> list[int]:
    """Every version the table holds, newest first (a scan of the version column)."""
    if not table_exists(spark, table):
        return []
    rows = spark.read.format("delta").load(table).select("version").distinct().collect()
    return sorted((r.version for r in rows), reverse=True)


def prune_versions(
    spark: SparkSession, table: str, newest: VersionInfo, dropped: list[int], json_dir: str | None = None
) -> None:
    """Delete the ``dropped`` versions, all older than what ``newest.kept`` keeps: their rows in one
    Delta commit, and their JSON exports. The commit names ``newest`` in its userMetadata, as a
    version write does, so finding the latest version stays one log read."""
    from delta.tables import DeltaTable

    if not dropped or not newest.kept:
        return
    key = "spark.databricks.delta.commitInfo.userMetadata"
    spark.conf.set(key, json.dumps({VERSION_KEY: dataclasses.asdict(newest)}))
    try:
        DeltaTable.forPath(spark, table).delete(F.col("version") < F.lit(min(newest.kept)))
    finally:
        spark.conf.unset(key)
    if json_dir:
        jvm = spark.sparkContext._jvm
        hconf = spark.sparkContext._jsc.hadoopConfiguration()
        for version in dropped:
            path = jvm.org.apache.hadoop.fs.Path(f"{json_dir.rstrip('/')}/sensors-m2-{version}.json")
            path.getFileSystem(hconf).delete(path, False)


def export_json(spark: SparkSession, stats: DataFrame, json_dir: str, version: int) -> str:
    """Write ``sensors-m2-<version>.json`` (seed 003's layout) atomically via a rename."""
    jvm = spark.sparkContext._jvm
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    final = f"{json_dir.rstrip('/')}/sensors-m2-{version}.json"
    tmp = f"{json_dir.rstrip('/')}/_tmp-sensors-m2-{version}"
    (
        stats.select(
            F.col("sensor_id").alias("id"),
            "metric",
            F.struct(F.col("n").cast("int").alias("n"), "mean", "m2").alias("m2"),
        )
        .coalesce(1)
        .write.mode("overwrite")
        .json(tmp)
    )
    path = jvm.org.apache.hadoop.fs.Path(tmp)
    fs = path.getFileSystem(hconf)
    parts = [s.getPath() for s in fs.listStatus(path) if s.getPath().getName().startswith("part-")]
    if len(parts) != 1:
        raise RuntimeError(f"expected one part file in {tmp}, found {len(parts)}")
    target = jvm.org.apache.hadoop.fs.Path(final)
    if not fs.rename(parts[0], target):
        raise RuntimeError(f"could not rename {parts[0]} to {final}")
    fs.delete(path, True)
    crc = jvm.org.apache.hadoop.fs.Path(f"{json_dir.rstrip('/')}/.sensors-m2-{version}.json.crc")
    if fs.exists(crc):  # the local filesystem's checksum side file: noise for seed-003 readers
        fs.delete(crc, False)
    return final
