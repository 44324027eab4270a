"""Offsets and counts of the cost-against-events and series-held runs; the scale rows' broadcast metrics."""

import json

from pyspark.sql import functions as F

from spark_anomaly import bench_held, bench_linear, bench_stream


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


def test_batch_ranges_read_each_batch_s_offsets_per_partition():
    class Q:
        recentProgress = [
            {"numInputRows": 0, "sources": [{"startOffset": None, "endOffset": {"t": {"0": 0, "1": 0}}}]},
            {"numInputRows": 30, "sources": [{"startOffset": None, "endOffset": {"t": {"0": 10, "1": 20}}}]},
            {"numInputRows": 5, "sources": [{"startOffset": json.dumps({"t": {"0": 10, "1": 20}}), "endOffset": json.dumps({"t": {"0": 15, "1": 20}})}]},
        ]  # fmt: skip

    assert bench_held.batch_ranges([Q()]) == [{0: (0, 10), 1: (0, 20)}, {0: (10, 15), 1: (20, 20)}]


def test_held_before_counts_a_series_from_the_batch_that_first_wrote_it(spark):
    # series a (partition 0) first in batch 0, b (partition 1) first in batch 1 though seen again
    # in batch 2, c only in batch 2, from a later offset of partition 0
    rows = [("a", "t", 0, 3), ("a", "t", 0, 12), ("b", "t", 1, 25), ("b", "t", 1, 31), ("c", "h", 0, 14)]
    sink = spark.createDataFrame(
        rows, "sensor_id string, metric string, source_partition int, source_offset long"
    )
    ranges = [{0: (0, 10), 1: (0, 20)}, {0: (10, 13), 1: (20, 30)}, {0: (13, 20), 1: (30, 40)}]
    assert bench_held.held_before(spark, sink, ranges) == [0, 1, 2, 3]
