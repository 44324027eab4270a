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
    assert detail.properties["delta.checkpointInterval"] == "100"
    assert spark.read.format("delta").load(table).schema == RESULT_SCHEMA
    version = DeltaTable.forPath(spark, table).history(1).collect()[0].version
    sink.ensure_table(spark, table, RESULT_SCHEMA, props)  # exists: no new commit
    assert DeltaTable.forPath(spark, table).history(1).collect()[0].version == version


def test_append_once_skips_a_replayed_batch(spark, tmp_path):
    table = str(tmp_path / "t")
    df = spark.createDataFrame([(1, "a"), (2, "b")], "id long, v string")
    sink.append_once(df, table, "app-1", 0)
    sink.append_once(df, table, "app-1", 0)  # replay of batch 0
    sink.append_once(df, table, "app-1", 1)
    sink.append_once(df, table, "app-2", 0)  # another writer's batch 0 is its own
    assert spark.read.format("delta").load(table).count() == 6
