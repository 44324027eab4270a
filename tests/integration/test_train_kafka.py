"""The train job on a Kafka source: incremental by stored offsets equals a full retrain."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spark_anomaly import train

from ..model_checks import assert_same_moments, model_stats
from .helpers import config, new_topic, produce, reading

pytestmark = pytest.mark.integration


def _batch(start: int, count: int, seed: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    return [
        (
            f"s{i % 3}",
            reading(f"s{i % 3}", 1_000 * i, float(1e6 + rng.normal(0, 2)), float(rng.normal(40, 5))),
        )
        for i in range(start, start + count)
    ]


def test_kafka_incremental_reads_only_new_offsets_and_equals_full(spark, kafka_bootstrap, tmp_path):
    topic = new_topic(kafka_bootstrap)
    inc, _ = config(tmp_path / "inc", kafka_bootstrap, topic, "train.source_format=kafka")
    produce(kafka_bootstrap, topic, [*_batch(0, 200, seed=1), (None, "{not json")])
    first = train.run(spark, inc, "full")
    assert (first.series, first.rows_read, first.rows_rejected) == (6, 201, 1)
    assert sum(json.loads(first.source_offsets).values()) == 201
    produce(kafka_bootstrap, topic, _batch(200, 90, seed=2))
    second = train.run(spark, inc, "incremental")
    assert (second.rows_read, second.rows_rejected) == (90, 0)
    assert sum(json.loads(second.source_offsets).values()) == 291
    full, _ = config(tmp_path / "full", kafka_bootstrap, topic, "train.source_format=kafka")
    want = model_stats(spark, full, train.run(spark, full, "full").version)
    assert_same_moments(model_stats(spark, inc, second.version), want)


def test_kafka_incremental_reads_a_partition_the_previous_version_never_saw(spark, kafka_bootstrap, tmp_path):
    """Stored offsets name only the partitions that had records; the next run must still read the
    others, from their earliest offset (Spark refuses start offsets that omit a partition)."""
    topic = new_topic(kafka_bootstrap)  # two partitions
    inc, _ = config(tmp_path / "inc", kafka_bootstrap, topic, "train.source_format=kafka")
    produce(kafka_bootstrap, topic, _batch(0, 120, seed=3), partition=0)
    first = train.run(spark, inc, "full")
    assert json.loads(first.source_offsets) == {"0": 120}
    produce(kafka_bootstrap, topic, _batch(120, 50, seed=4), partition=1)
    produce(kafka_bootstrap, topic, _batch(170, 30, seed=5), partition=0)
    second = train.run(spark, inc, "incremental")
    assert (second.rows_read, second.rows_rejected) == (80, 0)
    assert json.loads(second.source_offsets) == {"0": 150, "1": 50}
    full, _ = config(tmp_path / "full", kafka_bootstrap, topic, "train.source_format=kafka")
    want = model_stats(spark, full, train.run(spark, full, "full").version)
    assert_same_moments(model_stats(spark, inc, second.version), want)
