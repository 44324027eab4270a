"""The newest model version kept in memory for a streaming query that joins it in its own plan.

A stream-static join re-plans its static side every micro-batch, so a join with a Delta read of
the newest version paid a log update and a scan of the table in every batch: 0.5-0.8 s of a
20k-reading batch against 20k series on two cores, against 0.15-0.2 s from memory. Spark's cache
manager puts a cached copy in place of any part of a plan that matches the plan cached, in every
micro-batch's plan too. ``ModelCache`` keeps such a copy of exactly the frame the query joins,
and caches it again when the table's last commit moves, so a new version still reaches the
running query (within ``refresh_seconds``) without a restart.

While nothing is cached (before the first load, between dropping the old copy and caching the
new one, or with ``refresh_seconds`` 0) a batch reads the table itself, as it did before: the
copy saves time and never changes which rows a batch can see beyond that delay. A batch that is
running when the copy is replaced may read some of the model's partitions from the table; each
row then carries the version that scored it (``model_version``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from pyspark.sql import DataFrame, SparkSession

from . import model_store

log = logging.getLogger(__name__)


def follow(
    name: str,
    running: Callable[[], bool],
    every_s: float,
    step: Callable[[], None],
    at_once: bool = True,
    done: Callable[[], None] | None = None,
) -> threading.Thread:
    """Run ``step`` (at once, or after a first pause) and then every ``every_s`` in a daemon thread
    while ``running()``, then ``done``; a failing step is logged and tried again next time (the
    batches go on with the model they have)."""

    def loop() -> None:
        pause = 0.0 if at_once else every_s
        while running():
            time.sleep(pause)
            pause = every_s
            try:
                step()
            except Exception as error:  # noqa: BLE001 - keep the last good model
                log.warning("detect: %s failed (%s); keeping what is loaded", name, error)
        if done is not None:
            try:
                done()
            except Exception as error:  # noqa: BLE001 - e.g. the session stopped with the query
                log.debug("detect: %s clean-up skipped (%s)", name, error)

    thread = threading.Thread(target=loop, name=f"spark-anomaly-{name}", daemon=True)
    thread.start()
    return thread


# Live holders per cached plan (by its semantic hash): the cache manager keeps one copy per plan,
# so a holder that closes (the cache of a query that stopped) must not drop the copy another
# holder of the same plan (a newer query in the same JVM) still uses.
_holders: Counter[int] = Counter()
_holders_lock = threading.Lock()


class ModelCache:
    """Keeps ``frame()`` (a read of ``table``'s newest version, built the same way on every call)
    cached while the table's last commit stays the same."""

    def __init__(
        self, spark: SparkSession, table: str, frame: Callable[[], DataFrame], refresh_seconds: float
    ):
        self.spark, self.table, self.refresh_seconds = spark, table, refresh_seconds
        self._frame = frame
        self._cached: DataFrame | None = None
        self._commit: int | None = None
        self._plan: int | None = None  # semantic hash of the plan held (counted in _holders)
        self._lock = threading.Lock()

    @property
    def commit(self) -> int | None:
        """The table commit the cached copy was read at (None: nothing cached)."""
        return self._commit

    @property
    def cached(self) -> bool:
        """Whether the copy is still in the cache manager (if something dropped it, such as an
        ``unpersist`` of the same plan elsewhere, the next refresh caches it again)."""
        if self._cached is None:
            return False
        level = self._cached.storageLevel
        return level.useMemory or level.useDisk

    def refresh(self) -> bool:
        """Cache the newest version if the table's last commit moved; True when it did."""
        with self._lock:
            last = model_store.last_commit(self.spark, self.table)
            if last is None or (last[0] == self._commit and self.cached):
                return False
            # The old copy goes first, for every holder of the plan: the cache manager keeps one
            # copy per plan (caching a plan it holds does nothing), and the new frame's plan is
            # the same as the old one's, only the table behind it changed; they all want the
            # newest version.
            fresh = self._frame()
            fresh.unpersist()
            fresh.cache()
            series = fresh.count()
            self._hold(fresh.semanticHash())
            self._cached, self._commit = fresh, last[0]
        log.warning("detect: model cached for the stateful join at commit %d (%d series)", last[0], series)
        return True

    def load(self) -> None:
        """Cache the newest version now (before the query starts, so its first batch finds it);
        with ``refresh_seconds`` 0 nothing is cached and every batch reads the table."""
        if self.refresh_seconds > 0:
            try:
                self.refresh()
            except Exception as error:  # noqa: BLE001 - the batches read the table meanwhile
                log.warning(
                    "detect: caching the model failed (%s); trying again in %ss", error, self.refresh_seconds
                )

    def follow(self, running: Callable[[], bool]) -> None:
        """Look for a new commit every ``refresh_seconds`` while ``running()``."""
        if self.refresh_seconds > 0:
            follow("model-cache", running, self.refresh_seconds, self.refresh, at_once=False, done=self.close)

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _hold(self, plan: int) -> None:
        """Count this holder once (its ``frame()`` always builds the same plan)."""
        with _holders_lock:
            if self._plan is None:
                _holders[plan] += 1
                self._plan = plan

    def _drop(self) -> None:
        """Stop holding the copy; drop it unless another holder of the same plan still uses it."""
        with _holders_lock:
            if self._plan is not None:
                _holders[self._plan] -= 1
                if _holders[self._plan] <= 0:
                    del _holders[self._plan]
                    if self._cached is not None:
                        self._cached.unpersist()
            self._cached, self._commit, self._plan = None, None, None
