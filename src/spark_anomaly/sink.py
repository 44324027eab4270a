"""Idempotent Delta appends for foreachBatch: the exactly-once half of the sink.

Structured Streaming may replay a micro-batch after a crash (its offsets were logged, its commit
was not). Delta's ``txnAppId``/``txnVersion`` writer options record (app id, batch id) in the
same commit as the data, so a replayed batch is skipped instead of appended twice.
"""

from __future__ import annotations

import hashlib

from pyspark.sql import DataFrame


def app_id(checkpoint: str, table: str) -> str:
    """Stable per (query, table): derived from the checkpoint location, which a restart reuses."""
    return "spark-anomaly-" + hashlib.sha1(f"{checkpoint}|{table}".encode()).hexdigest()[:16]


def append_once(df: DataFrame, table: str, txn_app_id: str, batch_id: int) -> None:
    (
        df.write.format("delta")
        .mode("append")
        .option("txnAppId", txn_app_id)
        .option("txnVersion", str(batch_id))
        .option("mergeSchema", "false")
        .save(table)
    )
