"""Idempotent Delta appends for foreachBatch: the exactly-once half of the sink.

Structured Streaming may replay a micro-batch after a crash (its offsets were logged, its commit
was not). Delta's ``txnAppId``/``txnVersion`` writer options record (app id, batch id) in the
same commit as the data, so a replayed batch is skipped instead of appended twice.
"""

from __future__ import annotations

import hashlib

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

# Delta collects min/max statistics for data skipping on the first 32 columns by default: for the
# result table that is every column, on every row written. Queries filter by series, time, detector
# and score, so statistics on those are kept and the rest (strings such as ``reason``) are skipped.
RESULT_STATS_COLUMNS = "sensor_id,metric,ts,detector,score"
# Properties of the tables the detect job appends to every micro-batch. A Delta checkpoint (a
# Parquet rewrite of the log) every 100 commits instead of 10: the checkpointing batch was the
# slowest commit (p99 of a commit 1.2 s -> 0.6 s measured at 78k rows per batch).
STREAM_TABLE_PROPERTIES = {"delta.checkpointInterval": "100"}
RESULT_TABLE_PROPERTIES = {**STREAM_TABLE_PROPERTIES, "delta.dataSkippingStatsColumns": RESULT_STATS_COLUMNS}


def app_id(checkpoint: str, table: str) -> str:
    """Stable per (query, table): derived from the checkpoint location, which a restart reuses."""
    return "spark-anomaly-" + hashlib.sha1(f"{checkpoint}|{table}".encode()).hexdigest()[:16]


def ensure_table(
    spark: SparkSession, table: str, schema: T.StructType, properties: dict[str, str] | None = None
) -> None:
    """Create the Delta table at path ``table`` with ``schema`` unless it exists (then a no-op)."""
    builder = DeltaTable.createIfNotExists(spark).location(table).addColumns(schema)
    for key, value in (properties or {}).items():
        builder = builder.property(key, value)
    builder.execute()


def append_once(df: DataFrame, table: str, txn_app_id: str, batch_id: int) -> None:
    (
        df.write.format("delta")
        .mode("append")
        .option("txnAppId", txn_app_id)
        .option("txnVersion", str(batch_id))
        .option("mergeSchema", "false")
        .save(table)
    )
