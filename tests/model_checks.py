"""Reading a model version back, and the check that an incremental version equals a full retrain."""

from __future__ import annotations

import pytest

from spark_anomaly import model_store


def model_stats(spark, cfg, version: int) -> dict:
    """The rows of one model version, by series ``(sensor_id, metric)``."""
    rows = model_store.read_version(spark, cfg.path(cfg.model.table), version).collect()
    return {(r.sensor_id, r.metric): r for r in rows}


def assert_same_moments(got: dict, want: dict) -> None:
    """Same series, counts, ranges and times exactly; mean and M2 up to float merge order."""
    assert set(got) == set(want)
    for key, w in want.items():
        g = got[key]
        assert (g.n, g.min, g.max, g.first_ts, g.last_ts) == (w.n, w.min, w.max, w.first_ts, w.last_ts)
        assert g.mean == pytest.approx(w.mean, rel=1e-12) and g.m2 == pytest.approx(w.m2, rel=1e-9)
