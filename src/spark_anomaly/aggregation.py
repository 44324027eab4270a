"""Event-time pre-aggregation (``detect.aggregation``): readings -> one row per series per window.

Seed 002 aggregates a stream over a window before detection (``agg_function``,
``agg_window_millis``). Here: tumbling windows of ``window`` on the reading's event time ``ts``
(aligned to the epoch, UTC), the ``function`` of the values in each window, and a watermark of
``watermark`` behind the largest event time seen. In append mode Spark emits a window once the
watermark passes its end, exactly once; readings older than the watermark when they arrive are
*dropped by Spark* (not dead-lettered: the state of their window is already gone).

The output has the readings' shape, so the detectors take it as they take raw readings:
- ``ts`` = ``window_start`` (the window's label; keeps each series in event-time order);
- ``value`` = the aggregate (``count`` as a double);
- ``window_start``/``window_end`` (epoch ms, end exclusive) and ``agg_function`` for the result rows;
- no single source record: ``source_partition`` = -1 and ``source_offset`` = ``window_start``, so
  ordering a series by (partition, offset), as the stateful detectors do, is event-time order.
"""

from __future__ import annotations

import re

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from .config import AGG_FUNCTIONS, AggregationConfig, ConfigError

PERCENTILES = {"p50": 0.5, "p75": 0.75, "p95": 0.95, "p99": 0.99}
AGGREGATED_COLUMNS = ["window_start", "window_end", "agg_function"]
# The rows ``aggregate`` emits, as stored in ``detect.aggregation.table`` for the stateful detectors.
AGGREGATED_SCHEMA = T.StructType(
    [
        T.StructField("sensor_id", T.StringType()),
        T.StructField("metric", T.StringType()),
        T.StructField("ts", T.LongType()),
        T.StructField("value", T.DoubleType()),
        T.StructField("source_partition", T.IntegerType()),
        T.StructField("source_offset", T.LongType()),
        T.StructField("window_start", T.LongType()),
        T.StructField("window_end", T.LongType()),
        T.StructField("agg_function", T.StringType()),
    ]
)
_DURATION = re.compile(
    r"\s*[0-9]+\s*(milliseconds?|ms|seconds?|s|minutes?|min|hours?|h|days?|d|weeks?)\s*", re.IGNORECASE
)


def validate(agg: AggregationConfig) -> None:
    """Fail at start on a window or watermark Spark would reject mid-stream."""
    if agg.function not in AGG_FUNCTIONS:
        raise ConfigError(f"detect.aggregation.function must be one of {', '.join(AGG_FUNCTIONS)}")
    for key in ("window", "watermark"):
        text = getattr(agg, key)
        if not text or not _DURATION.fullmatch(text) or int(re.match(r"\s*([0-9]+)", text).group(1)) == 0:
            raise ConfigError(
                f"detect.aggregation.{key} must be a positive duration like '1 minute', got {text!r}"
            )


def aggregate_column(function: str, value: Column) -> Column:
    """The aggregate; percentiles are exact (linearly interpolated, like numpy/pandas' default)."""
    if function in PERCENTILES:
        return F.percentile(value, F.lit(PERCENTILES[function]))
    if function == "count":
        return F.count(value).cast("double")
    return {"avg": F.avg, "sum": F.sum, "min": F.min, "max": F.max}[function](value)


def aggregate(readings: DataFrame, agg: AggregationConfig) -> DataFrame:
    """Readings (sensor_id, metric, ts, value, ...) -> aggregated readings + window columns.

    Works on static frames too (the watermark is then a no-op), which is how the tests check it.
    """
    validate(agg)
    events = readings.withColumn("_event_time", F.timestamp_millis(F.col("ts")))
    if readings.isStreaming:
        events = events.withWatermark("_event_time", agg.watermark)
    grouped = events.groupBy(F.window("_event_time", agg.window).alias("_w"), "sensor_id", "metric").agg(
        aggregate_column(agg.function, F.col("value")).cast("double").alias("value")
    )
    start = F.unix_millis(F.col("_w.start"))
    return grouped.select(
        "sensor_id",
        "metric",
        start.alias("ts"),
        "value",
        F.lit(-1).cast("int").alias("source_partition"),
        start.alias("source_offset"),
        start.alias("window_start"),
        F.unix_millis(F.col("_w.end")).alias("window_end"),
        F.lit(agg.function).alias("agg_function"),
    )
