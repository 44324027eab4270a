"""Windowed pre-aggregation on a static frame, against hand-computed aggregates."""

from __future__ import annotations

import pytest

from spark_anomaly import aggregation
from spark_anomaly.config import AggregationConfig, ConfigError

# Series (a, temp): window [0, 60000) holds 1, 2, 3, 10; window [60000, 120000) holds 5.
# Series (b, temp): window [0, 60000) holds -1. Window end is exclusive: 59_999 is in the first.
READINGS = [
    ("a", "temp", 0, 1.0),
    ("a", "temp", 10_000, 2.0),
    ("a", "temp", 30_000, 3.0),
    ("a", "temp", 59_999, 10.0),
    ("a", "temp", 60_000, 5.0),
    ("b", "temp", 5, -1.0),
]
# Percentiles interpolate linearly between order statistics: p75 of 1,2,3,10 is at rank 2.25 -> 3 + 0.25*7.
EXPECTED_A0 = {
    "avg": 4.0,
    "sum": 16.0,
    "count": 4.0,
    "min": 1.0,
    "max": 10.0,
    "p50": 2.5,
    "p75": 4.75,
    "p95": 8.95,
    "p99": 9.79,
}


def _readings(spark):
    return spark.createDataFrame(
        [(*r, 0, i) for i, r in enumerate(READINGS)],
        "sensor_id string, metric string, ts long, value double, source_partition int, source_offset long",
    )


@pytest.mark.parametrize("function", sorted(EXPECTED_A0))
def test_each_function_per_series_per_window(spark, function):
    agg = AggregationConfig(window="1 minute", function=function, watermark="10 seconds")
    rows = aggregation.aggregate(_readings(spark), agg).orderBy("sensor_id", "ts").collect()
    got = [
        (r.sensor_id, r.metric, r.ts, r.window_start, r.window_end, r.agg_function, r.source_offset)
        for r in rows
    ]
    assert got == [
        ("a", "temp", 0, 0, 60_000, function, 0),
        ("a", "temp", 60_000, 60_000, 120_000, function, 60_000),
        ("b", "temp", 0, 0, 60_000, function, 0),
    ]
    assert {r.source_partition for r in rows} == {-1}
    assert rows[0].value == pytest.approx(EXPECTED_A0[function])
    assert rows[1].value == pytest.approx(1.0 if function == "count" else 5.0)
    assert rows[2].value == pytest.approx(1.0 if function == "count" else -1.0)


@pytest.mark.parametrize(
    "window, watermark, function",
    [
        ("a minute", "1 minute", "avg"),
        ("0 seconds", "1 minute", "avg"),
        ("1 minute", None, "avg"),
        ("1 minute", "1 minute", "median"),
    ],
)
def test_bad_settings_are_config_errors(window, watermark, function):
    with pytest.raises(ConfigError, match="detect.aggregation"):
        aggregation.validate(AggregationConfig(window=window, function=function, watermark=watermark))
