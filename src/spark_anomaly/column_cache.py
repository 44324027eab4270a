"""Column expressions built once and reused by every micro-batch of a query.

A ``foreachBatch`` function gets a new DataFrame each batch, but the expressions it applies
depend only on the configuration, the batch's column names and (for scoring) the model version.
Built per batch they cost hundreds of py4j calls each (every ``F.col``, ``F.lit`` and operator
is one): 200-300 ms of the driver's time per batch for the zscore path, with the executors idle.
A Column is an unresolved expression that any DataFrame can use, so they are built once per key.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from pyspark.sql import DataFrame

B = TypeVar("B")
# Keys kept: a query sees one set of column names, and a few model versions over its life.
KEEP = 8


class ColumnCache(Generic[B]):
    """``build(names, *extra)`` once per (the DataFrame's column names, *extra); at most KEEP kept."""

    def __init__(self, build: Callable[..., B]) -> None:
        self._build = build
        self._built: dict[tuple[Hashable, ...], B] = {}

    def __call__(self, df: DataFrame, *extra: Hashable) -> B:
        key = (tuple(df.columns), *extra)
        built = self._built.get(key)
        if built is None:
            if len(self._built) >= KEEP:
                self._built.clear()
            built = self._built[key] = self._build(*key)
        return built
