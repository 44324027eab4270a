"""Cost against events (issue 5, "cost linear in events"): the detect job's zscore path over the
last N events of one topic, for growing N, each run on fresh tables in the job's own batches.

A path whose cost grew with what it had already done (the sink's log and files, the streaming
checkpoint, a cache) would show it twice: CPU per event rising with N, and batch times rising
within the longest run. Both are recorded; ``bench_report`` fits CPU-s = fixed + per event × N.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from . import kafka_admin
from .benchmark import Result, produce, run_detect_zscore, timed_stream
from .config import AppConfig


def tail_offsets(ends: dict[int, int], topic: str, events: int) -> tuple[str, int]:
    """``startingOffsets`` (Spark's JSON) that leave about the last ``events`` records of the topic,
    split evenly over its partitions, and their exact number."""
    per = events // len(ends)
    starts = {p: max(0, end - per) for p, end in ends.items()}
    offsets = json.dumps({topic: {str(p): starts[p] for p in sorted(starts)}})
    return offsets, sum(ends[p] - starts[p] for p in ends)


def data_batches(queries: list) -> list:
    """The progress of each micro-batch that read records, in order."""
    return [p for q in queries for p in q.recentProgress if p["numInputRows"]]


def batch_durations(queries: list) -> list[int]:
    """``triggerExecution`` ms of each micro-batch that read records, in order."""
    return [int(p["durationMs"]["triggerExecution"]) for p in data_batches(queries)]


def run(
    spark,
    cfg_for: Callable[[str, str], AppConfig],
    bootstrap: str,
    sizes: Sequence[int],
    batch_events: int,
    topic: str = "bench-linear",
) -> dict[str, Result]:
    """One topic of ``max(sizes)`` events; then, smallest first, the detect job (every scored reading
    to Delta) over the last N of them. ``cfg_for(run, topic)`` gives each run its own tables."""
    produce(bootstrap, topic, max(sizes))
    ends = kafka_admin.topic_end_offsets(bootstrap, topic)
    out: dict[str, Result] = {}
    for n in sorted(sizes):
        cfg = cfg_for(f"linear-{n}", topic)
        cfg.kafka.starting_offsets, events = tail_offsets(ends, topic, n)
        cfg.kafka.max_offsets_per_trigger = batch_events
        queries: list = []

        def start(cfg: AppConfig = cfg, queries: list = queries) -> list:
            queries.extend(run_detect_zscore(spark, cfg))
            return queries

        r = timed_stream(f"zscore path → Delta over the last {events:,} events", events, start)
        sink_rows = spark.read.format("delta").load(cfg.path(cfg.detect.sink_table)).count()
        r.extra.update(batch_events=batch_events, batch_ms=batch_durations(queries), sink_rows=sink_rows)
        out[f"linear-{n}"] = r
    return out
