"""The detect job's logic: Kafka -> parse -> score -> Delta, exactly once.

Two kinds of detector run side by side, each its own streaming query over the same topic:
- the *stateless* path (zscore against the latest trained model) and the dead-letter table, in
  one ``foreachBatch`` query: parse once, write rejects and scored rows idempotently;
- the *stateful* detectors (normal, ema, robust, kmeans, cad, ...) per series with Spark-managed
  state (``spark_anomaly.stateful``), appending to the same sink table.
With ``detect.aggregation.window`` set, zscore scores windowed aggregates instead: the intake
query then writes dead letters only, and an ``aggregate`` query (parse -> readings -> event-time
windows with a watermark -> zscore) appends one row per series per closed window. Spark rejects
``applyInPandasWithState`` after a streaming aggregation in append mode, so for the stateful
detectors the aggregate query also appends the closed windows to ``detect.aggregation.table``
(Delta) and the stateful query reads that table as a stream.
Both append to Delta with (app id, batch id) transactions, so a replayed batch is skipped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from . import aggregation, kafka_source, parsing, scoring, sink
from .config import AppConfig, ConfigError
from .detectors import registry, zscore
from .latest_model import LatestModel
from .log_checkpoints import LogCheckpointer
from .results import RESULT_SCHEMA
from .series_runner import bind
from .zscore_batch import ZScoreBatch

log = logging.getLogger(__name__)

STATELESS = ("zscore",)
# A Kafka record's coordinates, as ``parsing.from_kafka`` names them.
RECORD_KEY = ["topic", "partition", "offset"]
REJECT_BIT = "_reject_bit"
# ``bitmap_construct_agg`` sets bits 0..32767 of a 4 KiB bitmap.
BITMAP_BITS = 4096 * 8


@dataclass
class DetectQueries:
    queries: list[StreamingQuery]

    def await_all(self, timeout_s: float | None = None) -> None:
        import time

        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while any(q.isActive for q in self.queries):
            for q in self.queries:
                error = q.exception()
                if error is not None:
                    raise error
            if deadline is not None and time.monotonic() >= deadline:
                return
            time.sleep(0.5)

    def stop(self) -> None:
        for q in self.queries:
            q.stop()

    def process_all_available(self) -> None:
        for q in self.queries:
            q.processAllAvailable()


def validate(cfg: AppConfig) -> None:
    """Fail at start, naming the key, if a detector or its parameters are wrong."""
    agg = cfg.detect.aggregation
    if agg.window:
        aggregation.validate(agg)
        stateful_names = [s.name for s in cfg.detect.detectors if s.name not in STATELESS]
        if stateful_names and not agg.table:
            raise ConfigError(
                "detect.aggregation.table must name a Delta table: the stateful detectors "
                f"({', '.join(stateful_names)}) read the aggregates from it"
            )
        if stateful_names and cfg.path(agg.table) in (
            cfg.path(cfg.detect.sink_table),
            cfg.path(cfg.detect.dead_letter_table),
        ):
            raise ConfigError("detect.aggregation.table must differ from detect.sink_table/dead_letter_table")
    for i, spec in enumerate(cfg.detect.detectors):
        try:
            bind([spec])
        except (ValueError, TypeError, OSError) as exc:
            raise ConfigError(f"detect.detectors[{i}] ({spec.name}): {exc}") from None


def parsed_stream(spark: SparkSession, cfg: AppConfig) -> DataFrame:
    return parsing.parse(kafka_records(spark, cfg), cfg.input)


def stateful_batch_cap(cfg: AppConfig) -> int | None:
    """The stateful query's cap on a batch: the lower of its own and the Kafka one (None: none)."""
    caps = [c for c in (cfg.kafka.max_offsets_per_trigger, cfg.detect.stateful_max_offsets_per_trigger) if c]
    return min(caps) if caps else None


def stateful_stream(spark: SparkSession, cfg: AppConfig) -> DataFrame:
    """``parsed_stream`` in the stateful query's batches (``stateful_batch_cap``)."""
    capped = replace(cfg.kafka, max_offsets_per_trigger=stateful_batch_cap(cfg))
    return parsed_stream(spark, replace(cfg, kafka=capped))


def latest_zscore_model(
    spark: SparkSession,
    cfg: AppConfig,
    zcfg: zscore.ZScoreConfig | None,
    refresh_seconds: float | None = None,
) -> LatestModel:
    """The latest model as ``score_stateless`` joins with it (``scoring.zscore_model``)."""
    return LatestModel(
        spark,
        cfg.path(cfg.model.table),
        cfg.model.refresh_seconds if refresh_seconds is None else refresh_seconds,
        prepare=None if zcfg is None else (lambda prior: scoring.zscore_model(prior, zcfg)),
        broadcast_max_series=cfg.model.broadcast_max_series,
    )


def score_stateless(
    readings: DataFrame, model: DataFrame, version: int | None, cfg: zscore.ZScoreConfig
) -> DataFrame:
    """Join readings with the model, as ``scoring.zscore_model`` shapes it, and apply zscore (once;
    a query scoring every micro-batch keeps a ``ZScoreBatch``)."""
    return ZScoreBatch(cfg)(readings, model, version)


def aggregated_stream(spark: SparkSession, cfg: AppConfig) -> DataFrame:
    """Windowed aggregates of the good readings (the dead letters are the intake query's job)."""
    return aggregation.aggregate(
        parsing.readings(parsed_stream(spark, cfg), cfg.input), cfg.detect.aggregation
    )


def _aggregate_batch(cfg: AppConfig, model: LatestModel, zcfg: zscore.ZScoreConfig | None, to_table: bool):
    """foreachBatch of the aggregate query, once per batch id: closed windows -> zscore -> sink,
    and (``to_table``) the windows themselves -> ``detect.aggregation.table`` for the stateful query."""
    ckpt = cfg.path(cfg.detect.checkpoint) + "/aggregate"
    sink_table, agg_table = cfg.path(cfg.detect.sink_table), cfg.path(cfg.detect.aggregation.table)
    scored = sink.BatchAppender(sink_table, sink.app_id(ckpt, sink_table))
    windows = sink.BatchAppender(agg_table, sink.app_id(ckpt, agg_table))
    score = None if zcfg is None else ZScoreBatch(zcfg, anomalies_only=cfg.detect.output == "anomalies")

    def process(batch: DataFrame, batch_id: int) -> None:
        # Cached when read twice: recomputing would re-read the aggregation state store.
        if to_table and zcfg is not None:
            batch = batch.persist()
        try:
            if to_table:
                windows.append(batch, batch_id)
            if score is not None:
                version, frame = model.get()
                scored.append(score(batch, frame, version), batch_id)
        finally:
            if to_table and zcfg is not None:
                batch.unpersist()

    return sink.interruptible(process)


def _observed(seen: Observation, name: str) -> Any:
    """The metric ``observe`` collected, or None when the plan ran without it: Spark drops the
    observation with the rest of a plan it proves empty (e.g. ``output=anomalies`` before any
    model exists turns the join into an inner join with an empty table)."""
    try:
        return seen.get.get(name)
    except Exception:  # noqa: BLE001 - py4j raises a bare assertion error for missing metrics
        return None


def _record_bit() -> Column:
    """A Kafka record's bit in the rejects' bitmap: its key's hash, modulo the bitmap's size."""
    return F.pmod(F.xxhash64(*RECORD_KEY), F.lit(BITMAP_BITS))


def set_bits(bitmap: bytes) -> list[int]:
    """The positions set in a ``bitmap_construct_agg`` result (bit ``i`` is bit ``i % 8`` of byte ``i // 8``)."""
    return [8 * i + b for i, byte in enumerate(bytes(bitmap)) if byte for b in range(8) if byte >> b & 1]


def _records_on(batch: DataFrame, bits: list[int]) -> DataFrame:
    """The batch's records whose bit is set: every reject, and the few good records that share a
    bit with one (their parse finds them good, so they stay out of the dead letters)."""
    marked = batch.sparkSession.createDataFrame([(b,) for b in bits], f"{REJECT_BIT} long")
    return (
        batch.withColumn(REJECT_BIT, _record_bit())
        .join(F.broadcast(marked), REJECT_BIT, "left_semi")
        .drop(REJECT_BIT)
    )


def kafka_records(spark: SparkSession, cfg: AppConfig) -> DataFrame:
    """The topic's records as ``raw`` plus coordinates: what the intake query hands each batch."""
    return parsing.from_kafka(kafka_source.read_stream(spark, cfg.kafka))


def _intake_batch(cfg: AppConfig, model: LatestModel, zcfg: zscore.ZScoreConfig | None):
    """foreachBatch of the intake query over the batch's Kafka records: scored rows, then the
    batch's dead letters (if any).

    One pass over the batch: it is parsed and scored in the scored write's own job, which also
    sets a bit per reject in a 4 KiB bitmap on the way (``observe``: the hash of its Kafka
    coordinates). Only the records on those bits are parsed again for the dead letters (the rejects
    and, with many rejects, good records sharing their bits, which the parse keeps out); the rest
    of the batch is read again, not parsed (the parse is most of a batch's work). Before, a batch
    with a single reject was parsed twice: with rejects in 1 of 50,000 records, every 1M-event
    batch took 1.8x as long. Caching the parsed batch for the two writes took about a quarter of
    the anomalies-only path. The bitmap's size is fixed, where a list of the rejects' coordinates
    grew with them (an all-garbage batch of 1M records collected 1M keys on the driver).
    """
    sink_table, dead_table = cfg.path(cfg.detect.sink_table), cfg.path(cfg.detect.dead_letter_table)
    ckpt = cfg.path(cfg.detect.checkpoint) + "/intake"
    scored = sink.BatchAppender(sink_table, sink.app_id(ckpt, sink_table))
    dead_letters = sink.BatchAppender(dead_table, sink.app_id(ckpt, dead_table))
    # The expressions are built once here, not per batch (``column_cache``).
    parse, melt = parsing.Parser(cfg.input), parsing.Readings(cfg.input)
    score = None if zcfg is None else ZScoreBatch(zcfg, anomalies_only=cfg.detect.output == "anomalies")
    # Each reject sets one bit of a fixed 4 KiB bitmap (its record key's hash); the bit is a column
    # of the parse's generated code, null for good records, so ``observe`` only reads it.
    reject_bit = F.when(F.col("dead_reason").isNotNull(), _record_bit()).alias(REJECT_BIT)
    reject_bits = F.bitmap_construct_agg(REJECT_BIT).alias("rejects")

    def process(batch: DataFrame, batch_id: int) -> None:
        parsed = parse(batch)
        bits: list[int] | None = None  # the rejects' bits, once collected
        if score is not None:
            seen = Observation(f"spark-anomaly-intake-{batch_id}")
            version, frame = model.get()
            # (the melt selects its own columns: the bit goes no further)
            marked = parsed.select("*", reject_bit).observe(seen, reject_bits)
            if scored.append(score(melt(marked), frame, version), batch_id):
                bitmap = _observed(seen, "rejects")
                bits = None if bitmap is None else set_bits(bitmap)
        if bits is not None:
            if bits:
                # Written after the scores: a crash in between replays this batch, whose scores are
                # then skipped as committed and whose dead letters are written.
                dead_letters.append(parsing.dead_letters(parse(_records_on(batch, bits))), batch_id)
            return
        # Not collected (a replayed batch whose scores were committed; no zscore; no model yet with
        # output=anomalies): the whole batch is parsed for them. Only the rejects are cached.
        dead = parsing.dead_letters(parsed).persist()
        try:
            if not dead.isEmpty():
                dead_letters.append(dead, batch_id)
        finally:
            dead.unpersist()

    return sink.interruptible(process)


def start(spark: SparkSession, cfg: AppConfig, available_now: bool = False) -> DetectQueries:
    """Start the detect job's streaming queries; the caller awaits or stops them."""
    validate(cfg)
    z_specs = [s for s in cfg.detect.detectors if s.name in STATELESS]
    zcfg = registry.make_config("zscore", z_specs[0].params) if z_specs else None
    # The model's first look-up (a Delta history read, then the version loaded and cached: 0.4 s in
    # a warm JVM, several seconds in a fresh one) starts first and runs beside the sink table's
    # creation and the queries' start; the first batch used to wait for it after those.
    model = latest_zscore_model(spark, cfg, zcfg)
    queries: list[StreamingQuery] = []
    starting = [True]
    running = lambda: starting[0] or any(q.isActive for q in queries)  # noqa: E731
    model.follow(running)
    try:
        _start_queries(spark, cfg, model, zcfg, available_now, queries)
    finally:
        starting[0] = False
    appended = [cfg.path(cfg.detect.sink_table), cfg.path(cfg.detect.dead_letter_table)]
    stateful_too = any(s.name not in STATELESS for s in cfg.detect.detectors)
    if cfg.detect.aggregation.window and stateful_too:  # the windows table they read
        appended.append(cfg.path(cfg.detect.aggregation.table))
    LogCheckpointer(spark, appended, sink.LOG_CHECKPOINT_COMMITS).follow(running)
    return DetectQueries(queries)


def _start_queries(
    spark: SparkSession,
    cfg: AppConfig,
    model: LatestModel,
    zcfg: zscore.ZScoreConfig | None,
    available_now: bool,
    queries: list[StreamingQuery],
) -> None:
    """Start the intake query, then the aggregate and stateful ones the configuration asks for,
    appending each to ``queries`` as it starts."""
    stateful_specs = [s for s in cfg.detect.detectors if s.name not in STATELESS]
    aggregated = bool(cfg.detect.aggregation.window)

    def no_data_batches(enabled: bool) -> None:
        # A processing-time state timeout makes Spark ask for empty batches forever, so an
        # availableNow query with stateful detectors would never end; catching up needs none.
        # Aggregation needs the trailing no-data batch: it emits the windows the last data batch closed.
        # A query keeps the session conf it was started with, so each gets its own below.
        if available_now:
            spark.conf.set("spark.sql.streaming.noDataMicroBatches.enabled", str(enabled).lower())

    no_data_batches(not stateful_specs)
    trigger = (
        {"availableNow": True}
        if available_now
        else {"processingTime": f"{cfg.detect.trigger_seconds} seconds"}
    )
    ckpt = cfg.path(cfg.detect.checkpoint)
    sink.ensure_table(
        spark,
        cfg.path(cfg.detect.sink_table),
        RESULT_SCHEMA,
        sink.RESULT_TABLE_PROPERTIES,
    )
    queries.append(
        kafka_records(spark, cfg)
        .writeStream.queryName("spark-anomaly-intake")
        .foreachBatch(_intake_batch(cfg, model, None if aggregated else zcfg))
        .option("checkpointLocation", ckpt + "/intake")
        .trigger(**trigger)
        .start()
    )
    if aggregated and (zcfg is not None or stateful_specs):
        agg_table = cfg.path(cfg.detect.aggregation.table)
        if stateful_specs:
            sink.ensure_table(spark, agg_table, aggregation.AGGREGATED_SCHEMA, sink.STREAM_TABLE_PROPERTIES)
        no_data_batches(True)
        queries.append(
            aggregated_stream(spark, cfg)
            .writeStream.queryName("spark-anomaly-aggregate")
            .outputMode("append")
            .foreachBatch(_aggregate_batch(cfg, model, zcfg, to_table=bool(stateful_specs)))
            .option("checkpointLocation", ckpt + "/aggregate")
            .trigger(**trigger)
            .start()
        )
    if stateful_specs:
        from . import stateful

        no_data_batches(False)
        if aggregated:
            if available_now:
                # availableNow reads what the table holds when it starts: the windows first.
                try:
                    queries[-1].awaitTermination()
                except Exception:
                    for q in queries:
                        q.stop()
                    raise
            readings = spark.readStream.format("delta").load(agg_table)
            queries.append(
                stateful.start_readings_query(
                    spark, cfg, stateful_specs, readings, trigger, checkpoint="stateful-aggregated"
                )
            )
        else:
            queries.append(
                stateful.start_query(spark, cfg, stateful_specs, stateful_stream(spark, cfg), trigger)
            )
