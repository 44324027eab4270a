"""zscore (seed 003): a reading against its series' trained (n, mean, M2) model.

Stateless per reading: the band comes from the train job's model, not from the stream. The
streaming job evaluates the same formulas as Spark column expressions (see
``spark_anomaly.scoring``); ``score_arrays`` is the numpy reference both are tested against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from .base import RESULT_COLUMNS, Detector, SeriesPrior, Verdict
from .stats import erf_approx


@dataclass(frozen=True)
class ZScoreConfig:
    k: float = 4.0
    # A stuck sensor has std 0; without a floor every later change would be an infinite z.
    # The floor is relative to |mean| with an absolute minimum, and the reason says it was used.
    std_floor_rel: float = 1e-3
    std_floor_abs: float = 1e-9
    # A series the model does not know: "report" it (reason "unknown source", not an anomaly)
    # or flag it as an "anomaly" as seed 000 did.
    unknown_policy: str = "report"

    def __post_init__(self) -> None:
        if not self.k > 0:
            raise ValueError(f"zscore.k must be > 0, got {self.k}")
        if self.std_floor_rel < 0 or self.std_floor_abs <= 0:
            raise ValueError("zscore std floors must be >= 0 (relative) and > 0 (absolute)")
        if self.unknown_policy not in ("report", "anomaly"):
            raise ValueError(
                f"zscore.unknown_policy must be 'report' or 'anomaly', got {self.unknown_policy!r}"
            )


REASON_OK = "ok"
REASON_ABOVE = "above upper bound"
REASON_BELOW = "below lower bound"
REASON_UNKNOWN = "unknown source"
REASON_SHORT = "insufficient history"
REASON_FLOOR = " (std floored)"


def score_arrays(
    x: np.ndarray, n: np.ndarray, mean: np.ndarray, m2: np.ndarray, config: ZScoreConfig
) -> pd.DataFrame:
    """Vectorised zscore over aligned arrays; n = 0 (or NaN) marks a series the model lacks."""
    x = np.asarray(x, dtype=float)
    n = np.nan_to_num(np.asarray(n, dtype=float), nan=0.0)
    mean = np.asarray(mean, dtype=float)
    m2 = np.asarray(m2, dtype=float)
    known = n >= 2
    with np.errstate(invalid="ignore", divide="ignore"):
        raw_std = np.sqrt(np.where(known, m2 / (n - 1), np.nan))
        floor = np.maximum(config.std_floor_abs, config.std_floor_rel * np.abs(mean))
        floored = known & (raw_std < floor)
        std = np.where(floored, floor, raw_std)
        z = (x - mean) / std
        lower = mean - config.k * std
        upper = mean + config.k * std
        prob = erf_approx(np.abs(z) / np.sqrt(2.0))
    above = known & (x > upper)
    below = known & (x < lower)
    reason = np.full(x.shape, REASON_OK, dtype=object)
    reason[above] = REASON_ABOVE
    reason[below] = REASON_BELOW
    reason[floored] = reason[floored] + REASON_FLOOR
    reason[(n > 0) & ~known] = REASON_SHORT
    reason[n <= 0] = REASON_UNKNOWN
    prob = np.where(known, prob, 0.0)
    return pd.DataFrame(
        {
            "lower": lower,
            "upper": upper,
            "score": prob,
            "probability": prob,
            "is_anomaly": above | below | ((n <= 0) & (config.unknown_policy == "anomaly")),
            "reason": reason,
        },
        columns=list(RESULT_COLUMNS),
    )


class ZScoreDetector(Detector):
    """Per-series view of ``score_arrays`` for replay and evaluation drivers.

    With a prior it scores against the trained model and learns nothing (seed 003).
    Without one the series is "unknown source", as the streaming job reports it.
    """

    name: ClassVar[str] = "zscore"

    uses_prior: ClassVar[bool] = True  # the stream joins the trained model in for it (SeriesPrior)
    config_cls: ClassVar[type] = ZScoreConfig

    def __init__(self, config: ZScoreConfig | None = None, prior: SeriesPrior | None = None) -> None:
        self.config = config or ZScoreConfig()
        self.prior = prior

    def _model(self) -> tuple[float, float, float]:
        p = self.prior
        return (0.0, np.nan, np.nan) if p is None else (float(p.n), p.mean, p.m2)

    def process(self, values: np.ndarray, ts: np.ndarray) -> pd.DataFrame:
        n, mean, m2 = self._model()
        size = len(values)
        return score_arrays(values, np.full(size, n), np.full(size, mean), np.full(size, m2), self.config)

    def process_one(self, x: float, ts: int) -> Verdict:
        row = self.process(np.array([x]), np.array([ts])).iloc[0]
        return Verdict(
            float(row.lower),
            float(row.upper),
            float(row.score),
            float(row.probability),
            bool(row.is_anomaly),
            str(row.reason),
        )

    def adopt_prior(self, prior: SeriesPrior) -> None:
        self.prior = prior

    def get_state(self) -> dict[str, Any]:
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        return None
