"""Background Delta log checkpoints: written when due, not otherwise, never fatal."""

from __future__ import annotations

from pathlib import Path

from spark_anomaly import sink
from spark_anomaly.log_checkpoints import LogCheckpointer


def _checkpoints(table: str) -> list[int]:
    return sorted(
        int(p.name.split(".")[0]) for p in (Path(table) / "_delta_log").glob("*.checkpoint.parquet")
    )


def _append(spark, table: str, times: int) -> None:
    df = spark.createDataFrame([(1, "a")], "id long, v string")
    for _ in range(times):
        df.write.format("delta").mode("append").save(table)


def test_checkpoints_every_n_commits_beside_the_writer(spark, tmp_path):
    table = str(tmp_path / "t")
    sink.ensure_table(
        spark, table, spark.createDataFrame([], "id long, v string").schema, sink.STREAM_TABLE_PROPERTIES
    )
    cp = LogCheckpointer(spark, [table, str(tmp_path / "not-yet")], every=3)
    _append(spark, table, 1)  # versions 0 (create) and 1: two commits
    assert cp.check_once() == [] and _checkpoints(table) == []
    _append(spark, table, 1)  # version 2: three commits without a checkpoint
    assert cp.check_once() == [table] and _checkpoints(table) == [2]
    assert cp.check_once() == []  # nothing new
    _append(spark, table, 2)  # versions 3, 4
    assert cp.check_once() == [] and _checkpoints(table) == [2]
    _append(spark, table, 2)  # versions 5, 6
    assert cp.check_once() == [table] and _checkpoints(table) == [2, 6]
    assert spark.read.format("delta").load(table).count() == 6  # readable from the checkpoint


def test_a_failing_table_is_skipped_with_a_warning_not_raised(spark, tmp_path, monkeypatch, caplog):
    table = str(tmp_path / "t")
    _append(spark, table, 3)
    cp = LogCheckpointer(spark, [table], every=1)

    def broken(_table):
        raise RuntimeError("no such method")

    monkeypatch.setattr(cp, "_delta_log", broken)
    assert cp.check_once() == []
    assert "disabled" in caplog.text
    monkeypatch.undo()
    assert cp.check_once() == []  # stays off for that table
