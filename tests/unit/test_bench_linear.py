"""The cost-against-events benchmark's offsets, and the broadcast metrics the scale rows read."""

import json

from pyspark.sql import functions as F

from spark_anomaly import bench_linear, bench_stream


def test_tail_offsets_leave_the_last_events_split_over_partitions():
    offsets, events = bench_linear.tail_offsets({0: 1_000, 1: 1_200}, "t", 400)
    assert json.loads(offsets) == {"t": {"0": 800, "1": 1_000}} and events == 400
    # more than a partition holds: from its start, and the count says what is really there
    offsets, events = bench_linear.tail_offsets({0: 100, 1: 1_200}, "t", 400)
    assert json.loads(offsets) == {"t": {"0": 0, "1": 1_000}} and events == 300


def test_broadcast_metrics_report_the_model_side_of_the_join(spark):
    model = spark.range(5_000).select(F.col("id").alias("k"), (F.col("id") * 2).alias("v")).cache()
    batch = spark.range(0, 20_000, 7, numPartitions=2).select((F.col("id") % 6_000).alias("k"))
    metrics = bench_stream.broadcast_metrics(batch.join(F.broadcast(model), "k", "left"))
    assert metrics["numOutputRows"] == 5_000  # the broadcast side, not the batch
    assert metrics["dataSize"] >= 5_000 * 16  # at least the two longs of every row
    assert {"collectTime", "buildTime", "broadcastTime"} <= metrics.keys()
    model.unpersist()
