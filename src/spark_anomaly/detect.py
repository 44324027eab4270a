"""The detect job's logic: Kafka -> parse -> score -> Delta, exactly once.

Two kinds of detector run side by side, each its own streaming query over the same topic:
- the *stateless* path (zscore against the latest trained model) and the dead-letter table, in
  one ``foreachBatch`` query: parse once, write rejects and scored rows idempotently;
- the *stateful* detectors (normal, ema, robust, kmeans, cad, ...) per series with Spark-managed
  state (``spark_anomaly.stateful``), appending to the same sink table.
Both append to Delta with (app id, batch id) transactions, so a replayed batch is skipped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from . import kafka_source, parsing, sink
from .config import AppConfig, ConfigError
from .detectors import registry, zscore
from .latest_model import LatestModel
from .results import conform
from .scoring import zscore_columns

log = logging.getLogger(__name__)

STATELESS = ("zscore",)


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
    if cfg.detect.aggregation.window:
        raise ConfigError("detect.aggregation.window: pre-aggregation is not implemented yet; leave it null")
    for i, spec in enumerate(cfg.detect.detectors):
        try:
            registry.make_config(spec.name, spec.params)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"detect.detectors[{i}] ({spec.name}): {exc}") from None


def parsed_stream(spark: SparkSession, cfg: AppConfig) -> DataFrame:
    return parsing.parse(parsing.from_kafka(kafka_source.read_stream(spark, cfg.kafka)), cfg.input)


def score_stateless(
    readings: DataFrame, model: DataFrame, version: int | None, cfg: zscore.ZScoreConfig
) -> DataFrame:
    """Join readings with the (broadcast) model and apply zscore."""
    joined = readings.join(F.broadcast(model), ["sensor_id", "metric"], "left")
    return conform(
        joined.select(
            *parsing.READING_COLUMNS,
            *parsing.LINEAGE_COLUMNS,
            F.lit("zscore").alias("detector"),
            F.lit(version).cast("long").alias("model_version"),
            *zscore_columns(cfg),
        )
    )


def _intake_batch(spark: SparkSession, cfg: AppConfig, model: LatestModel, zcfg: zscore.ZScoreConfig | None):
    sink_table, dead_table = cfg.path(cfg.detect.sink_table), cfg.path(cfg.detect.dead_letter_table)
    ckpt = cfg.path(cfg.detect.checkpoint) + "/intake"
    sink_app, dead_app = sink.app_id(ckpt, sink_table), sink.app_id(ckpt, dead_table)

    def process(batch: DataFrame, batch_id: int) -> None:
        parsed = batch.persist()
        try:
            dead = parsing.dead_letters(parsed)
            if not dead.isEmpty():
                sink.append_once(dead, dead_table, dead_app, batch_id)
            if zcfg is not None:
                version, frame = model.get()
                out = score_stateless(parsing.readings(parsed, cfg.input), frame, version, zcfg)
                if cfg.detect.output == "anomalies":
                    out = out.where("is_anomaly")
                sink.append_once(out, sink_table, sink_app, batch_id)
        finally:
            parsed.unpersist()

    return process


def start(spark: SparkSession, cfg: AppConfig, available_now: bool = False) -> DetectQueries:
    """Start the detect job's streaming queries; the caller awaits or stops them."""
    validate(cfg)
    if available_now:
        # A processing-time state timeout makes Spark ask for empty batches forever, so an
        # availableNow query with stateful detectors would never end; catching up needs none.
        spark.conf.set("spark.sql.streaming.noDataMicroBatches.enabled", "false")
    specs = cfg.detect.detectors
    z_specs = [s for s in specs if s.name in STATELESS]
    zcfg = registry.make_config("zscore", z_specs[0].params) if z_specs else None
    trigger = (
        {"availableNow": True}
        if available_now
        else {"processingTime": f"{cfg.detect.trigger_seconds} seconds"}
    )
    ckpt = cfg.path(cfg.detect.checkpoint)
    model = LatestModel(spark, cfg.path(cfg.model.table), cfg.model.refresh_seconds)
    queries = [
        parsed_stream(spark, cfg)
        .writeStream.queryName("spark-anomaly-intake")
        .foreachBatch(_intake_batch(spark, cfg, model, zcfg))
        .option("checkpointLocation", ckpt + "/intake")
        .trigger(**trigger)
        .start()
    ]
    stateful_specs = [s for s in specs if s.name not in STATELESS]
    if stateful_specs:
        from . import stateful

        queries.append(stateful.start_query(spark, cfg, stateful_specs, parsed_stream(spark, cfg), trigger))
    return DetectQueries(queries)
