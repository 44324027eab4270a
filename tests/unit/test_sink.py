"""The Delta sink: table creation with the result contract, idempotent appends."""

from delta.tables import DeltaTable

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
