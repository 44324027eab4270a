"""The detect job's model holder with its refresh thread (the default, ``refresh_seconds`` > 0):
the first batch waits for the first load instead of scoring with the empty model, a new version
is picked up while running, and a failing first look-up still fails the batch."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import pytest

from spark_anomaly import model_store, train
from spark_anomaly.latest_model import LatestModel


def _write(spark, table: str, mean: float, version: int) -> None:
    rows = spark.createDataFrame(
        [("s1", "temp", t, mean + (t % 3)) for t in range(30)],
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
    real = model_store.read_latest

    def slow_read(*args, **kwargs):
        entered.set()
        assert release.wait(120)
        return real(*args, **kwargs)

    monkeypatch.setattr(model_store, "read_latest", slow_read)
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
