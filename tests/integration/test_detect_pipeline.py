"""produce -> detect -> Delta, on the real broker: exact rows, dead letters, hot swap, SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from spark_anomaly import detect, train
from spark_anomaly.config import REPO_ROOT

from .helpers import config, new_topic, produce, read_table, reading, run_available_now, write_history

pytestmark = pytest.mark.integration

BAD = {
    "{not json": "malformed JSON",
    '{"id": "s1", "ts": 5, "temp": "hot", "hum": 1}': "field temp is not a number: hot",
    '{"ts": 5, "temp": 1, "hum": 1}': "missing field id",
    '{"id": "s1", "ts": 5, "temp": NaN, "hum": 1}': "field temp is NaN",
}


def test_produce_detect_exact_rows_and_dead_letters(spark, kafka_bootstrap, tmp_path):
    topic = new_topic(kafka_bootstrap)
    cfg, _ = config(tmp_path, kafka_bootstrap, topic)
    write_history(tmp_path / "history", sensors=3, count=200)
    version = train.run(spark, cfg, "full").version
    good = [(f"s{i % 3}", reading(f"s{i % 3}", 10_000_000 + i, 20.5, 40.0)) for i in range(300)]
    good.append(("s1", reading("s1", 20_000_000, 35.0, 40.0)))  # a spike: 15 sigma
    good.append(("new", reading("new", 20_000_001, 1.0, 2.0)))  # a series the model lacks
    produce(kafka_bootstrap, topic, good + [(None, b) for b in BAD])
    run_available_now(spark, cfg)

    rows = read_table(spark, tmp_path / "scored")
    assert len(rows) == 2 * len(good)
    assert len({(r.source_partition, r.source_offset, r.metric) for r in rows}) == len(rows)
    assert {r.model_version for r in rows} == {version}
    flagged = [(r.sensor_id, r.metric, r.ts) for r in rows if r.is_anomaly]
    assert flagged == [("s1", "temp", 20_000_000)]
    assert Counter(r.reason for r in rows if r.sensor_id == "new") == {"unknown source": 2}
    dead = read_table(spark, tmp_path / "dead")
    assert {d.raw: d.reason for d in dead} == BAD
    assert all(d.topic == topic and d.offset is not None for d in dead)


def test_new_model_version_is_picked_up_mid_stream(spark, kafka_bootstrap, tmp_path):
    topic = new_topic(kafka_bootstrap)
    cfg, _ = config(tmp_path, kafka_bootstrap, topic)
    write_history(tmp_path / "history", sensors=2, count=100, temp=20.0)
    v1 = train.run(spark, cfg, "full").version
    queries = detect.start(spark, cfg)
    try:
        produce(kafka_bootstrap, topic, [("s0", reading("s0", 1_000_000 + i, 30.0, 40.0)) for i in range(20)])
        queries.process_all_available()
        # A new version trained on hotter history: 30 degrees becomes normal.
        write_history(tmp_path / "history", sensors=2, count=2000, start_ts=500_000, temp=30.0)
        v2 = train.run(spark, cfg, "full").version
        produce(kafka_bootstrap, topic, [("s0", reading("s0", 2_000_000 + i, 30.0, 40.0)) for i in range(20)])
        queries.process_all_available()
    finally:
        queries.stop()
    temps = sorted(
        (r.ts, r.model_version, r.is_anomaly)
        for r in read_table(spark, tmp_path / "scored")
        if r.metric == "temp"
    )
    assert len(temps) == 40
    assert all(v == v1 and a for ts, v, a in temps if ts < 2_000_000)  # 10 sigma under v1
    assert all(v == v2 and not a for ts, v, a in temps if ts >= 2_000_000)


def _sink_count(spark, path) -> int:
    try:
        return spark.read.format("delta").load(str(path)).count()
    except Exception:  # noqa: BLE001 - table not created yet
        return 0


def test_sigkill_mid_run_then_restart_loses_and_duplicates_nothing(spark, kafka_bootstrap, tmp_path):
    topic = new_topic(kafka_bootstrap)
    cfg, ov = config(tmp_path, kafka_bootstrap, topic, "kafka.max_offsets_per_trigger=400")
    write_history(tmp_path / "history", sensors=4, count=50)
    train.run(spark, cfg, "full")
    n = 12_000
    produce(kafka_bootstrap, topic, [(f"s{i % 4}", reading(f"s{i % 4}", i, 20.0, 40.0)) for i in range(n)])
    cmd = [sys.executable, str(REPO_ROOT / "jobs" / "stream_detect.py")] + [
        a for o in ov for a in ("--set", o)
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    proc = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 240
        while _sink_count(spark, tmp_path / "scored") == 0:
            assert proc.poll() is None, "detect job exited early"
            assert time.monotonic() < deadline, "detect job wrote nothing in time"
            time.sleep(1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # driver, Python workers and all: no clean shutdown
        proc.wait()
    partial = _sink_count(spark, tmp_path / "scored")
    assert 0 < partial < 2 * n, "the kill should land mid-run"
    restart = subprocess.run(cmd + ["--available-now"], env=env, capture_output=True, text=True, timeout=600)
    assert restart.returncode == 0, restart.stderr[-3000:]
    rows = read_table(spark, tmp_path / "scored")
    keys = Counter((r.source_partition, r.source_offset, r.metric) for r in rows)
    assert len(rows) == 2 * n
    assert max(keys.values()) == 1
