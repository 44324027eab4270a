"""The zscore detector as Spark column expressions (the stateless streaming path).

Same formulas, same order of operations as ``detectors.zscore.score_arrays``; a test checks the
two agree row for row. The work is split where it is cheapest: everything that depends on the
series alone (its floored std and band) is computed once per model version by ``zscore_model``,
and each reading only compares against the band (``zscore_columns``). With the band per reading,
the anomalies-only path took about 5 % more CPU per event (10 % on warm runs).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from .detectors import zscore
from .detectors.stats import _AS_A, _AS_P


def _erf_approx(x: Column) -> Column:
    t = F.lit(1.0) / (F.lit(1.0) + F.lit(_AS_P) * x)
    a1, a2, a3, a4, a5 = _AS_A
    poly = ((((F.lit(a5) * t + F.lit(a4)) * t + F.lit(a3)) * t + F.lit(a2)) * t + F.lit(a1)) * t
    return F.lit(1.0) - poly * F.exp(-x * x)


def band_columns(cfg: zscore.ZScoreConfig) -> list[Column]:
    """A series' std (floored), band and whether the floor was used, from ``n``, ``mean``, ``m2``;
    null (the floor flag false) for a series with fewer than two readings. Prefixed ``band_``:
    the result has its own ``lower``/``upper``."""
    n, mean, m2 = F.col("n"), F.col("mean"), F.col("m2")
    known = F.coalesce(n, F.lit(0)) >= 2
    raw_std = F.when(known, F.sqrt(m2 / (n - 1)))
    floor = F.greatest(F.lit(cfg.std_floor_abs), F.lit(cfg.std_floor_rel) * F.abs(mean))
    floored = known & (raw_std < floor)
    std = F.when(floored, floor).otherwise(raw_std)
    return [
        std.alias("band_std"),
        (mean - F.lit(cfg.k) * std).alias("band_lower"),
        (mean + F.lit(cfg.k) * std).alias("band_upper"),
        floored.alias("band_floored"),
    ]


def zscore_model(prior: DataFrame, cfg: zscore.ZScoreConfig) -> DataFrame:
    """The model as the scoring join wants it: key, ``n``, ``mean`` and the band columns."""
    return prior.select("sensor_id", "metric", "n", "mean", *band_columns(cfg))


def zscore_columns(cfg: zscore.ZScoreConfig) -> dict[str, Column]:
    """lower, upper, score, probability, is_anomaly, reason (by name) of a reading (``value``) joined with
    its series' ``zscore_model`` row (all null for a series the model does not know)."""
    x, n, mean = F.col("value"), F.coalesce(F.col("n"), F.lit(0)), F.col("mean")
    std, lower, upper = F.col("band_std"), F.col("band_lower"), F.col("band_upper")
    known = n >= 2
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
    reason = F.when(F.col("band_floored"), F.concat(base, F.lit(zscore.REASON_FLOOR))).otherwise(base)
    is_anomaly = above | below
    if cfg.unknown_policy == "anomaly":
        is_anomaly = is_anomaly | (n <= 0)
    return {
        "lower": F.when(known, lower),
        "upper": F.when(known, upper),
        "score": prob,
        "probability": prob,
        "is_anomaly": is_anomaly,
        "reason": reason,
    }
