"""Stateful detectors in the detect job on the real broker: tagged rows, streaming == replay,
and a restart from the checkpoint continues the same scores."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from spark_anomaly import replay
from spark_anomaly.config import DetectorSpec

from .helpers import config, new_topic, produce, read_table, reading, run_available_now

pytestmark = pytest.mark.integration

DETECTORS = "detect.detectors=[{name: ema, params: {}}, {name: robust, params: {window: 20}}]"


def _records(start: int, count: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(start)
    out = []
    for i in range(start, start + count):
        sid = f"s{i % 3}"
        temp = 20 + math.sin(i / 15) + rng.normal(0, 0.2) + (12 if i == start + count - 7 else 0)
        out.append((sid, reading(sid, 1_000 * i, temp, 40 + rng.normal(0, 1))))
    return out


def test_two_stateful_detectors_tagged_and_equal_to_replay_across_restart(spark, kafka_bootstrap, tmp_path):
    topic = new_topic(kafka_bootstrap)
    cfg, _ = config(tmp_path, kafka_bootstrap, topic, DETECTORS)
    produce(kafka_bootstrap, topic, _records(0, 450))
    run_available_now(spark, cfg)  # first run: state is built and checkpointed
    produce(kafka_bootstrap, topic, _records(450, 450))
    run_available_now(spark, cfg)  # a restart: state is restored from the checkpoint

    got = pd.DataFrame([r.asDict() for r in read_table(spark, tmp_path / "scored")])
    assert set(got["detector"]) == {"ema", "robust"}
    assert got.groupby("detector").size().to_dict() == {"ema": 1800, "robust": 1800}
    assert not got.duplicated(["detector", "source_partition", "source_offset", "metric"]).any()

    readings = got[got.detector == "ema"][
        ["sensor_id", "metric", "ts", "value", "source_partition", "source_offset"]
    ]
    want = replay.replay_pandas(readings, [DetectorSpec("ema", {}), DetectorSpec("robust", {"window": 20})])
    key = ["detector", "sensor_id", "metric", "ts"]
    merged = got.merge(want, on=key, suffixes=("", "_replay"))
    assert len(merged) == len(got)
    for col in ("score", "lower", "upper", "probability"):
        np.testing.assert_array_equal(merged[col].to_numpy(float), merged[f"{col}_replay"].to_numpy(float))
    assert (merged["is_anomaly"] == merged["is_anomaly_replay"]).all()
    assert (merged["reason"] == merged["reason_replay"]).all()
    # the robust detector's window (20) fills early, so the late spike is caught by it
    spikes = got[(got.detector == "robust") & got.is_anomaly & (got.metric == "temp")]
    assert 1_000 * (900 - 7) in set(spikes["ts"])
