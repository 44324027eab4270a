"""Stateful detectors in the detect job on the real broker: tagged rows, streaming == replay,
and a restart from the checkpoint continues the same scores."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from spark_anomaly import detect, model_store, replay, stateful, train
from spark_anomaly.config import REPO_ROOT, DetectorSpec
from spark_anomaly.detectors import SeriesPrior

from .helpers import config, new_topic, produce, read_table, reading, run_available_now, write_history

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
    # The stateful query's own cap is below the Kafka one, which the intake query keeps.
    caps = ["kafka.max_offsets_per_trigger=400", "detect.stateful_max_offsets_per_trigger=200"]
    cfg, _ = config(tmp_path, kafka_bootstrap, topic, DETECTORS, *caps)
    produce(kafka_bootstrap, topic, _records(0, 450))
    batches = run_available_now(spark, cfg)  # first run: state is built and checkpointed
    assert sum(batches["spark-anomaly-stateful"]) == sum(batches["spark-anomaly-intake"]) == 450
    assert max(batches["spark-anomaly-stateful"]) <= 200 < max(batches["spark-anomaly-intake"]) <= 400
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


def _wait_for_rows(spark, tmp_path, rows: int, timeout_s: float = 240) -> None:
    """Until the sink holds ``rows`` rows: a stateful query with a state timeout runs a no-data
    batch every trigger, so ``processAllAvailable`` never sees it idle."""
    deadline = time.monotonic() + timeout_s
    while len(read_table(spark, tmp_path / "scored")) < rows:
        assert time.monotonic() < deadline, f"the sink did not reach {rows} rows"
        time.sleep(0.5)


def _wait_for_model(spark, cfg, version: int, timeout_s: float = 120) -> None:
    """Until the model the stateful join sees is ``version``: read through this session, the read
    uses the job's cached copy while there is one, so this waits for the job to cache the version."""
    deadline = time.monotonic() + timeout_s
    table = cfg.path(cfg.model.table)
    while stateful.newest_prior(spark, table).agg(F.max("model_version")).first()[0] != version:
        assert time.monotonic() < deadline, f"model version {version} did not reach the stateful join"
        time.sleep(0.5)


def _new_version_mid_stream(
    spark, kafka_bootstrap, tmp_path, refresh_seconds: float, train_v2
) -> pd.DataFrame:
    """The range detector's temp rows before and after a second model version lands mid-stream."""
    topic = new_topic(kafka_bootstrap)
    cfg, ov = config(
        tmp_path,
        kafka_bootstrap,
        topic,
        "detect.detectors=[{name: range, params: {}}]",
        f"model.refresh_seconds={refresh_seconds}",
    )
    write_history(tmp_path / "history", sensors=2, count=100, temp=20.0)
    v1 = train.run(spark, cfg, "full").version
    queries = detect.start(spark, cfg)
    try:
        produce(kafka_bootstrap, topic, [("s0", reading("s0", 1_000_000 + i, 30.0, 40.0)) for i in range(10)])
        _wait_for_rows(spark, tmp_path, 20)  # temp and hum
        # a version trained on hotter history: 30 degrees is inside its range
        write_history(tmp_path / "history", sensors=2, count=2000, start_ts=500_000, temp=30.0)
        v2 = train_v2(cfg, ov)
        _wait_for_model(spark, cfg, v2)  # the detect job looks for it every refresh_seconds
        produce(
            kafka_bootstrap,
            topic,
            [(s, reading(s, 2_000_000 + i, 30.0, 40.0)) for i in range(10) for s in ("s0", "s1")],
        )
        _wait_for_rows(spark, tmp_path, 60)
        plan = queries.queries[-1]._jsq.streamingQuery().lastExecution().executedPlan().toString()
    finally:
        queries.stop()
    # with refresh_seconds > 0 the batches join the model's cached copy, not a read of the table
    assert ("InMemoryTableScan" in plan) == (refresh_seconds > 0)
    got = _scored(spark, tmp_path)
    temps = got[(got.detector == "range") & (got.metric == "temp")]
    assert len(temps) == 30
    before, after = temps[temps.ts < 2_000_000], temps[temps.ts >= 2_000_000]
    assert set(before.model_version) == {v1} and before.is_anomaly.all()  # above v1's range
    assert set(after.model_version) == {v2}
    # both the series that has state (s0) and the one first seen after the swap (s1) are scored
    # against the new version's range
    assert not after.is_anomaly.any()
    assert set(before.upper) == {21.0} and set(after.upper) == {31.0}  # v2 saw both histories


def test_a_new_model_version_reaches_the_stateful_detectors_mid_stream(spark, kafka_bootstrap, tmp_path):
    """Without the cached copy (refresh_seconds 0) every batch reads the table's newest version."""
    _new_version_mid_stream(
        spark, kafka_bootstrap, tmp_path, 0, lambda cfg, ov: train.run(spark, cfg, "full").version
    )


def test_a_version_trained_by_another_process_reaches_the_cached_stateful_join(
    spark, kafka_bootstrap, tmp_path
):
    """The deployed case: the train job runs apart, so only the detect job's own look at the
    table's last commit can replace the cached copy (a write from this session would recache it)."""

    def train_apart(cfg, ov) -> int:
        cmd = [sys.executable, str(REPO_ROOT / "jobs" / "train_model.py"), "--mode", "full"]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
        done = subprocess.run(
            cmd + [a for o in ov for a in ("--set", o)], env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return model_store.latest_version(spark, cfg.path(cfg.model.table)).version

    _new_version_mid_stream(spark, kafka_bootstrap, tmp_path, 1, train_apart)


def _scored(spark, tmp_path) -> pd.DataFrame:
    return pd.DataFrame([r.asDict() for r in read_table(spark, tmp_path / "scored")])


def test_one_bucket_many_series_equal_to_replay_and_changed_buckets_refused(spark, kafka_bootstrap, tmp_path):
    """All series in one bucket (one group call per batch) still score as the replay does;
    restarting the checkpoint with another bucket count stops with a clear error."""
    topic = new_topic(kafka_bootstrap)
    cfg, _ = config(tmp_path, kafka_bootstrap, topic, DETECTORS, "detect.state_buckets=1")
    produce(kafka_bootstrap, topic, _records(0, 300))
    run_available_now(spark, cfg)
    produce(kafka_bootstrap, topic, _records(300, 300))
    run_available_now(spark, cfg)
    got = _scored(spark, tmp_path)
    assert len(got) == 2 * 2 * 600
    readings = got[got.detector == "ema"][
        ["sensor_id", "metric", "ts", "value", "source_partition", "source_offset"]
    ]
    want = replay.replay_pandas(readings, [DetectorSpec("ema", {}), DetectorSpec("robust", {"window": 20})])
    merged = got.merge(want, on=["detector", "sensor_id", "metric", "ts"], suffixes=("", "_replay"))
    assert len(merged) == len(got)
    for col in ("score", "lower", "upper"):
        np.testing.assert_array_equal(merged[col].to_numpy(float), merged[f"{col}_replay"].to_numpy(float))

    produce(kafka_bootstrap, topic, _records(600, 30))
    cfg2, _ = config(tmp_path, kafka_bootstrap, topic, DETECTORS, "detect.state_buckets=2")
    q = detect.start(spark, cfg2, available_now=True)
    try:
        q.await_all(300)
    except Exception:  # noqa: BLE001, S110 - the failure is read from the query below
        pass
    finally:
        q.stop()
    errors = [str(x.exception()) for x in q.queries if x.exception() is not None]
    assert any("state_buckets is 2 but the checkpoint's state was written with 1" in e for e in errors)


def test_silent_series_expire_from_the_bucket_state(spark, kafka_bootstrap, tmp_path):
    """With a short state timeout, series that stay silent are dropped from their bucket's state
    and a series that comes back after the timeout starts from scratch."""
    topic = new_topic(kafka_bootstrap)
    cfg, _ = config(
        tmp_path,
        kafka_bootstrap,
        topic,
        DETECTORS,
        "detect.state_buckets=1",
        "detect.state_timeout=2 seconds",
    )
    produce(kafka_bootstrap, topic, _records(0, 300))  # s0, s1, s2
    run_available_now(spark, cfg)
    time.sleep(3)
    later = [r for r in _records(300, 60) if r[0] == "s1"]
    produce(kafka_bootstrap, topic, later)
    run_available_now(spark, cfg)

    got = _scored(spark, tmp_path)
    s1_late = got[(got.sensor_id == "s1") & (got.ts >= 300_000)]
    assert len(s1_late) == 2 * 2 * 20
    # s1 was silent for longer than the timeout too: it restarted, so it scores as a fresh replay
    readings = s1_late[s1_late.detector == "ema"][
        ["sensor_id", "metric", "ts", "value", "source_partition", "source_offset"]
    ]
    want = replay.replay_pandas(readings, [DetectorSpec("ema", {}), DetectorSpec("robust", {"window": 20})])
    merged = s1_late.merge(want, on=["detector", "sensor_id", "metric", "ts"], suffixes=("", "_replay"))
    assert len(merged) == len(s1_late)
    np.testing.assert_array_equal(merged["score"].to_numpy(float), merged["score_replay"].to_numpy(float))
    assert (s1_late[s1_late.detector == "robust"].reason == "warm-up").all()  # 20 readings < window + 1

    # the bucket's state now holds s1 only: s0 and s2 expired
    state = spark.read.format("statestore").load(str(tmp_path / "ckpt" / "stateful")).collect()
    assert len(state) == 1
    series = stateful.load_bucket(bytes(state[0]["value"]["groupState"]["blob"]), 1)
    assert sorted(series) == [("s1", "hum"), ("s1", "temp")]


def _steady(start: int, count: int, spike_at: int | None = None) -> list[tuple[str, str]]:
    """Two sensors alternating like the trained history (temp 20 +/- 1, hum 40 +/- 2), a little
    noise; at record ``spike_at`` s0's temp jumps by 15."""
    rng = np.random.default_rng(start)
    out = []
    for i in range(start, start + count):
        sid, sign = f"s{i % 2}", 1 if (i // 2) % 2 else -1
        temp = 20 + sign * 0.9 + rng.normal(0, 0.02) + (15 if i == spike_at else 0)
        out.append((sid, reading(sid, 1_000 * i, temp, 40 + sign * 1.8 + rng.normal(0, 0.05))))
    return out


def test_recommended_configuration_by_name_runs_in_the_stream_as_evaluated(spark, kafka_bootstrap, tmp_path):
    """``{name: recommended}`` in detect.detectors: the named configuration the evaluate job
    scores runs in the stream, tagged with its name, with the trained model as its prior; across
    a restart its rows equal a replay with the same priors, and the one spike is its one alarm."""
    topic = new_topic(kafka_bootstrap)
    cfg, _ = config(tmp_path, kafka_bootstrap, topic, "detect.detectors=[{name: recommended}]")
    write_history(tmp_path / "history", sensors=2, count=300)
    version = train.run(spark, cfg, "full").version
    spike = 2 * 400  # s0's 401st reading, past the calibration's 30 + 100 readings
    produce(kafka_bootstrap, topic, _steady(0, 600, spike))
    run_available_now(spark, cfg)
    produce(kafka_bootstrap, topic, _steady(600, 600, spike))
    run_available_now(spark, cfg)

    got = _scored(spark, tmp_path)
    assert set(got["detector"]) == {"recommended"}
    assert len(got) == 1200 * 2
    assert not got.duplicated(["source_partition", "source_offset", "metric"]).any()

    model = model_store.read_version(spark, str(tmp_path / "model"), version).toPandas()
    priors = {
        (r.sensor_id, r.metric): SeriesPrior(int(r.n), r.mean, r.m2, r["min"], r["max"], version)
        for _, r in model.iterrows()
    }
    readings = got[["sensor_id", "metric", "ts", "value", "source_partition", "source_offset"]]
    want = replay.replay_pandas(readings, [DetectorSpec("recommended", {})], priors)
    merged = got.merge(want, on=["detector", "sensor_id", "metric", "ts"], suffixes=("", "_replay"))
    assert len(merged) == len(got)
    for col in ("score", "lower", "upper", "probability"):
        np.testing.assert_array_equal(merged[col].to_numpy(float), merged[f"{col}_replay"].to_numpy(float))
    assert (merged["reason"] == merged["reason_replay"]).all()
    # without the trained prior the record member would still be learning its range at the spike
    no_prior = replay.replay_pandas(readings, [DetectorSpec("recommended", {})])
    assert not np.array_equal(
        no_prior.sort_values(["sensor_id", "metric", "ts"])["score"].to_numpy(float),
        want.sort_values(["sensor_id", "metric", "ts"])["score"].to_numpy(float),
    )
    alarms = got[got.is_anomaly]
    assert alarms[["sensor_id", "metric", "ts"]].values.tolist() == [["s0", "temp", 1_000 * spike]]
    assert alarms["score"].tolist() == [1.0]
