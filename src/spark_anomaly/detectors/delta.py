"""delta: how unusual the *change* since an earlier reading is (rate of change, spikes, steps).

The level detectors (zscore, normal) compare a reading with the series' usual level, so a sudden
jump that stays inside the usual range goes unseen. This core scores the difference
d = x_t - x_{t-lag} against the running mean and standard deviation of past differences
(Welford, learned from the stream itself; the current difference is scored before it is
learned). lag = 1 is the first difference; a larger lag compares with the reading ``lag`` steps
back (e.g. one seasonal period).

Band: ``x_{t-lag} + mean_d ± k·sd_d`` (where the reading was expected to land given the usual
change); z = (d - mean_d) / sd_d; probability = P(|Z| < |z|) (two-sided); score = probability;
is_anomaly = |z| > k. No score until ``min_history`` differences were seen. Non-finite readings
are reported ("invalid value") and neither learned nor used as the previous reading.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .base import NAN, SeriesPrior, StepDetector

_SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class DeltaConfig:
    """lag: readings back to difference against. k: band half-width in sd of the differences.
    min_history: differences seen before scoring. sd_floor: smallest sd (a stuck series)."""

    lag: int = 1
    k: float = 4.0
    min_history: int = 10
    sd_floor: float = 1e-9

    def __post_init__(self) -> None:
        if self.lag < 1:
            raise ValueError(f"delta.lag must be >= 1, got {self.lag}")
        if not self.k > 0:
            raise ValueError(f"delta.k must be > 0, got {self.k}")
        if self.min_history < 2:
            raise ValueError(f"delta.min_history must be >= 2, got {self.min_history}")
        if not self.sd_floor > 0:
            raise ValueError(f"delta.sd_floor must be > 0, got {self.sd_floor}")


class DeltaDetector(StepDetector):
    name: ClassVar[str] = "delta"
    uses_prior: ClassVar[bool] = False
    config_cls: ClassVar[type] = DeltaConfig

    def __init__(self, config: DeltaConfig | None = None, prior: SeriesPrior | None = None) -> None:
        self.config = config or DeltaConfig()
        self._recent: deque[float] = deque(maxlen=self.config.lag)  # the last ``lag`` valid readings
        self._n = 0
        self._mean = 0.0
        self._m2 = 0.0

    def _step(self, x: float) -> tuple[float, float, float, float, bool, str]:
        c = self.config
        if not math.isfinite(x):
            return (NAN, NAN, 0.0, 0.0, False, "invalid value")
        if len(self._recent) < c.lag:
            self._recent.append(x)
            return (NAN, NAN, 0.0, 0.0, False, "warm-up: no earlier reading")
        base = self._recent[0]
        d = x - base
        n = self._n
        if n >= c.min_history:
            sd = max(math.sqrt(self._m2 / (n - 1)), c.sd_floor)
            centre = base + self._mean
            half = c.k * sd
            z = (d - self._mean) / sd
            prob = math.erf(abs(z) / _SQRT2)
            anomaly = abs(z) > c.k
            out = (centre - half, centre + half, prob, prob, anomaly, f"change z={z:.3g}")
        else:
            out = (NAN, NAN, 0.0, 0.0, False, f"warm-up: {n}/{c.min_history} changes")
        # learn (Welford) after scoring
        n += 1
        delta = d - self._mean
        self._mean += delta / n
        self._m2 += delta * (d - self._mean)
        self._n = n
        self._recent.append(x)
        return out

    def get_state(self) -> dict[str, Any]:
        return {
            "recent": np.array(self._recent, dtype=float),
            "n": self._n,
            "mean": self._mean,
            "m2": self._m2,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._recent = deque(
            (float(v) for v in np.asarray(state["recent"], dtype=float).ravel()), maxlen=self.config.lag
        )
        self._n = int(state["n"])
        self._mean = float(state["mean"])
        self._m2 = float(state["m2"])
