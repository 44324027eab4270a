"""Stateful detectors in the stream: ``applyInPandasWithState`` per series.

Chosen over ``transformWithStateInPandas`` by measurement on two cores (about 220k rows/s
against roughly 2.5x slower). Each (sensor_id, metric) group keeps one state row: the pickled
states of all configured detectors. Series that stop reporting expire after
``detect.state_timeout`` (processing-time timeout), which bounds state size.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.streaming.state import GroupState, GroupStateTimeout

from . import model_store, parsing, sink
from .config import AppConfig, ConfigError, DetectorSpec
from .detectors import SeriesPrior, registry
from .results import RESULT_FIELDS, RESULT_SCHEMA
from .series_runner import BoundDetector, bind, dump_state, load_state, run_series

STATE_SCHEMA = "blob binary"
_UNITS = {"ms": 1, "millisecond": 1, "s": 1000, "second": 1000, "sec": 1000, "m": 60_000, "min": 60_000,
          "minute": 60_000, "h": 3_600_000, "hour": 3_600_000, "d": 86_400_000, "day": 86_400_000}


def duration_ms(text: str) -> int:
    """'90 seconds', '1 hour', '15min' -> milliseconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+?)s?\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise ConfigError(f"cannot read duration {text!r} (try '30 minutes', '1 hour')")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def needs_prior(detectors: list[BoundDetector]) -> bool:
    return any(getattr(registry.detector_class(d.name), "uses_prior", False) for d in detectors)


def _prior(pdf: pd.DataFrame) -> SeriesPrior | None:
    if "n" not in pdf.columns or pd.isna(pdf["n"].iloc[0]):
        return None
    r = pdf.iloc[0]
    return SeriesPrior(int(r["n"]), float(r["mean"]), float(r["m2"]), float(r["min"]), float(r["max"]),
                       None if pd.isna(r["model_version"]) else int(r["model_version"]))


def make_state_fn(detectors: list[BoundDetector], timeout_ms: int):
    """The function Spark calls per series per micro-batch."""

    def fn(key: tuple, pdfs: Iterator[pd.DataFrame], state: GroupState) -> Iterator[pd.DataFrame]:
        if state.hasTimedOut:
            state.remove()
            return
        pdf = pd.concat(list(pdfs), ignore_index=True)
        if pdf.empty:
            return
        pdf = pdf.sort_values(["source_partition", "source_offset"], kind="stable", ignore_index=True)
        prior = _prior(pdf)
        saved = load_state(state.get[0]) if state.exists else None
        results, new_state = run_series(detectors, pdf["value"].to_numpy(float), pdf["ts"].to_numpy("int64"),
                                        saved, prior)
        state.update((dump_state(new_state),))
        state.setTimeoutDuration(timeout_ms)
        version = prior.model_version if prior else None
        for tag, frame in results:
            out = frame.copy()
            for c in ("sensor_id", "metric", "ts", "value", "source_partition", "source_offset"):
                out[c] = pdf[c].to_numpy()
            out["detector"] = tag
            out["model_version"] = version
            for c in RESULT_FIELDS:
                if c not in out.columns:
                    out[c] = None
            yield out[RESULT_FIELDS]

    return fn


def with_latest_model(spark: SparkSession, readings: DataFrame, table: str) -> DataFrame:
    """Stream-static join with the newest model version (Delta re-reads it every micro-batch)."""
    if not model_store.table_exists(spark, table):
        return readings.select("*", *[F.lit(None).cast(t).alias(c) for c, t in
                                      [("n", "long"), ("mean", "double"), ("m2", "double"), ("min", "double"),
                                       ("max", "double"), ("model_version", "long")]])
    model = spark.read.format("delta").load(table)
    # A join, not a literal: the static side is re-planned per micro-batch, so a new version
    # that lands while the query runs is used from the next batch on.
    latest = model.join(model.agg(F.max("version").alias("version")), "version")
    stats = latest.select("sensor_id", "metric", "n", "mean", "m2", "min", "max",
                          F.col("version").alias("model_version"))
    return readings.join(F.broadcast(stats), ["sensor_id", "metric"], "left")


def apply_detectors(readings: DataFrame, detectors: list[BoundDetector], timeout_ms: int) -> DataFrame:
    return readings.groupBy("sensor_id", "metric").applyInPandasWithState(
        make_state_fn(detectors, timeout_ms),
        outputStructType=RESULT_SCHEMA,
        stateStructType=STATE_SCHEMA,
        outputMode="append",
        timeoutConf=GroupStateTimeout.ProcessingTimeTimeout,
    )


def start_query(
    spark: SparkSession, cfg: AppConfig, specs: list[DetectorSpec], parsed: DataFrame, trigger: dict
) -> StreamingQuery:
    detectors = bind(specs)
    readings = parsing.readings(parsed, cfg.input)
    if needs_prior(detectors):
        readings = with_latest_model(spark, readings, cfg.path(cfg.model.table))
    scored = apply_detectors(readings, detectors, duration_ms(cfg.detect.state_timeout))
    sink_table = cfg.path(cfg.detect.sink_table)
    ckpt = cfg.path(cfg.detect.checkpoint) + "/stateful"
    app = sink.app_id(ckpt, sink_table)
    only_anomalies = cfg.detect.output == "anomalies"

    def write(batch: DataFrame, batch_id: int) -> None:
        out = batch.where("is_anomaly") if only_anomalies else batch
        sink.append_once(out, sink_table, app, batch_id)

    return (
        scored.writeStream.queryName("spark-anomaly-stateful")
        .foreachBatch(write)
        .option("checkpointLocation", ckpt)
        .trigger(**trigger)
        .start()
    )
