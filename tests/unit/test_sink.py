"""The Delta sink: table creation with the result contract, idempotent appends, and a quiet stop
of a batch its query interrupts."""

import json
import traceback

import pytest
from delta.tables import DeltaTable
from py4j.protocol import Py4JJavaError

from spark_anomaly import sink
from spark_anomaly.results import RESULT_SCHEMA


def test_ensure_table_creates_contract_once(spark, tmp_path):
    table = str(tmp_path / "scored")
    props = sink.RESULT_TABLE_PROPERTIES
    sink.ensure_table(spark, table, RESULT_SCHEMA, props)
    detail = DeltaTable.forPath(spark, table).detail().collect()[0]
    assert detail.properties["delta.dataSkippingStatsColumns"] == sink.RESULT_STATS_COLUMNS
    assert (
        detail.properties["delta.checkpointInterval"]
        == sink.STREAM_TABLE_PROPERTIES["delta.checkpointInterval"]
    )
    assert spark.read.format("delta").load(table).schema == RESULT_SCHEMA
    version = DeltaTable.forPath(spark, table).history(1).collect()[0].version
    sink.ensure_table(spark, table, RESULT_SCHEMA, props)  # exists: no new commit
    assert DeltaTable.forPath(spark, table).history(1).collect()[0].version == version


def _rows(spark, table):
    return spark.read.format("delta").load(table).count()


def test_batch_appender_skips_replayed_batches_across_restarts(spark, tmp_path):
    table = str(tmp_path / "t")
    df = spark.createDataFrame([(1, "a"), (2, "b")], "id long, v string")
    run1 = sink.BatchAppender(table, "app-1")
    assert run1.append(df, 0) and not run1.append(df, 0)  # a repeated call in one run
    assert run1.append(df, 1)
    run2 = sink.BatchAppender(table, "app-1")  # a restart: the last batch is read back from the table
    assert not run2.append(df, 1)
    assert run2.append(df, 2)
    assert sink.BatchAppender(table, "app-2").append(df, 0)  # another writer's batch 0 is its own
    assert _rows(spark, table) == 8
    assert sink.committed_batch(spark, table, "app-1") == 2
    assert sink.committed_batch(spark, table, "app-3") == -1
    assert sink.committed_batch(spark, str(tmp_path / "missing"), "app-1") == -1


def test_batch_appender_honours_transaction_ids_of_older_writes(spark, tmp_path):
    """A table written with Delta transaction ids only (no userMetadata) resumes exactly once."""
    table = str(tmp_path / "t")
    df = spark.createDataFrame([(1, "a")], "id long, v string")
    df.write.format("delta").option("txnAppId", "app-1").option("txnVersion", "5").save(table)
    assert sink.committed_batch(spark, table, "app-1") == -1  # no mark: Delta's own check decides
    appender = sink.BatchAppender(table, "app-1")
    assert appender.append(df, 5)  # attempted, and Delta skipped it
    assert _rows(spark, table) == 1
    appender.append(df, 6)
    assert _rows(spark, table) == 2


def _carries_transaction_id(table: str, version: int) -> bool:
    """Whether the commit ``version`` of ``table`` wrote a Delta transaction id (a ``txn`` action)."""
    with open(f"{table}/_delta_log/{version:020d}.json") as log:
        return any("txn" in json.loads(line) for line in log)


def test_only_a_first_write_into_a_table_with_data_carries_a_transaction_id(spark, tmp_path):
    """Delta checks a transaction id by rebuilding the table's snapshot (0.4 s): a table that holds
    nothing but its creation cannot hold the batch, so its first write goes without one."""
    table = str(tmp_path / "t")
    rows = spark.createDataFrame([(1, "a")], "id long, v string")
    sink.ensure_table(spark, table, rows.schema)
    run1 = sink.BatchAppender(table, "app-1")
    assert run1.append(rows, 0) and run1.append(rows, 1)
    run2 = sink.BatchAppender(table, "app-1")  # a restart
    assert run2.append(rows, 2)
    assert [_carries_transaction_id(table, v) for v in (1, 2, 3)] == [False, False, True]


def test_the_last_batch_is_found_beyond_the_recent_commits(spark, tmp_path, monkeypatch):
    monkeypatch.setattr(sink, "RECENT_COMMITS", 2)
    table = str(tmp_path / "t")
    df = spark.createDataFrame([(1, "a")], "id long, v string")
    app1, app2 = sink.BatchAppender(table, "app-1"), sink.BatchAppender(table, "app-2")
    for batch in range(3):
        app1.append(df, batch)
    for batch in range(3):
        app2.append(df, batch)
    assert sink.committed_batch(spark, table, "app-1") == 2
    assert sink.committed_batch(spark, table, "app-2") == 2
    assert sink.committed_batch(spark, table, "app-3") == -1


def _stop_check(spark, text: str) -> bool:
    """Spark's own test for "the query was stopped" on the error text a Python foreachBatch returns."""
    jvm = spark._jvm
    check = jvm.org.apache.spark.sql.execution.streaming.runtime.StreamExecution.isInterruptionException
    return check(jvm.py4j.Py4JException(text), spark.sparkContext._jsc.sc())


def test_a_batch_interrupted_by_the_stop_ends_in_a_short_error_spark_takes_for_a_stop(spark):
    jvm = spark._jvm

    def process(batch, batch_id):  # a Spark call the query's stop interrupts
        jvm.java.lang.Thread.currentThread().interrupt()
        jvm.java.lang.Thread.sleep(1000)

    with pytest.raises(sink.BatchInterrupted) as caught:
        sink.interruptible(process)(None, 7)
    # what the Python side of foreachBatch hands back to Spark: the traceback, as text
    text = "An exception was raised by the Python Proxy. Return Message: " + "".join(
        traceback.format_exception(caught.value)
    )
    assert len(text) < 2_000 and _stop_check(spark, text)


def test_an_interruption_found_among_the_causes_and_other_errors_unchanged(spark):
    jvm = spark._jvm
    cancelled = jvm.org.apache.spark.SparkException("job aborted", jvm.java.lang.InterruptedException())
    other = Py4JJavaError(
        "An error occurred while calling o1.save.\n", jvm.java.lang.IllegalStateException("boom")
    )

    def raising(error):
        def process(batch, batch_id):
            raise error

        return sink.interruptible(process)

    with pytest.raises(sink.BatchInterrupted, match="InterruptedException"):
        raising(Py4JJavaError("An error occurred while calling o1.save.\n", cancelled))(None, 1)
    with pytest.raises(Py4JJavaError) as caught:
        raising(other)(None, 1)
    assert caught.value is other
    with pytest.raises(ValueError):
        raising(ValueError("not from the JVM"))(None, 1)
