"""The detect job's model holder with its refresh thread (the default, ``refresh_seconds`` > 0):
the first batch waits for the first load instead of scoring with the empty model, a new version
is picked up while running, and a failing first look-up still fails the batch. And the join it
asks for: a broadcast, or above ``broadcast_max_series`` a shuffle of the batch alone."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import pytest

from spark_anomaly import detect, model_store, scoring, train
from spark_anomaly.detectors.zscore import ZScoreConfig
from spark_anomaly.latest_model import LatestModel


def _write(spark, table: str, mean: float, version: int, sensors=("s1",), metrics=("temp",)) -> None:
    """A model version of 30 readings per series: sensor i's mean is ``mean`` + i + 1."""
    rows = spark.createDataFrame(
        [(s, m, t, mean + i + (t % 3)) for i, s in enumerate(sensors) for m in metrics for t in range(30)],
        "sensor_id string, metric string, ts long, value double",
    )
    model_store.write_version(
        spark, train.compute_stats(rows), table, None, version=version, mode="full", source="test"
    )


@contextmanager
def _following(spark, table: str, refresh_seconds: float):
    """A LatestModel with its refresh thread, as the detect job runs it; the thread ends after."""
    running = threading.Event()
    running.set()
    model = LatestModel(spark, table, refresh_seconds=refresh_seconds)
    model.follow(running.is_set)
    try:
        yield model
    finally:
        running.clear()


def _wait(predicate, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_first_batch_waits_for_the_threads_first_load(spark, tmp_path, monkeypatch):
    table = str(tmp_path / "model")
    _write(spark, table, 20.0, version=1)
    release, entered = threading.Event(), threading.Event()
    real = model_store.read_version

    def slow_read(*args, **kwargs):
        entered.set()
        assert release.wait(120)
        return real(*args, **kwargs)

    monkeypatch.setattr(model_store, "read_version", slow_read)
    try:
        with _following(spark, table, 3600) as model:
            assert entered.wait(60), "the thread did not start loading at once"
            got: list = []
            batch = threading.Thread(target=lambda: got.append(model.get()))
            batch.start()
            batch.join(1.0)
            assert batch.is_alive() and not got  # waiting for the load, not scoring with the empty model
            release.set()
            batch.join(60)
            version, frame = got[0]
            assert version == 1
            assert frame.count() == 1
    finally:
        release.set()


def test_thread_picks_up_a_new_version(spark, tmp_path):
    table = str(tmp_path / "model")
    _write(spark, table, 20.0, version=1)
    with _following(spark, table, 0.2) as model:
        assert model.get()[0] == 1
        _write(spark, table, 30.0, version=2)
        assert _wait(lambda: model.version == 2)
        version, frame = model.get()
        assert version == 2 and frame.first()["mean"] == pytest.approx(31.0)


def test_failing_first_look_up_fails_the_batch(spark, tmp_path, monkeypatch):
    table = str(tmp_path / "model")
    _write(spark, table, 20.0, version=1)
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise OSError("log unreadable")

    monkeypatch.setattr(model_store, "last_commit", broken)
    with _following(spark, table, 3600) as model:
        assert _wait(lambda: len(calls) >= 1)
        with pytest.raises(OSError, match="log unreadable"):
            model.get()


def test_a_model_above_broadcast_max_series_is_joined_by_shuffling_the_batch_alone(spark, tmp_path):
    table = str(tmp_path / "model")
    _write(spark, table, 20.0, version=1, sensors=("s0", "s1", "s2"), metrics=("temp", "hum"))
    cfg = ZScoreConfig(k=1.0)
    batch = spark.createDataFrame(
        [(s, m, 100, v, 0, i) for i, (s, m, v) in enumerate(
            [("s0", "temp", 20.0), ("s0", "hum", 30.0), ("s2", "temp", 21.5), ("s9", "temp", 5.0)])],
        "sensor_id string, metric string, ts long, value double, source_partition int, source_offset long",
    )  # fmt: skip

    def scored(max_series):
        model = LatestModel(
            spark, table, 0, prepare=lambda p: scoring.zscore_model(p, cfg), broadcast_max_series=max_series
        )
        version, frame = model.get()
        out = detect.score_stateless(batch, frame, version, cfg)
        rows = sorted(tuple(r) for r in out.collect())
        plan = out._jdf.queryExecution().executedPlan().executedPlan().toString()  # AQE's final plan
        model.close()
        return model.series, rows, plan

    series, broadcast, plan = scored(None)
    assert series == 6 and "BroadcastHashJoin" in plan
    series, shuffled, plan = scored(5)
    assert series == 6 and "ShuffledHashJoin" in plan and "BroadcastHashJoin" not in plan
    # only the batch is moved: the cached model is partitioned as the join wants it
    assert plan.count("ENSURE_REQUIREMENTS") == 1
    assert shuffled == broadcast and len(shuffled) == 4
    assert {r[11] for r in shuffled} >= {"above upper bound", "unknown source"}


def test_a_commit_that_keeps_the_version_does_not_reload_it(spark, tmp_path):
    table = str(tmp_path / "model")
    _write(spark, table, 20.0, version=1)
    model = LatestModel(spark, table, refresh_seconds=0)
    version, frame = model.get()
    # a commit that is not a version write (as pruning or OPTIMIZE make): the same latest version
    spark.sql(f"ALTER TABLE delta.`{table}` SET TBLPROPERTIES ('spark_anomaly.note' = 'x')")
    model.refresh(force=True)
    assert model_store.last_commit(spark, table)[0] == 1  # the look-up saw the new commit
    assert model.get() == (version, frame)  # the same cached frame: not loaded again
    _write(spark, table, 30.0, version=2)
    model.refresh(force=True)
    assert model.version == 2 and model.get()[1] is not frame
    model.close()


def test_the_job_looks_the_model_up_beside_its_start(spark, app_config, monkeypatch):
    """detect.start begins the model's first look-up before it creates the sink table (seconds in
    a fresh JVM, which the first batch used to wait for on top), and a start that fails ends it."""
    app_config.model.refresh_seconds = 1
    _write(spark, app_config.path(app_config.model.table), 20.0, version=1)
    looked, models, seen = threading.Event(), [], []
    real_refresh, real_latest = LatestModel.refresh, detect.latest_zscore_model

    def refresh(self, force=False):
        looked.set()
        return real_refresh(self, force)

    def ensure_table(*args, **kwargs):
        seen.append(looked.wait(60))
        raise RuntimeError("sink table unavailable")

    monkeypatch.setattr(LatestModel, "refresh", refresh)
    monkeypatch.setattr(
        detect, "latest_zscore_model", lambda *a, **k: models.append(real_latest(*a, **k)) or models[-1]
    )
    monkeypatch.setattr(detect.sink, "ensure_table", ensure_table)
    with pytest.raises(RuntimeError, match="sink table unavailable"):
        detect.start(spark, app_config)
    assert seen == [True]
    models[0]._thread.join(30)
    assert not models[0]._thread.is_alive()
    assert models[0].version == 1
