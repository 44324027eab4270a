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

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from . import kafka_source, model_store, parsing
from .config import AppConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    version: int
    mode: str
    series: int
    rows_read: int  # source records scanned (incremental file runs: those after the ts prefilter)
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
    ts = F.col(ic.time_field).cast("long")
    if ic.time_unit == "s":
        ts = ts * 1000  # (ms needs no arithmetic, which keeps a ``ts >`` filter pushable to the scan)
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
    # a partition never read (-2: still from its earliest) needs no entry: the next run adds it again
    return json.dumps({k: v for k, v in merged.items() if v >= 0}, sort_keys=True)


def _last_ts_wide(prev_stats: DataFrame, measures: list[str]) -> DataFrame:
    """Previous version's per-series ``last_ts`` pivoted to one row per sensor (``_last<i>`` per measure)."""
    return prev_stats.groupBy("sensor_id").agg(
        *[
            F.max(F.when(F.col("metric") == m, F.col("last_ts"))).alias(f"_last{i}")
            for i, m in enumerate(measures)
        ]
    )


def wide_stats(parsed: DataFrame, measures: list[str], incremental: bool = False) -> DataFrame:
    """One aggregation pass over the wide records, grouped by sensor only.

    Why wide: melting to (sensor, metric) first doubles the rows the hash aggregate sees and
    needs a generator; grouping the parsed records once and unpivoting the small result is the
    cheapest plan (all aggregates are declarative, so whole-stage codegen covers them). The same
    pass counts all and unusable records, so no cache + count pass over the source is needed.
    A usable record has every measure, so in full mode n and the ts range are shared by the
    measures (computed once). With ``incremental`` the frame carries ``_last<i>`` columns and a
    measure only counts for readings after that series' last trained one.
    """
    good = F.col("dead_reason").isNull()
    aggs = [F.count(F.lit(1)).alias("_rows"), F.count("dead_reason").alias("_bad")]
    if not incremental:
        t = F.when(good, F.col("ts"))
        aggs += [F.count(t).alias("_n"), F.min(t).alias("_first"), F.max(t).alias("_last")]
    for i, m in enumerate(measures):
        keep = good
        if incremental:
            keep = good & (F.col(f"_last{i}").isNull() | (F.col("ts") > F.col(f"_last{i}")))
        v = F.when(keep, F.col(m))
        aggs += [
            F.avg(v).alias(f"mean{i}"),
            F.var_pop(v).alias(f"var{i}"),
            F.min(v).alias(f"min{i}"),
            F.max(v).alias(f"max{i}"),
        ]
        if incremental:
            t = F.when(keep, F.col("ts"))
            aggs += [F.count(v).alias(f"n{i}"), F.min(t).alias(f"first{i}"), F.max(t).alias(f"last{i}")]
    wide = parsed.groupBy("sensor_id").agg(*aggs)
    if not incremental:
        wide = wide.select(
            "*",
            *[F.col("_n").alias(f"n{i}") for i in range(len(measures))],
            *[F.col("_first").alias(f"first{i}") for i in range(len(measures))],
            *[F.col("_last").alias(f"last{i}") for i in range(len(measures))],
        )
    return wide.select(
        "*", *[(F.col(f"var{i}") * F.col(f"n{i}")).alias(f"m2{i}") for i in range(len(measures))]
    )


def unpivot_stats(wide: DataFrame, measures: list[str]) -> DataFrame:
    """``wide_stats`` -> STAT_COLUMNS, one row per (sensor_id, metric) that has readings."""
    per = [
        F.struct(
            F.lit(m).alias("metric"),
            F.col(f"n{i}").alias("n"),
            F.col(f"mean{i}").alias("mean"),
            F.col(f"m2{i}").alias("m2"),
            F.col(f"min{i}").alias("min"),
            F.col(f"max{i}").alias("max"),
            F.col(f"first{i}").alias("first_ts"),
            F.col(f"last{i}").alias("last_ts"),
        )
        for i, m in enumerate(measures)
    ]
    return (
        wide.where(F.col("sensor_id").isNotNull())
        .select("sensor_id", F.inline(F.array(*per)))
        .where(F.col("n") > 0)
        .select(*model_store.STAT_COLUMNS)
    )


def run(spark: SparkSession, cfg: AppConfig, mode: str | None = None) -> TrainResult:
    """Train one model version; returns what was written.

    File/Delta sources are read in one pass (``wide_stats``): no cache of the history, only the
    needed columns, and in incremental mode a ``ts`` prefilter Delta/Parquet can push down to skip
    old files, so an incremental run costs in proportion to the new data.
    """
    mode = mode or cfg.train.mode
    table, json_dir = cfg.path(cfg.model.table), cfg.path(cfg.model.json_dir)
    measures = list(cfg.input.measures)
    latest = model_store.latest_version(spark, table)
    prev = latest if mode == "incremental" else None
    if mode == "incremental" and prev is None:
        log.warning("no previous model version in %s: incremental run trains on all history", table)
    prev_stats, cutoff = None, None
    if prev is not None:
        # read twice (per-series last_ts, merge): small, so materialise it once; the cutoff is
        # observed on the way (no job of its own). A local checkpoint, not cache(): a cached plan
        # that reads the model table is re-planned and re-read by Spark when this run's own
        # commit lands (recacheByPath), which cost 11 of a no-new-data run's 27 Spark jobs.
        seen = Observation()
        prev_stats = (
            model_store.read_version(spark, table, prev.version)
            .select(*model_store.STAT_COLUMNS)
            .observe(seen, F.min("last_ts").alias("cutoff"))
            .localCheckpoint()
        )
        cutoff = seen.get["cutoff"]
    offsets_json = None
    topic = cfg.kafka.topic
    cached: DataFrame | None = None
    if cfg.train.source_format == "kafka":
        starting: dict[str, int] = {}
        if prev is not None and prev.source_offsets:
            stored = {k: int(v) for k, v in json.loads(prev.source_offsets).items()}
            # every partition of the topic, from where the previous version stopped; one it never
            # read (no records then, or added since) from its earliest offset (-2)
            starting = {str(p): stored.get(str(p), -2) for p in kafka_source.partitions(spark, cfg.kafka)}
        start_spec = json.dumps({topic: starting}) if starting else "earliest"
        parsed = parsing.parse(
            parsing.from_kafka(kafka_source.read_batch(spark, cfg.kafka, start_spec)), cfg.input
        )
        # two passes (offsets, stats) over a source that is expensive to re-read: cache it
        parsed = cached = parsed.cache()
        offsets_json = _kafka_end_offsets(parsed, starting)
        source = f"kafka:{topic}"
        wide = wide_stats(parsed.select("sensor_id", "ts", *measures, "dead_reason"), measures)
    else:
        parsed = _read_files(spark, cfg)
        source = f"{cfg.train.source_format}:{cfg.path(cfg.train.source_path)}"
        if prev_stats is None:
            wide = wide_stats(parsed, measures)
        else:
            # rows without a usable ts are kept so they are still counted as rejected
            fresh = parsed.where((F.col("ts") > F.lit(cutoff)) | F.col("ts").isNull())
            last = _last_ts_wide(prev_stats, measures)
            wide = wide_stats(
                fresh.join(F.broadcast(last), ["sensor_id"], "left"), measures, incremental=True
            )
    # the one pass over the source, counted on the way; the model is read from its small result
    tally = Observation()
    wide = wide.observe(tally, F.sum("_rows").alias("all"), F.sum("_bad").alias("bad")).localCheckpoint()
    counts = tally.get
    stats = unpivot_stats(wide, measures)
    if prev_stats is not None:
        stats = merge_stats(prev_stats, stats)
    version = model_store.next_version(latest.version if latest else None)
    keep, held, prune = cfg.model.keep_versions, None, False
    if keep is not None:
        # what the table holds: nothing without a latest version; else what its commit says, or
        # (a commit written without pruning) a scan of the version column
        held = (
            [version] if latest is None else [version, *(latest.kept or model_store.versions(spark, table))]
        )
        # pruned once it holds twice what it keeps: a DELETE cost 1.3-2.7 s, too much for every run
        prune = len(held) >= 2 * keep
    info = model_store.write_version(
        spark, stats, table, json_dir, version=version, mode=mode, source=source, source_offsets=offsets_json,
        kept=held[:keep] if prune else held,
    )  # fmt: skip
    if cached is not None:
        cached.unpersist()
    if prune:
        model_store.prune_versions(spark, table, info, held[keep:], json_dir)
        log.warning("train: deleted %d old model version(s), kept %d", len(held) - keep, keep)
    rows_all, rows_bad = int(counts["all"] or 0), int(counts["bad"] or 0)
    if rows_bad:
        log.warning("train: %d of %d history records were unusable and skipped", rows_bad, rows_all)
    return TrainResult(version, mode, info.series, rows_all, rows_bad, offsets_json)
