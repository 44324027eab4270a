"""Batch replay: the stateful detectors over history, with the streaming driver's numbers.

Both functions call ``series_runner.run_series`` per series in arrival order, as the stream
does, so a replay of the same readings gives the same scores (a test holds them to it).
Arrival order is (source_partition, source_offset) when present, else ``ts``.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from pyspark.sql import DataFrame

from .config import DetectorSpec
from .detectors import SeriesPrior
from .results import RESULT_FIELDS, RESULT_SCHEMA
from .series_runner import bind, run_series


def _order(pdf: pd.DataFrame) -> list[str]:
    cols = [c for c in ("source_partition", "source_offset") if c in pdf.columns and pdf[c].notna().all()]
    return cols or ["ts"]


def _frames(pdf: pd.DataFrame, detectors, prior: SeriesPrior | None = None) -> list[pd.DataFrame]:
    pdf = pdf.sort_values(_order(pdf), kind="stable", ignore_index=True)
    results, _ = run_series(detectors, pdf["value"].to_numpy(float), pdf["ts"].to_numpy("int64"), None, prior)
    out = []
    for tag, frame in results:
        f = frame.copy()
        for c in ("sensor_id", "metric", "ts", "value"):
            f[c] = pdf[c].to_numpy()
        for c in ("source_partition", "source_offset"):
            f[c] = pdf[c].to_numpy() if c in pdf.columns else None
        f["detector"] = tag
        out.append(f.reindex(columns=RESULT_FIELDS))
    return out


def replay_pandas(
    readings: pd.DataFrame,
    specs: list[DetectorSpec],
    priors: Mapping[tuple[str, str], SeriesPrior] | None = None,
) -> pd.DataFrame:
    """Readings (sensor_id, metric, ts, value[, source_partition, source_offset]) -> results.

    ``priors``: the trained model row per (sensor_id, metric), as the stream joins it in for the
    detectors that use one; a series without one is replayed without, as the stream does.
    """
    detectors = bind(specs)
    priors = priors or {}
    frames = [
        f
        for key, g in readings.groupby(["sensor_id", "metric"], sort=True)
        for f in _frames(g, detectors, priors.get(key))
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RESULT_FIELDS)


def replay_spark(readings: DataFrame, specs: list[DetectorSpec]) -> DataFrame:
    """The same over a Spark DataFrame of history: one pandas group per series, in parallel."""
    detectors = bind(specs)

    def fn(pdf: pd.DataFrame) -> pd.DataFrame:
        return pd.concat(_frames(pdf, detectors), ignore_index=True)

    return readings.groupBy("sensor_id", "metric").applyInPandas(fn, schema=RESULT_SCHEMA)
