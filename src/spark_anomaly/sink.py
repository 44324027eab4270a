"""Idempotent Delta appends for foreachBatch: the exactly-once half of the sink.

Structured Streaming may replay a micro-batch after a crash (its offsets were logged, its commit
was not), and only then: within one run of a query every batch id is executed once, and the batch
a restarted query may replay is the first one it runs. ``BatchAppender`` records (app id, batch id)
in each commit's ``userMetadata``, reads the last one back from the table's history once per query
start, and skips any batch id at or below it.

Why not Delta's ``txnAppId``/``txnVersion`` on every commit: in Delta 4.4 the transaction-id
lookup reconstructs the whole table snapshot (three Spark jobs) on every write, about 400 ms of a
micro-batch's 1 s on two cores. The first write of each query run still carries them, so a table
written by an older version of this job (transaction ids, no ``userMetadata``) resumes exactly once;
not into a table that holds nothing but its creation, which no writer can have written a batch to.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable

from delta.tables import DeltaTable
from py4j.protocol import Py4JJavaError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

# Delta collects min/max statistics for data skipping on the first 32 columns by default: for the
# result table that is every column, on every row written. Queries filter by series, time, detector
# and score, so statistics on those are kept and the rest (strings such as ``reason``) are skipped.
RESULT_STATS_COLUMNS = "sensor_id,metric,ts,detector,score"
# Properties of the tables the detect job appends to every micro-batch. Delta writes a log
# checkpoint inside the commit that reaches the interval, which made that micro-batch the slowest
# of a run; the detect job writes them from a background thread every LOG_CHECKPOINT_COMMITS
# commits instead (``log_checkpoints``), and the table's own interval is only a safety net.
LOG_CHECKPOINT_COMMITS = 100
STREAM_TABLE_PROPERTIES = {"delta.checkpointInterval": "1000"}
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


# The key of (app id, batch id) in a commit's userMetadata.
BATCH_KEY = "spark_anomaly_batch"
# Commits searched first for the app's last batch (then the whole history): a sink table's recent
# commits are its own writers' (the intake and stateful queries, one commit per batch each).
RECENT_COMMITS = 50


def committed_batch(spark: SparkSession, table: str, txn_app_id: str) -> int:
    """The highest batch id ``txn_app_id`` committed to ``table`` (-1: none, or no table)."""
    return _history(spark, table, txn_app_id)[0]


def _history(spark: SparkSession, table: str, txn_app_id: str) -> tuple[int, bool]:
    """(``committed_batch``, whether ``table`` holds no more than its creation: no table, or one
    commit that created it with no data, as ``ensure_table`` does)."""
    if not DeltaTable.isDeltaTable(spark, table):
        return -1, True
    history = DeltaTable.forPath(spark, table)
    recent = history.history(RECENT_COMMITS).select("version", "operation", "userMetadata").collect()
    fresh = [(r.version, r.operation) for r in recent] == [(0, "CREATE TABLE")]
    last = _last_mark(recent, txn_app_id)
    if last < 0 and len(recent) == RECENT_COMMITS:  # the history goes further back
        rows = history.history().select("userMetadata").where("userMetadata IS NOT NULL").collect()
        last = _last_mark(rows, txn_app_id)
    return last, fresh


def _last_mark(rows: list, txn_app_id: str) -> int:
    """The highest batch id marked for ``txn_app_id`` in these commits' ``userMetadata`` (-1: none)."""
    marks = (_batch_mark(row.userMetadata) for row in rows if row.userMetadata)
    return max((mark["batch"] for mark in marks if mark and mark.get("app") == txn_app_id), default=-1)


def _batch_mark(user_metadata: str) -> dict | None:
    try:
        mark = json.loads(user_metadata).get(BATCH_KEY)
    except (ValueError, AttributeError):
        return None  # someone else's userMetadata
    return mark if isinstance(mark, dict) else None


class BatchAppender:
    """Appends each micro-batch of one streaming query to one Delta table at most once.

    One instance per query run (built when the query starts): the table's history is read on the
    first batch; after that the last committed batch id is known in memory.
    """

    def __init__(self, table: str, txn_app_id: str) -> None:
        self.table = table
        self.app_id = txn_app_id
        self._last: int | None = None

    def append(self, df: DataFrame, batch_id: int) -> bool:
        """Write ``df`` as batch ``batch_id`` unless known to be committed; False when skipped here."""
        first, fresh = self._last is None, False
        if first:
            self._last, fresh = _history(df.sparkSession, self.table, self.app_id)
        if batch_id <= self._last:
            return False
        writer = (
            df.write.format("delta")
            .mode("append")
            .option("mergeSchema", "false")
            .option("userMetadata", json.dumps({BATCH_KEY: {"app": self.app_id, "batch": batch_id}}))
        )
        # Also skipped by Delta if an older job version committed it with a transaction id; a table
        # with nothing in it yet cannot hold the batch, so its first write spares the check (0.4–1 s).
        if first and not fresh:
            writer = writer.option("txnAppId", self.app_id).option("txnVersion", str(batch_id))
        writer.save(self.table)
        self._last = batch_id
        return True


# The exceptions Spark takes for "interrupted by stop()" (StreamExecution.IO_EXCEPTION_NAMES).
INTERRUPTIONS = (
    "java.lang.InterruptedException",
    "java.io.InterruptedIOException",
    "java.nio.channels.ClosedByInterruptException",
)


class BatchInterrupted(RuntimeError):
    """A micro-batch's Spark call was interrupted: its query is stopping."""


def _interruption(error: Py4JJavaError) -> str | None:
    """The Java interruption behind ``error`` (itself or a cause a few levels down), if any."""
    cause, depth = error.java_exception, 0
    while cause is not None and depth < 8:
        name = cause.getClass().getName()
        if name in INTERRUPTIONS:
            return name
        cause, depth = cause.getCause(), depth + 1
    return None


def interruptible(process: Callable[[DataFrame, int], None]) -> Callable[[DataFrame, int], None]:
    """A ``foreachBatch`` function whose batch, interrupted by the query's stop, ends in a short error.

    Spark tells a stop from a failure by matching the text of the Python error with a regular
    expression whose recursion grows with the text; the Java stack trace of an interrupted Delta
    write (13k characters) overflowed the stream thread's stack, so a query stopped during a
    batch logged a StackOverflowError instead of stopping quietly. The short error keeps the words
    Spark looks for (its pattern: ``Py4JJavaError: An error occurred while calling`` ... the
    interruption's class name) and drops the trace; every other error passes unchanged.
    """

    @functools.wraps(process)
    def run(batch: DataFrame, batch_id: int) -> None:
        try:
            process(batch, batch_id)
        except Py4JJavaError as error:
            name = _interruption(error)
            if name is None:
                raise
            raise BatchInterrupted(
                f"py4j.protocol.Py4JJavaError: An error occurred while calling Spark in batch {batch_id}: {name}"
            ) from None

    return run
