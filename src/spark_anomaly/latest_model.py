"""The detect job's view of the model: the latest version, refreshed while the query runs."""

from __future__ import annotations

import logging
import time

from pyspark.sql import DataFrame, SparkSession

from . import model_store

log = logging.getLogger(__name__)


class LatestModel:
    """Holds the newest model version as a cached DataFrame on the driver.

    ``get`` is called once per micro-batch; it looks at the Delta table's commit number at most
    every ``refresh_seconds`` (one small log read) and reloads only when it moved, so a new
    version is picked up within a batch or two and an unchanged one costs nothing.
    """

    def __init__(self, spark: SparkSession, table: str, refresh_seconds: float) -> None:
        self.spark, self.table, self.refresh_seconds = spark, table, refresh_seconds
        self.version: int | None = None
        self.frame: DataFrame = spark.createDataFrame([], model_store.PRIOR_SCHEMA)
        self._commit: int | None = None
        self._checked_at = float("-inf")

    def get(self) -> tuple[int | None, DataFrame]:
        now = time.monotonic()
        if now - self._checked_at >= self.refresh_seconds:
            self._checked_at = now
            commit = model_store.commit_version(self.spark, self.table)
            if commit is not None and commit != self._commit:
                self._load(commit)
        return self.version, self.frame

    def _load(self, commit: int) -> None:
        version, df = model_store.read_latest(self.spark, self.table)
        if version is None or df is None:
            return
        fresh = df.select("sensor_id", "metric", *model_store.PRIOR_COLUMNS).cache()
        series = fresh.count()
        old = self.frame
        self.frame, self.version, self._commit = fresh, version, commit
        old.unpersist()
        log.warning("detect: model version %d loaded (%d series)", version, series)
