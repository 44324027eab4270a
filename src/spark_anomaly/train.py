"""The train job's logic: history -> per-series moments -> a new model version.

Full mode aggregates all history. Incremental mode merges the latest version with only the
data that came after it, and gives the same model as a full retrain (to rounding):
- Kafka source: the previous version stores the offsets it read up to; only later offsets are read.
- File/Delta sources: per series, only readings with ts > that series' ``last_ts`` in the
  previous version are new (a global ``ts >`` prefilter lets Delta skip old files). This
  assumes each series' history lands in event-time order; a late reading older than the
  series' last trained one is not counted (run a full retrain to include it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from . import kafka_source, model_store, parsing
from .config import AppConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    version: int
    mode: str
    series: int
    rows_read: int
    rows_rejected: int
    source_offsets: str | None


def compute_stats(readings: DataFrame) -> DataFrame:
    """Per-series (n, mean, M2, min, max, first_ts, last_ts).

    Spark's variance aggregate keeps (n, avg, m2) with Welford updates and Chan merges, so
    M2 = var_pop * n inherits its numerical stability (no sum of squares anywhere).
    """
    return readings.groupBy("sensor_id", "metric").agg(
        F.count("value").alias("n"),
        F.avg("value").alias("mean"),
        (F.var_pop("value") * F.count("value")).alias("m2"),
        F.min("value").alias("min"),
        F.max("value").alias("max"),
        F.min("ts").alias("first_ts"),
        F.max("ts").alias("last_ts"),
    )


def merge_stats(prev: DataFrame, new: DataFrame) -> DataFrame:
    """Chan et al. merge of two per-series stat frames (full outer join on the series key)."""
    a = prev.select(
        *[
            F.col(c).alias(f"a_{c}") if c not in ("sensor_id", "metric") else F.col(c)
            for c in model_store.STAT_COLUMNS
        ]
    )
    b = new.select(
        *[
            F.col(c).alias(f"b_{c}") if c not in ("sensor_id", "metric") else F.col(c)
            for c in model_store.STAT_COLUMNS
        ]
    )
    j = a.join(b, ["sensor_id", "metric"], "full_outer")
    na, nb = F.coalesce(F.col("a_n"), F.lit(0)), F.coalesce(F.col("b_n"), F.lit(0))
    n = na + nb
    delta = F.col("b_mean") - F.col("a_mean")
    both = (na > 0) & (nb > 0)
    mean = (
        F.when(nb == 0, F.col("a_mean"))
        .when(na == 0, F.col("b_mean"))
        .otherwise(F.col("a_mean") + delta * nb / n)
    )
    m2 = (
        F.when(nb == 0, F.col("a_m2"))
        .when(na == 0, F.col("b_m2"))
        .otherwise(F.col("a_m2") + F.col("b_m2") + delta * delta * na * nb / n)
    )
    return j.select(
        "sensor_id",
        "metric",
        n.cast("long").alias("n"),
        mean.alias("mean"),
        m2.alias("m2"),
        F.when(both, F.least("a_min", "b_min")).otherwise(F.coalesce("a_min", "b_min")).alias("min"),
        F.when(both, F.greatest("a_max", "b_max")).otherwise(F.coalesce("a_max", "b_max")).alias("max"),
        F.when(both, F.least("a_first_ts", "b_first_ts"))
        .otherwise(F.coalesce("a_first_ts", "b_first_ts"))
        .alias("first_ts"),
        F.when(both, F.greatest("a_last_ts", "b_last_ts"))
        .otherwise(F.coalesce("a_last_ts", "b_last_ts"))
        .alias("last_ts"),
    )


def _read_files(spark: SparkSession, cfg: AppConfig) -> DataFrame:
    """Parsed records (with dead_reason) from JSON-lines, Parquet or Delta history."""
    tc, ic = cfg.train, cfg.input
    path = cfg.path(tc.source_path)
    if tc.source_format == "json":
        return parsing.parse(spark.read.text(path).withColumnRenamed("value", "raw"), ic)
    df = spark.read.format(tc.source_format).load(path)
    missing = [c for c in [ic.key_field, ic.time_field, *ic.measures] if c not in df.columns]
    if missing:
        raise ValueError(f"train source {path} lacks column(s) {', '.join(missing)}")
    ts = F.col(ic.time_field).cast("long") * (1000 if ic.time_unit == "s" else 1)
    reason = F.when(F.col(ic.key_field).isNull(), F.lit(f"missing field {ic.key_field}")).when(
        F.col(ic.time_field).isNull(), F.lit(f"missing field {ic.time_field}")
    )
    for m in ic.measures:
        v = F.col(m).cast("double")
        reason = reason.when(
            v.isNull() | F.isnan(v) | (F.abs(v) == float("inf")), F.lit(f"field {m} unusable")
        )
    return df.select(
        F.col(ic.key_field).cast("string").alias("sensor_id"),
        ts.alias("ts"),
        *[F.col(m).cast("double").alias(m) for m in ic.measures],
        reason.alias("dead_reason"),
    )


def _kafka_end_offsets(parsed: DataFrame, starting: dict[str, int]) -> str:
    ends = {
        str(r.partition): int(r.next)
        for r in parsed.groupBy("partition").agg((F.max("offset") + 1).alias("next")).collect()
    }
    merged = {**{str(k): int(v) for k, v in starting.items()}, **ends}
    return json.dumps(merged, sort_keys=True)


def run(spark: SparkSession, cfg: AppConfig, mode: str | None = None) -> TrainResult:
    """Train one model version; returns what was written."""
    mode = mode or cfg.train.mode
    table, json_dir = cfg.path(cfg.model.table), cfg.path(cfg.model.json_dir)
    latest = model_store.latest_version(spark, table)
    prev = latest if mode == "incremental" else None
    if mode == "incremental" and prev is None:
        log.warning("no previous model version in %s: incremental run trains on all history", table)
    offsets_json = None
    topic = cfg.kafka.topic
    if cfg.train.source_format == "kafka":
        starting: dict[str, int] = {}
        if prev is not None and prev.source_offsets:
            starting = {k: int(v) for k, v in json.loads(prev.source_offsets).items()}
        start_spec = json.dumps({topic: starting}) if starting else "earliest"
        parsed = parsing.parse(
            parsing.from_kafka(kafka_source.read_batch(spark, cfg.kafka, start_spec)), cfg.input
        )
        parsed = parsed.cache()
        offsets_json = _kafka_end_offsets(parsed, starting)
        source = f"kafka:{topic}"
    else:
        parsed = _read_files(spark, cfg).cache()
        source = f"{cfg.train.source_format}:{cfg.path(cfg.train.source_path)}"
    counts = parsed.agg(F.count(F.lit(1)).alias("all"), F.count("dead_reason").alias("bad")).first()
    readings = parsing.readings(parsed, cfg.input)
    prev_stats = None
    if prev is not None:
        prev_stats = model_store.read_version(spark, table, prev.version).select(*model_store.STAT_COLUMNS)
        if cfg.train.source_format != "kafka":
            cutoff = prev_stats.agg(F.min("last_ts")).first()[0]
            last = prev_stats.select("sensor_id", "metric", F.col("last_ts").alias("_last"))
            readings = (
                readings.where(F.col("ts") > F.lit(cutoff))
                .join(F.broadcast(last), ["sensor_id", "metric"], "left")
                .where(F.col("_last").isNull() | (F.col("ts") > F.col("_last")))
                .drop("_last")
            )
    stats = compute_stats(readings)
    if prev_stats is not None:
        stats = merge_stats(prev_stats, stats)
    version = model_store.next_version(latest.version if latest else None)
    info = model_store.write_version(
        spark, stats, table, json_dir, version=version, mode=mode, source=source, source_offsets=offsets_json
    )
    parsed.unpersist()
    if counts.bad:
        log.warning("train: %d of %d history records were unusable and skipped", counts.bad, counts.all)
    return TrainResult(version, mode, info.series, int(counts.all), int(counts.bad), offsets_json)
