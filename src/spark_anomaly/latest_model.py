"""The detect job's view of the model: the latest version, refreshed while the query runs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pyspark.sql import DataFrame, SparkSession

from . import model_store
from .model_cache import follow

log = logging.getLogger(__name__)

KEYS = ("sensor_id", "metric")  # a series: what the scoring join matches on


class LatestModel:
    """Holds the newest model version as a cached DataFrame on the driver.

    ``get`` is called once per micro-batch. The first call loads the model; after that, once
    ``follow`` has started it, a daemon thread looks at the Delta table's commit number every
    ``refresh_seconds`` and loads a new version beside the running batches. The look-up and a
    reload (a few hundred ms of Spark jobs) thus stay off the micro-batch path, where they were
    the slowest batches' extra latency; a new version is still picked up within a batch or two.
    Without ``follow`` (or with ``refresh_seconds`` 0) ``get`` checks inline, at most that often.
    ``prepare`` turns the stored rows into what the batches join with (the zscore band, say), once
    per version instead of once per reading.

    The frame ``get`` returns carries its join strategy as a hint. Spark rebuilds a broadcast for
    every plan, so every micro-batch collects, hashes and broadcasts the whole model again: 0.1 s
    for 100k series, 0.9 s for 1M on two cores. Above ``broadcast_max_series`` the model is cached
    hash-partitioned by series instead, and each batch is shuffled to it (a shuffled hash join);
    a 20k-reading batch against 1M series then took 0.7 s instead of 1.3 s, a 2M-reading one
    1.8 s instead of 2.0 s (at 100k series broadcasting was still the quicker).
    """

    def __init__(
        self,
        spark: SparkSession,
        table: str,
        refresh_seconds: float,
        prepare: Callable[[DataFrame], DataFrame] | None = None,
        broadcast_max_series: int | None = None,
    ) -> None:
        self.spark, self.table, self.refresh_seconds = spark, table, refresh_seconds
        self._prepare = prepare or (lambda frame: frame)
        self.broadcast_max_series = broadcast_max_series
        # (version, frame) swapped as one reference, so a batch never sees a mixed pair
        self._current: tuple[int | None, DataFrame] = (
            None,
            self._prepare(spark.createDataFrame([], model_store.PRIOR_SCHEMA)),
        )
        self._cached: list[DataFrame] = []  # the cached frames (unhinted), oldest first
        self.series = 0  # rows of the current version
        self._commit: int | None = None
        self._checked_at = float("-inf")
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def version(self) -> int | None:
        return self._current[0]

    def get(self) -> tuple[int | None, DataFrame]:
        if self._thread is None or self._checked_at == float("-inf"):
            self.refresh()
        return self._current

    def follow(self, running: Callable[[], bool]) -> None:
        """Refresh in a daemon thread for as long as ``running()`` is true (the detect queries)."""
        if self.refresh_seconds <= 0 or self._thread is not None:
            return

        # The first look-up runs at once, beside the query's own start (offsets, planning), so the
        # first micro-batch usually finds the model loaded instead of loading it.
        self._thread = follow(
            "model-refresh", running, self.refresh_seconds, lambda: self.refresh(force=True)
        )

    def refresh(self, force: bool = False) -> None:
        """Load the table's newest version if its commit number moved (checked at most every
        ``refresh_seconds`` unless ``force``)."""
        with self._lock:
            now = time.monotonic()
            if not force and now - self._checked_at < self.refresh_seconds:
                return
            last = model_store.last_commit(self.spark, self.table)
            if last is not None and last[0] != self._commit:
                self._load(last)
            # Marked checked only once done: a batch asking meanwhile waits for this load instead
            # of scoring with the previous (at first: the empty) model; a failed look-up is tried
            # again by the next batch, which then fails as it did before the thread existed.
            self._checked_at = now

    def close(self) -> None:
        """Drop the cached versions (a batch still planning with one would read the table again)."""
        with self._lock:
            while self._cached:
                self._cached.pop().unpersist()

    def _load(self, last: tuple[int, str | None]) -> None:
        # the commit just read names the version and its series (no second look-up of the log)
        info = model_store.latest_version(self.spark, self.table, last)
        if info is None:
            return
        if info.version == self.version:  # a commit that kept the version (old ones pruned, OPTIMIZE)
            self._commit = last[0]
            return
        stored = model_store.read_version(self.spark, self.table, info.version)
        frame = self._prepare(stored.select(*KEYS, *model_store.PRIOR_COLUMNS))
        shuffled = self.broadcast_max_series is not None and info.series > self.broadcast_max_series
        if shuffled:  # partitioned as a batch's shuffle will be, so the model side stays in place
            frame = frame.repartition(int(self.spark.conf.get("spark.sql.shuffle.partitions")), *KEYS)
        fresh = frame.cache()
        series = fresh.count()
        self._cached.append(fresh)
        if len(self._cached) > 2:  # two swaps old: no batch still plans with it
            self._cached.pop(0).unpersist()
        hinted = fresh.hint("shuffle_hash" if shuffled else "broadcast")
        self._current, self._commit, self.series = (info.version, hinted), last[0], series
        log.warning(
            "detect: model version %d loaded (%d series, %s join)",
            info.version,
            series,
            "shuffled hash" if shuffled else "broadcast",
        )
