"""Pre-aggregation feeding a stateful detector on the real broker: Kafka -> windows -> Delta
(``detect.aggregation.table``) -> ema, with the window columns on the result rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spark_anomaly import replay, train
from spark_anomaly.config import DetectorSpec

from .helpers import config, new_topic, produce, read_table, reading, run_available_now, write_history

pytestmark = pytest.mark.integration

B = 1_800_000_000_000  # a minute boundary
MIN = 60_000
EMA = DetectorSpec("ema", {"window": 3, "warmup_windows": 1})
SETTINGS = [
    "detect.detectors=[{name: zscore, params: {k: 4.0}}, {name: ema, params: {window: 3, warmup_windows: 1}}]",
    "detect.aggregation.window=1 minute",
    "detect.aggregation.function=avg",
    "detect.aggregation.watermark=1 minute",
]


def _minute(m: int, temp: float) -> list[tuple[str, str]]:
    """Two readings of s0 in minute ``m``: temp avg ``temp``, hum avg ``40 + m % 2``."""
    return [
        ("s0", reading("s0", B + m * MIN, temp - 1, 39 + m % 2)),
        ("s0", reading("s0", B + m * MIN + 30_000, temp + 1, 41 + m % 2)),
    ]


def _expected(minutes: dict[int, float]) -> list[tuple]:
    rows = []
    for m, temp in minutes.items():
        w = B + m * MIN
        rows += [
            ("s0", "temp", w, temp, w, w + MIN, "avg"),
            ("s0", "hum", w, 40.0 + m % 2, w, w + MIN, "avg"),
        ]
    return sorted(rows)


def _key(df: pd.DataFrame) -> list[tuple]:
    cols = ["sensor_id", "metric", "ts", "value", "window_start", "window_end", "agg_function"]
    return sorted(tuple(r) for r in df[cols].itertuples(index=False))


def test_stateful_detector_scores_the_aggregates_with_window_columns_across_restart(
    spark, kafka_bootstrap, tmp_path
):
    topic = new_topic(kafka_bootstrap)
    cfg, _ = config(tmp_path, kafka_bootstrap, topic, *SETTINGS, f"detect.aggregation.table={tmp_path}/agg")
    write_history(tmp_path / "history", sensors=1, count=200)
    train.run(spark, cfg, "full")
    temps = {m: 20.0 + (m % 3) for m in range(12)} | {9: 60.0}  # a spike in minute 9
    produce(kafka_bootstrap, topic, [r for m in temps for r in _minute(m, temps[m])])
    produce(kafka_bootstrap, topic, [("s0", reading("s0", B + 20 * MIN, 20, 40))])  # watermark B + 19 min
    run_available_now(spark, cfg)

    got = pd.DataFrame([r.asDict() for r in read_table(spark, tmp_path / "scored")])
    ema = got[got.detector == "ema"]
    assert _key(ema) == _expected(temps)  # one row per series per closed window, value = the avg
    assert _key(got[got.detector == "zscore"]) == _expected(temps)
    assert set(ema["source_partition"]) == {-1}
    assert (ema["source_offset"] == ema["window_start"]).all()
    assert B + 9 * MIN in set(ema.loc[ema.is_anomaly & (ema.metric == "temp"), "ts"])  # the spike
    agg = read_table(spark, tmp_path / "agg")
    assert len(agg) == 24 and {r.agg_function for r in agg} == {"avg"}

    # Restart on the same checkpoints: minute 20 closes, ema continues from its checkpointed state
    # (equal to a replay over all windows), and no window is scored or stored twice.
    produce(kafka_bootstrap, topic, [("s0", reading("s0", B + 30 * MIN, 20, 40))])
    run_available_now(spark, cfg)
    got = pd.DataFrame([r.asDict() for r in read_table(spark, tmp_path / "scored")])
    ema = got[got.detector == "ema"]
    assert _key(ema) == _expected(temps | {20: 20.0})
    assert len(read_table(spark, tmp_path / "agg")) == 26
    readings = ema[["sensor_id", "metric", "ts", "value", "source_partition", "source_offset"]]
    want = replay.replay_pandas(readings, [EMA])
    merged = ema.merge(want, on=["sensor_id", "metric", "ts"], suffixes=("", "_replay"))
    assert len(merged) == len(ema) == 26
    for col in ("score", "lower", "upper"):
        np.testing.assert_array_equal(merged[col].to_numpy(float), merged[f"{col}_replay"].to_numpy(float))
    assert (merged["is_anomaly"] == merged["is_anomaly_replay"]).all()
