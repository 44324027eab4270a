"""The train job on real Delta tables: moments, versions, incremental == full, atomicity."""

import dataclasses
import json
import os

import numpy as np
import pytest
from pyspark.sql import functions as F

from spark_anomaly import model_store, train
from spark_anomaly.config import load_config

from ..model_checks import assert_same_moments, model_stats


def _write_history(path, start, count, seed, bad=0):
    rng = np.random.default_rng(seed)
    os.makedirs(path, exist_ok=True)
    rows = []
    with open(os.path.join(path, f"part-{start}.json"), "w") as fh:
        for i in range(start, start + count):
            sid = f"s{i % 3}"
            rec = {"id": sid, "ts": 1_000 * i, "temp": 1e6 + rng.normal(0, 2), "hum": 40 + rng.normal(0, 5)}
            rows.append(rec)
            fh.write(json.dumps(rec) + "\n")
        for _ in range(bad):
            fh.write('{"id": "s0", "ts": 1, "temp": "oops", "hum": 1}\n')
    return rows


def _cfg(tmp_path, name, history):
    return load_config(
        overrides=[
            f"train.source_path={history}",
            f"model.table={tmp_path}/{name}/model",
            f"model.json_dir={tmp_path}/{name}/json",
        ]
    )


def test_full_train_matches_numpy_and_exports_seed_json(spark, tmp_path):
    rows = _write_history(tmp_path / "hist", 0, 600, seed=1, bad=2)
    cfg = _cfg(tmp_path, "a", tmp_path / "hist")
    res = train.run(spark, cfg, "full")
    assert (res.series, res.rows_read, res.rows_rejected) == (6, 602, 2)
    stats = model_stats(spark, cfg, res.version)
    temps = np.array([r["temp"] for r in rows if r["id"] == "s1"])
    s = stats[("s1", "temp")]
    assert s.n == temps.size
    assert s.mean == pytest.approx(temps.mean(), rel=1e-12)
    assert s.m2 == pytest.approx(((temps - temps.mean()) ** 2).sum(), rel=1e-6)
    assert (s.min, s.max) == (temps.min(), temps.max())
    assert s.first_ts == 1_000 and s.last_ts == 598_000
    files = os.listdir(tmp_path / "a" / "json")
    assert files == [f"sensors-m2-{res.version}.json"]  # no temp dir, no partial file left behind
    with open(tmp_path / "a" / "json" / files[0]) as fh:
        lines = [json.loads(x) for x in fh]
    assert len(lines) == 6
    rec = next(x for x in lines if x["id"] == "s1" and x["metric"] == "temp")
    assert rec["m2"]["n"] == s.n and rec["m2"]["mean"] == pytest.approx(s.mean)


def test_incremental_equals_full_retrain_and_latest_moves(spark, tmp_path):
    _write_history(tmp_path / "hist", 0, 400, seed=2)
    inc = _cfg(tmp_path, "inc", tmp_path / "hist")
    v1 = train.run(spark, inc, "full").version
    _write_history(tmp_path / "hist", 400, 300, seed=3)  # new files, later event times
    v2 = train.run(spark, inc, "incremental").version
    assert v2 > v1
    assert model_store.latest_version(spark, inc.path(inc.model.table)).version == v2
    full = _cfg(tmp_path, "full", tmp_path / "hist")
    v_full = train.run(spark, full, "full").version
    assert_same_moments(model_stats(spark, inc, v2), model_stats(spark, full, v_full))
    # the first version is still there for time travel / rollback
    assert len(model_stats(spark, inc, v1)) == 6


def test_failed_write_leaves_no_visible_version(spark, tmp_path):
    _write_history(tmp_path / "hist", 0, 100, seed=4)
    cfg = _cfg(tmp_path, "atomic", tmp_path / "hist")
    good = train.run(spark, cfg, "full").version
    table = cfg.path(cfg.model.table)
    boom = F.udf(lambda x: 1 // 0 if x == "s2" else 1.0, "double")
    stats = train.compute_stats(
        spark.createDataFrame(
            [("s1", "temp", 0, 1.0), ("s2", "temp", 0, 2.0)],
            "sensor_id string, metric string, ts long, value double",
        )
    )
    stats = stats.withColumn("mean", boom("sensor_id"))
    with pytest.raises(Exception, match="ZeroDivisionError"):
        model_store.write_version(spark, stats, table, None, version=good + 1, mode="full", source="test")
    assert model_store.latest_version(spark, table).version == good
    assert spark.read.format("delta").load(table).where(F.col("version") == good + 1).count() == 0


def test_latest_version_read_from_the_commit_equals_the_scan(spark, tmp_path):
    _write_history(tmp_path / "hist", 0, 90, seed=5)
    cfg = _cfg(tmp_path, "meta", tmp_path / "hist")
    res = train.run(spark, cfg, "full")
    table = cfg.path(cfg.model.table)
    from_commit = model_store.latest_version(spark, table)
    # the commit also says which versions the table keeps (model.keep_versions); a scan does not
    assert from_commit.kept == [res.version]
    assert dataclasses.replace(from_commit, kept=None) == model_store._scan_latest_version(spark, table)
    assert (from_commit.version, from_commit.series, from_commit.mode) == (res.version, 6, "full")
    # a later commit that is not a version write (here: an append without the mark, as an older
    # release of the train job wrote) makes the reader fall back to scanning the data
    older = model_store.read_version(spark, table, res.version).withColumn("version", F.lit(res.version + 7))
    older.write.format("delta").mode("append").save(table)
    assert model_store.latest_version(spark, table).version == res.version + 7


def _delta_history(spark, path, start, count, seed, mode):
    """Wide records (id, ts, temp, hum) of 3 sensors; record ``start + 5`` has a null hum (rejected)."""
    rng = np.random.default_rng(seed)
    rows = [
        (
            f"s{i % 3}",
            1_000 * i,
            float(1e6 + rng.normal(0, 2)),
            None if i == start + 5 else float(rng.normal(40, 5)),
        )
        for i in range(start, start + count)
    ]
    spark.createDataFrame(rows, "id string, ts long, temp double, hum double").write.format("delta").mode(
        mode
    ).save(str(path))
    return rows


def test_delta_source_one_pass_incremental_reads_only_new_rows(spark, tmp_path):
    old = _delta_history(spark, tmp_path / "h", 0, 400, seed=5, mode="overwrite")
    inc = _cfg(tmp_path, "dinc", tmp_path / "h")
    inc.train.source_format = "delta"
    first = train.run(spark, inc, "full")
    assert (first.series, first.rows_read, first.rows_rejected) == (6, 400, 1)
    s = model_stats(spark, inc, first.version)[("s2", "hum")]
    hums = np.array([r[3] for r in old if r[0] == "s2" and r[3] is not None])
    # the rejected record (i=5, s2) counts for neither metric of its series
    assert s.n == hums.size and model_stats(spark, inc, first.version)[("s2", "temp")].n == hums.size
    assert s.m2 == pytest.approx(((hums - hums.mean()) ** 2).sum(), rel=1e-9)
    _delta_history(spark, tmp_path / "h", 400, 300, seed=6, mode="append")
    second = train.run(spark, inc, "incremental")
    # only records after the earliest per-series last_ts (397000) are scanned: 398000, 399000 + 300 new
    assert (second.rows_read, second.rows_rejected) == (302, 1)
    full = _cfg(tmp_path, "dfull", tmp_path / "h")
    full.train.source_format = "delta"
    want = model_stats(spark, full, train.run(spark, full, "full").version)
    assert_same_moments(model_stats(spark, inc, second.version), want)


def _json_export(cfg, version):
    with open(os.path.join(cfg.path(cfg.model.json_dir), f"sensors-m2-{version}.json")) as fh:
        return {(r["id"], r["metric"]): r["m2"] for r in map(json.loads, fh)}


def test_incremental_without_new_data_writes_a_copy_of_the_previous_version(spark, tmp_path):
    _delta_history(spark, tmp_path / "h0", 0, 300, seed=7, mode="overwrite")
    cfg = _cfg(tmp_path, "same", tmp_path / "h0")
    cfg.train.source_format = "delta"
    first = train.run(spark, cfg, "full")
    again = train.run(spark, cfg, "incremental")
    # documented behaviour: every run writes a version, here with the same moments and ranges
    assert again.version > first.version and again.series == first.series
    # scanned: the two records after the earliest per-series last_ts, both already trained
    assert (again.rows_read, again.rows_rejected) == (2, 0)
    table = cfg.path(cfg.model.table)
    info = model_store.latest_version(spark, table)
    assert (info.version, info.mode, info.series) == (again.version, "incremental", 6)
    before = model_store.read_version(spark, table, first.version)
    after = model_store.read_version(spark, table, again.version)
    cols = [*model_store.STAT_COLUMNS, "data_start", "data_end", "source"]
    assert sorted(before.select(*cols).collect()) == sorted(after.select(*cols).collect())
    # the JSON export is written from the same result as the Delta rows
    exported = _json_export(cfg, again.version)
    assert exported == _json_export(cfg, first.version)
    for r in after.collect():
        assert exported[(r.sensor_id, r.metric)] == {"n": r.n, "mean": r.mean, "m2": r.m2}


def test_incremental_run_stays_within_its_spark_job_budget(spark, tmp_path):
    """The fixed cost of a run is mostly per-job planning and scheduling: 27 jobs for a run with no
    new data when the previous version was cached (its own commit made Spark re-read it), 11 now."""
    _delta_history(spark, tmp_path / "hj", 0, 300, seed=8, mode="overwrite")
    cfg = _cfg(tmp_path, "jobs", tmp_path / "hj")
    cfg.train.source_format = "delta"
    train.run(spark, cfg, "full")
    _delta_history(spark, tmp_path / "hj", 300, 60, seed=9, mode="append")
    sc = spark.sparkContext
    sc.setJobGroup("train-job-budget", "train-job-budget")
    try:
        res = train.run(spark, cfg, "incremental")
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
        sc.setLocalProperty("spark.job.description", None)
    assert res.rows_read == 62
    assert len(sc.statusTracker().getJobIdsForGroup("train-job-budget")) <= 16


def test_old_versions_are_pruned_to_keep_versions_and_latest_stays_one_log_read(spark, tmp_path):
    _write_history(tmp_path / "hk", 0, 60, seed=11)
    cfg = _cfg(tmp_path, "keep", tmp_path / "hk")
    cfg.model.keep_versions = 2
    table, json_dir = cfg.path(cfg.model.table), cfg.path(cfg.model.json_dir)
    runs = [train.run(spark, cfg, "full").version for _ in range(3)]
    newest_first = runs[::-1]
    assert model_store.versions(spark, table) == newest_first  # fewer than twice keep_versions
    assert model_store.latest_version(spark, table).kept == newest_first
    runs.append(train.run(spark, cfg, "full").version)  # four: pruned to the newest two
    assert model_store.versions(spark, table) == runs[:1:-1]
    assert sorted(os.listdir(json_dir)) == sorted(f"sensors-m2-{v}.json" for v in runs[2:])
    # the pruning commit names the newest version, so the look-up needs no scan
    last = model_store.last_commit(spark, table)
    assert model_store._info_from_commit(last[1]).version == runs[3]
    assert model_store.latest_version(spark, table).kept == runs[:1:-1]
    assert model_store.read_version(spark, table, runs[3]).count() == 6
    # keep every version: nothing is deleted, and nothing is tracked
    cfg.model.keep_versions = None
    fifth = train.run(spark, cfg, "full").version
    assert model_store.versions(spark, table) == [fifth, *runs[:1:-1]]
    assert model_store.latest_version(spark, table).kept is None
    # pruning again starts from a scan of what the table holds
    cfg.model.keep_versions = 1
    sixth = train.run(spark, cfg, "full").version
    assert model_store.versions(spark, table) == [sixth]
    assert os.listdir(json_dir) == [f"sensors-m2-{sixth}.json"]
