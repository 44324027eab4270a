"""ColumnCache: one build per (column names, extra key), a bounded number kept."""

from __future__ import annotations

from types import SimpleNamespace

from spark_anomaly.column_cache import KEEP, ColumnCache


def test_builds_once_per_names_and_extra_key_and_keeps_a_bounded_number():
    builds = []
    cache = ColumnCache(lambda names, version: builds.append((names, version)) or [names, version])
    a, b = SimpleNamespace(columns=["x", "y"]), SimpleNamespace(columns=["x", "y", "z"])
    assert cache(a, 1) == [("x", "y"), 1]
    assert cache(SimpleNamespace(columns=["x", "y"]), 1) == [("x", "y"), 1]  # same names: reused
    cache(b, 1)
    cache(a, 2)
    assert builds == [(("x", "y"), 1), (("x", "y", "z"), 1), (("x", "y"), 2)]
    for version in range(3, 3 + KEEP):  # a long-running query sees many model versions
        cache(a, version)
    assert len(cache._built) <= KEEP
    cache(a, 1)  # dropped with the rest: built again, still right
    assert builds[-1] == (("x", "y"), 1)
