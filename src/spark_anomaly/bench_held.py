"""Cost against series held (issue 5, "cost linear in events", the stateful half).

A stateful detector keeps its series in bucket rows (``bucket_state``); a micro-batch reads and
rewrites the row of every bucket it touches. If that cost followed the series *held* rather than
the events *read*, batches would slow down as a long-running job meets more series. This run
shows it: one detector over a topic of many sensors, in small batches, so the held series grow
from none to all of them during the run; each batch's time is then set against the series held
when it started (counted exactly from the sink: a series is held from the batch that first
wrote it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from . import kafka_admin, loadgen
from .bench_linear import batch_durations, data_batches
from .benchmark import Result, run_stateful, timed_stream
from .config import AppConfig


def _offsets(value: str | dict | None) -> dict[str, int]:
    """A Kafka source offset of one topic, ``{topic: {partition: offset}}`` (as JSON text in a
    progress object), as {partition: offset}; none for the first batch (from the earliest)."""
    if isinstance(value, str):
        value = json.loads(value)
    return next(iter(value.values())) if value else {}


def batch_ranges(queries: list) -> list[dict[int, tuple[int, int]]]:
    """Per micro-batch that read records: {partition: (start offset, end offset)} of its source."""
    out = []
    for p in data_batches(queries):
        start, end = (_offsets(p["sources"][0][k]) for k in ("startOffset", "endOffset"))
        out.append({int(part): (int(start.get(part, 0)), int(end[part])) for part in end})
    return out


def state_written(queries: list) -> list[int | None]:
    """Bytes of state each batch that read records wrote (RocksDB's count; None without it)."""
    return [
        (p["stateOperators"] or [{}])[0].get("customMetrics", {}).get("rocksdbTotalBytesWritten")
        for p in data_batches(queries)
    ]


def held_before(
    spark: SparkSession, sink: DataFrame, ranges: Sequence[dict[int, tuple[int, int]]]
) -> list[int]:
    """Series held before each batch (those whose first sink row came from an earlier batch), and
    after the last one as a final element."""
    bounds = spark.createDataFrame(
        [(i, part, lo, hi) for i, r in enumerate(ranges) for part, (lo, hi) in r.items()],
        "batch int, part int, lo long, hi long",
    )
    first = sink.groupBy("sensor_id", "metric", "source_partition").agg(F.min("source_offset").alias("o"))
    placed = first.join(
        F.broadcast(bounds),
        (first.source_partition == bounds.part) & (first.o >= bounds.lo) & (first.o < bounds.hi),
    )
    new = dict(
        placed.groupBy("sensor_id", "metric").agg(F.min("batch").alias("b")).groupBy("b").count().collect()
    )
    held, out = 0, []
    for i in range(len(ranges)):
        out.append(held)
        held += new.get(i, 0)
    return [*out, held]


def run(
    spark: SparkSession,
    cfg: AppConfig,
    bootstrap: str,
    detector: str,
    sensors: int,
    events: int,
    batch_events: int,
) -> Result:
    """``detector`` alone over ``events`` readings of ``sensors`` sensors (two metrics each) in
    batches of ``batch_events``, on fresh tables; batch times with the series held before each."""
    topic = cfg.kafka.topic
    kafka_admin.delete_topic(bootstrap, topic)
    kafka_admin.create_topic(bootstrap, topic, partitions=2)
    lcfg = loadgen.LoadConfig(seed=7, sensors=sensors, anomaly_rate=0.0)
    prod = loadgen.run_history(lcfg, lcfg.ticks_for(events), [loadgen.KafkaSink(bootstrap, topic)], None)
    cfg.kafka.starting_offsets = "earliest"
    cfg.kafka.max_offsets_per_trigger = batch_events
    queries: list = []

    def start() -> list:
        queries.extend(run_stateful(spark, cfg, detector))
        return queries

    r = timed_stream(
        f"detect stateful {detector} → Delta, {sensors:,} sensors",
        prod["records"],
        start,
        stop_after_input=True,
    )
    sink = spark.read.format("delta").load(cfg.path(cfg.detect.sink_table))
    ranges = batch_ranges(queries)
    r.extra.update(
        detector=detector,
        sensors=sensors,
        batch_events=batch_events,
        batch_ms=batch_durations(queries),
        batch_rows=[int(p["numInputRows"]) for p in data_batches(queries)],
        held=held_before(spark, sink, ranges),
        state_bytes=state_written(queries),
        sink_rows=sink.count(),
        state_buckets=cfg.detect.state_buckets,
    )
    return r
