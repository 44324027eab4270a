"""The zscore detector as Spark column expressions (the stateless streaming path).

Same formulas, same order of operations as ``detectors.zscore.score_arrays``; a test checks the
two agree row for row. Expects columns ``value``, ``n``, ``mean``, ``m2`` (n null = unknown).
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from .detectors import zscore
from .detectors.stats import _AS_A, _AS_P


def _erf_approx(x: Column) -> Column:
    t = F.lit(1.0) / (F.lit(1.0) + F.lit(_AS_P) * x)
    a1, a2, a3, a4, a5 = _AS_A
    poly = ((((F.lit(a5) * t + F.lit(a4)) * t + F.lit(a3)) * t + F.lit(a2)) * t + F.lit(a1)) * t
    return F.lit(1.0) - poly * F.exp(-x * x)


def zscore_columns(cfg: zscore.ZScoreConfig) -> list[Column]:
    """lower, upper, score, probability, is_anomaly, reason for the zscore detector."""
    x, n, mean, m2 = F.col("value"), F.coalesce(F.col("n"), F.lit(0)), F.col("mean"), F.col("m2")
    known = n >= 2
    raw_std = F.when(known, F.sqrt(m2 / (n - 1)))
    floor = F.greatest(F.lit(cfg.std_floor_abs), F.lit(cfg.std_floor_rel) * F.abs(mean))
    floored = known & (raw_std < floor)
    std = F.when(floored, floor).otherwise(raw_std)
    lower = mean - F.lit(cfg.k) * std
    upper = mean + F.lit(cfg.k) * std
    z = (x - mean) / std
    prob = F.when(known, _erf_approx(F.abs(z) / F.lit(2.0**0.5))).otherwise(F.lit(0.0))
    above, below = known & (x > upper), known & (x < lower)
    base = (
        F.when(n <= 0, F.lit(zscore.REASON_UNKNOWN))
        .when(~known, F.lit(zscore.REASON_SHORT))
        .when(above, F.lit(zscore.REASON_ABOVE))
        .when(below, F.lit(zscore.REASON_BELOW))
        .otherwise(F.lit(zscore.REASON_OK))
    )
    reason = F.when(floored, F.concat(base, F.lit(zscore.REASON_FLOOR))).otherwise(base)
    is_anomaly = above | below
    if cfg.unknown_policy == "anomaly":
        is_anomaly = is_anomaly | (n <= 0)
    return [
        F.when(known, lower).alias("lower"),
        F.when(known, upper).alias("upper"),
        prob.alias("score"),
        prob.alias("probability"),
        is_anomaly.alias("is_anomaly"),
        reason.alias("reason"),
    ]
