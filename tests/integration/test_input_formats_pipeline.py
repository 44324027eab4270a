"""OpenMetrics records -> detect -> Delta on the real broker, with and without pre-aggregation."""

from __future__ import annotations

import os

import pytest
from confluent_kafka import Producer

from spark_anomaly import train

from .helpers import config, new_topic, read_table, run_available_now

pytestmark = pytest.mark.integration

OM = ["input.format=openmetrics"]


def write_om_history(path, series: list[str], count: int, start_ts: int = 0) -> None:
    """Steady OpenMetrics history: each series alternates 19, 21 (mean 20, std ~1)."""
    os.makedirs(path, exist_ok=True)
    with open(path / "h.prom", "w") as fh:
        for i in range(count):
            for s in series:
                fh.write(f"{s} {20 + (1 if i % 2 else -1)} {start_ts + i * 1000}\n")


def produce_at(bootstrap: str, topic: str, records: list[tuple[str, int]]) -> None:
    """Records with explicit Kafka timestamps (the fallback event time of lines without one)."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for value, kafka_ts in records:
        p.produce(topic, value=value.encode(), timestamp=kafka_ts)
    assert p.flush(30) == 0


def test_openmetrics_exact_rows_and_dead_letters(spark, kafka_bootstrap, tmp_path):
    topic = new_topic(kafka_bootstrap, partitions=1)
    cfg, _ = config(tmp_path, kafka_bootstrap, topic, *OM)
    write_om_history(tmp_path / "history", ['temp{room="a"}', 'temp{site="x,y",room="b"}'], count=200)
    version = train.run(spark, cfg, "full").version
    record = "\n".join(
        [
            "# HELP temp Room temperature.",
            "# TYPE temp gauge",
            'temp{room="a"} 20.5 1000000',
            'temp{room="b",site="x,y",} 35 1000001',  # a spike (15 sigma); labels in another order
            'temp{room="a" 1',
            "# EOF",
        ]
    )
    produce_at(
        kafka_bootstrap,
        topic,
        [
            (record, 5),
            ('temp{room="a"} 19.5', 1_000_003),  # no timestamp: the record's
            ('temp{room="c"} NaN 7', 6),
            ("other_metric 1 1000002", 7),  # a series the model lacks
        ],
    )
    run_available_now(spark, cfg)

    rows = read_table(spark, tmp_path / "scored")
    got = sorted((r.sensor_id, r.metric, r.ts, r.value, r.is_anomaly, r.source_offset) for r in rows)
    assert got == [
        ("other_metric", "value", 1_000_002, 1.0, False, 3),
        ('temp{room="a"}', "value", 1_000_000, 20.5, False, 0),
        ('temp{room="a"}', "value", 1_000_003, 19.5, False, 1),
        ('temp{room="b",site="x,y"}', "value", 1_000_001, 35.0, True, 0),
    ]
    assert {r.model_version for r in rows} == {version}
    assert [r.reason for r in rows if r.sensor_id == "other_metric"] == ["unknown source"]
    assert all(r.window_start is None and r.agg_function is None for r in rows)
    dead = sorted((d.raw, d.reason, d.offset, d.topic) for d in read_table(spark, tmp_path / "dead"))
    assert dead == [
        ('temp{room="a" 1', "malformed label set", 0, topic),
        ('temp{room="c"} NaN 7', "value is NaN", 2, topic),
    ]


def key(r) -> tuple:
    return (r.sensor_id, r.metric, r.ts, r.value, r.window_start, r.window_end, r.agg_function, r.is_anomaly)


B = 1_800_000_000_000  # a minute boundary
MIN = 60_000


def test_aggregated_windows_land_with_window_columns_and_late_data_is_dropped(
    spark, kafka_bootstrap, tmp_path
):
    topic = new_topic(kafka_bootstrap)
    agg = [
        "detect.aggregation.window=1 minute",
        "detect.aggregation.function=avg",
        "detect.aggregation.watermark=1 minute",
    ]
    cfg, _ = config(tmp_path, kafka_bootstrap, topic, *OM, *agg)
    write_om_history(tmp_path / "history", ['temp{room="a"}'], count=200)
    version = train.run(spark, cfg, "full").version
    a = 'temp{room="a"}'
    first = [
        f"{a} 20 {B}\n{a} 21 {B + 30_000}",
        f"{a} 22 {B + MIN - 1}",  # window end is exclusive: still the first window
        f"{a} 50 {B + MIN}\n{a} 52 {B + MIN + 30_000}",  # a shifted minute: avg 51
        "temp{room= 3",
        f"{a} 20 {B + 10 * MIN}",  # moves the watermark to B + 9 min: the first two windows close
    ]
    produce_at(kafka_bootstrap, topic, [(r, 1) for r in first])
    run_available_now(spark, cfg)
    rows = read_table(spark, tmp_path / "scored")
    expected = [
        (a, "value", B, 21.0, B, B + MIN, "avg", False),
        (a, "value", B + MIN, 51.0, B + MIN, B + 2 * MIN, "avg", True),
    ]
    assert sorted(map(key, rows)) == expected
    assert {(r.detector, r.model_version, r.source_partition) for r in rows} == {("zscore", version, -1)}
    assert [(d.raw, d.reason) for d in read_table(spark, tmp_path / "dead")] == [
        ("temp{room= 3", "malformed label set")
    ]

    # Restart on the same checkpoint: a reading behind the watermark is dropped (its window was
    # emitted already), a later one closes the B + 10 min window; nothing is written twice.
    produce_at(kafka_bootstrap, topic, [(f"{a} 99 {B + 5_000}", 1), (f"{a} 20 {B + 20 * MIN}", 1)])
    run_available_now(spark, cfg)
    rows = read_table(spark, tmp_path / "scored")
    assert sorted(map(key, rows)) == [
        *expected,
        (a, "value", B + 10 * MIN, 20.0, B + 10 * MIN, B + 11 * MIN, "avg", False),
    ]
