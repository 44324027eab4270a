"""ModelCache: the newest version cached under the plan the stateful join uses, so Spark reads it
from memory, and cached again when the table's last commit moves or the copy was dropped."""

from __future__ import annotations

from pyspark.sql import functions as F

from spark_anomaly import model_store, stateful, train
from spark_anomaly.model_cache import ModelCache


def _write(spark, table: str, mean: float, version: int) -> None:
    rows = spark.createDataFrame(
        [("s1", "temp", t, mean + (t % 3)) for t in range(30)],
        "sensor_id string, metric string, ts long, value double",
    )
    model_store.write_version(
        spark, train.compute_stats(rows), table, None, version=version, mode="full", source="test"
    )


def _join_plan(spark, table: str) -> str:
    readings = spark.createDataFrame(
        [("s1", "temp", 1, 20.0)], "sensor_id string, metric string, ts long, value double"
    )
    joined = stateful.with_latest_model(spark, readings, table)
    joined.collect()
    return joined._jdf.queryExecution().executedPlan().toString()


def test_the_join_reads_the_cached_copy_and_a_moved_commit_caches_again(spark, tmp_path, monkeypatch):
    table = str(tmp_path / "model")
    _write(spark, table, 20.0, version=1)
    cache = ModelCache(spark, table, lambda: stateful.newest_prior(spark, table), refresh_seconds=5)
    try:
        assert "InMemoryTableScan" not in _join_plan(spark, table)  # nothing cached: the table is read
        assert cache.refresh() and cache.cached
        first = cache.commit
        assert "InMemoryTableScan" in _join_plan(spark, table)
        assert not cache.refresh() and cache.commit == first  # same commit: the copy stays

        # A version written by another process: this session's cache manager does not hear of it
        # (a write from this session would recache by itself), only the commit number moves.
        real = model_store.last_commit
        monkeypatch.setattr(model_store, "last_commit", lambda s, t: (real(s, t)[0] + 1, None))
        assert cache.refresh() and cache.commit == first + 1 and cache.cached
        assert "InMemoryTableScan" in _join_plan(spark, table)

        # dropped by another holder of the same plan (the cache of a query that stopped)
        stateful.newest_prior(spark, table).unpersist()
        assert not cache.cached
        assert cache.refresh() and cache.cached
    finally:
        cache.close()
    assert not cache.cached and "InMemoryTableScan" not in _join_plan(spark, table)


def test_the_copy_holds_the_newest_version_alone(spark, tmp_path):
    table = str(tmp_path / "model")
    _write(spark, table, 20.0, version=1)
    _write(spark, table, 30.0, version=2)
    cache = ModelCache(spark, table, lambda: stateful.newest_prior(spark, table), refresh_seconds=5)
    try:
        assert cache.refresh()
        assert "InMemoryTableScan" in _join_plan(spark, table)  # what follows reads the copy
        rows = (
            stateful.newest_prior(spark, table)
            .select("model_version", F.round("mean", 6).alias("m"))
            .collect()
        )
        assert [(r.model_version, r.m) for r in rows] == [(2, 31.0)]
    finally:
        cache.close()


def test_refresh_seconds_zero_caches_nothing(spark, tmp_path):
    table = str(tmp_path / "model")
    _write(spark, table, 20.0, version=1)
    cache = ModelCache(spark, table, lambda: stateful.newest_prior(spark, table), refresh_seconds=0)
    cache.load()
    assert not cache.cached and "InMemoryTableScan" not in _join_plan(spark, table)


def test_a_failed_first_load_leaves_the_batches_reading_the_table(spark, tmp_path, monkeypatch):
    table = str(tmp_path / "model")
    _write(spark, table, 20.0, version=1)
    cache = ModelCache(spark, table, lambda: stateful.newest_prior(spark, table), refresh_seconds=5)

    def unreachable(*args):
        raise OSError("object store unreachable")

    monkeypatch.setattr(model_store, "last_commit", unreachable)
    cache.load()  # the query still starts; the refresh thread tries again later
    assert not cache.cached and "InMemoryTableScan" not in _join_plan(spark, table)
    monkeypatch.undo()
    assert cache.refresh() and cache.cached
    cache.close()


def test_a_closing_holder_keeps_the_copy_another_holder_of_the_plan_uses(spark, tmp_path):
    """Two queries of one JVM over the same model (the first stopping as the second runs): the
    cache manager keeps one copy per plan, so the first one's close must not drop it."""
    table = str(tmp_path / "model")
    _write(spark, table, 20.0, version=1)
    first, second = (
        ModelCache(spark, table, lambda: stateful.newest_prior(spark, table), refresh_seconds=5)
        for _ in range(2)
    )
    assert first.refresh() and second.refresh()
    first.close()
    assert second.cached and "InMemoryTableScan" in _join_plan(spark, table)
    second.close()
    assert not second.cached and "InMemoryTableScan" not in _join_plan(spark, table)
