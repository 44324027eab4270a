"""zscore of a micro-batch of readings against the model, as result-contract rows.

The detect job runs this in ``foreachBatch``, once per micro-batch; everything but the join is a
column expression built once per (column names, model version) by a ``ColumnCache``.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from . import aggregation, parsing, scoring
from .column_cache import ColumnCache
from .detectors import zscore
from .results import result_columns

KEYS = ["sensor_id", "metric"]


class ZScoreBatch:
    """Scores readings against a ``scoring.zscore_model`` frame; optionally only the anomalies.

    The join is the one the model frame's hint asks for (``LatestModel``: broadcast, or a shuffle
    for a large model); without one Spark picks by the model's size.
    """

    def __init__(self, cfg: zscore.ZScoreConfig, anomalies_only: bool = False) -> None:
        self.cfg = cfg
        self.anomalies_only = anomalies_only
        self._columns = ColumnCache(self._build)
        self._is_anomaly = F.col("is_anomaly")

    def __call__(self, readings: DataFrame, model: DataFrame, version: int | None) -> DataFrame:
        out = readings.join(model, KEYS, "left").select(*self._columns(readings, version))
        return out.where(self._is_anomaly) if self.anomalies_only else out

    def _build(self, names: tuple[str, ...], version: int | None) -> list[Column]:
        carried = [*parsing.READING_COLUMNS, *parsing.LINEAGE_COLUMNS]
        carried += [c for c in aggregation.AGGREGATED_COLUMNS if c in names]
        exprs = {name: F.col(name) for name in carried}
        exprs["detector"] = F.lit("zscore")
        exprs["model_version"] = F.lit(version)
        exprs.update(scoring.zscore_columns(self.cfg))
        return result_columns(exprs)
