"""Stateful detectors in the stream: ``applyInPandasWithState`` per series.

``applyInPandasWithState`` rather than ``transformWithStateInPandas``: the latter was reported
about 2.5x slower on this class of machine (not re-measured here). The cost is a fixed amount
per series per micro-batch, so throughput grows with readings per series per batch. Each (sensor_id, metric) group keeps one state row: the pickled
states of all configured detectors. Series that stop reporting expire after
``detect.state_timeout`` (processing-time timeout), which bounds state size.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.streaming.state import GroupState, GroupStateTimeout

from . import model_store, parsing, sink
from .config import AppConfig, ConfigError, DetectorSpec
from .detectors import RESULT_COLUMNS, SeriesPrior, registry
from .results import RESULT_FIELDS, RESULT_SCHEMA
from .series_runner import BoundDetector, bind, dump_state, load_state, run_series

STATE_SCHEMA = "blob binary"
_UNSET = ("window_start", "window_end", "agg_function")  # set only by pre-aggregation
_UNITS = {
    "ms": 1,
    "millisecond": 1,
    "s": 1000,
    "second": 1000,
    "sec": 1000,
    "m": 60_000,
    "min": 60_000,
    "minute": 60_000,
    "h": 3_600_000,
    "hour": 3_600_000,
    "d": 86_400_000,
    "day": 86_400_000,
}


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
    return SeriesPrior(
        int(r["n"]),
        float(r["mean"]),
        float(r["m2"]),
        float(r["min"]),
        float(r["max"]),
        None if pd.isna(r["model_version"]) else int(r["model_version"]),
    )


def make_state_fn(detectors: list[BoundDetector], timeout_ms: int):
    """The function Spark calls per series per micro-batch.

    With many series a batch holds only a few readings of each, so the fixed cost per group
    dominates: the output is built once from numpy arrays (no per-column pandas inserts), and
    rows are re-sorted only when they did not arrive in offset order.
    """
    n_det = len(detectors)
    tags = [d.tag for d in detectors]

    def fn(key: tuple, pdfs: Iterator[pd.DataFrame], state: GroupState) -> Iterator[pd.DataFrame]:
        if state.hasTimedOut:
            state.remove()
            return
        parts = list(pdfs)
        pdf = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
        if pdf.empty:
            return
        part = pdf["source_partition"].to_numpy()
        off = pdf["source_offset"].to_numpy()
        if len(off) > 1 and not (np.all(part[1:] == part[:-1]) and np.all(off[1:] >= off[:-1])):
            order = np.lexsort((off, part))
            pdf = pdf.iloc[order]
            part, off = part[order], off[order]
        values, ts = pdf["value"].to_numpy(float), pdf["ts"].to_numpy("int64")
        prior = _prior(pdf)
        saved = load_state(state.get[0]) if state.exists else None
        results, new_state = run_series(detectors, values, ts, saved, prior)
        state.update((dump_state(new_state),))
        state.setTimeoutDuration(timeout_ms)
        n = len(values)
        out = {
            "sensor_id": np.full(n * n_det, key[0], dtype=object),
            "metric": np.full(n * n_det, key[1], dtype=object),
            "ts": np.tile(ts, n_det),
            "value": np.tile(values, n_det),
            "detector": np.repeat(np.array(tags, dtype=object), n),
            "model_version": np.full(n * n_det, prior.model_version if prior else None, dtype=object),
        }
        for c in RESULT_COLUMNS:
            out[c] = np.concatenate([frame[c].to_numpy() for _, frame in results])
        out["source_partition"] = np.tile(part, n_det)
        out["source_offset"] = np.tile(off, n_det)
        for c in _UNSET:
            out[c] = np.full(n * n_det, None, dtype=object)
        yield pd.DataFrame(out, columns=RESULT_FIELDS)

    return fn


def with_latest_model(spark: SparkSession, readings: DataFrame, table: str) -> DataFrame:
    """Stream-static join with the newest model version (Delta re-reads it every micro-batch)."""
    if not model_store.table_exists(spark, table):
        nulls = [
            F.lit(None).cast(f.dataType).alias(f.name)
            for f in model_store.PRIOR_SCHEMA.fields
            if f.name in model_store.PRIOR_COLUMNS
        ]
        return readings.select("*", *nulls, F.lit(None).cast("long").alias("model_version"))
    model = spark.read.format("delta").load(table)
    # A join, not a literal: the static side is re-planned per micro-batch, so a new version
    # that lands while the query runs is used from the next batch on.
    latest = model.join(model.agg(F.max("version").alias("version")), "version")
    stats = latest.select(
        "sensor_id", "metric", *model_store.PRIOR_COLUMNS, F.col("version").alias("model_version")
    )
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
