"""robust (seed 002 RobustDetector): rolling median and MAD of the previous ``window`` readings.

σ ≈ 1.4826·MAD (the normal-consistent scale), z = (x − median)/σ, band
``median ± Φ⁻¹(threshold)·σ``. The window is kept twice: in arrival order (to know what leaves)
and sorted (bisect insert/delete), so the median is an index and the MAD is the k-th smallest
of two sorted runs of deviations found by binary search: O(log window) per reading instead of
two O(window) medians. The numbers equal ``np.median`` exactly (selection, no arithmetic drift).
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from .base import NAN, Detector, SeriesPrior, Verdict, frame_from_rows
from .stats import z_for_quantile

MAD_SCALE = 1.4826  # σ / MAD for normal data
MEANAD_SCALE = math.sqrt(math.pi / 2.0)  # σ / mean absolute deviation for normal data
_SQRT2 = math.sqrt(2.0)
_INF = math.inf

Step = tuple[float, float, float, float, bool, str]


@dataclass(frozen=True)
class RobustConfig:
    """Parameters of the robust detector.

    window: readings in the rolling window; no verdicts (reason "warm-up") until it is full.
    threshold: one-sided normal quantile of the band: half-width Φ⁻¹(threshold)·σ (seed 0.9999).
    mad_fallback: when MAD = 0 (more than half the window equal, e.g. a quantised or idle
        sensor) estimate σ from the mean absolute deviation instead, which still sees the
        minority of differing values.
    mad_floor: smallest σ ever used, in value units; reached only when the window is (nearly)
        constant, so any move then is an anomaly, with "mad=0" in the reason saying why.
    """

    window: int = 100
    threshold: float = 0.9999
    mad_fallback: bool = True
    mad_floor: float = 1e-9

    def __post_init__(self) -> None:
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 2:
            raise ValueError(f"robust: window must be an int >= 2, got {self.window!r}")
        if not (isinstance(self.threshold, (int, float)) and 0.5 < self.threshold < 1.0):
            raise ValueError(f"robust: threshold must be in (0.5, 1), got {self.threshold!r}")
        if not isinstance(self.mad_fallback, bool):
            raise ValueError(f"robust: mad_fallback must be a bool, got {self.mad_fallback!r}")
        if not (isinstance(self.mad_floor, (int, float)) and 0 <= self.mad_floor < _INF):
            raise ValueError(f"robust: mad_floor must be a finite number >= 0, got {self.mad_floor!r}")


def median_mad(s: list[float]) -> tuple[float, float]:
    """Median and MAD of a non-empty *sorted* list, equal to numpy's, in O(log n)."""
    n = len(s)
    h = n // 2
    m = s[h] if n & 1 else (s[h - 1] + s[h]) / 2
    # Deviations split into two increasing runs: L_i = m − s[p−1−i] (left of m), R_j = s[p+j] − m.
    p = bisect_left(s, m)
    nl, nr = p, n - p
    t = h + 1 if n & 1 else h  # how many smallest deviations to take
    lo, hi = max(0, t - nr), min(t, nl)
    while True:
        i = (lo + hi) // 2  # taken from L; t − i from R
        j = t - i
        if i < nl and j > 0 and s[p + j - 1] - m > m - s[p - 1 - i]:
            lo = i + 1
        elif i > 0 and j < nr and m - s[p - i] > s[p + j] - m:
            hi = i - 1
        else:
            break
    a = m - s[p - i] if i > 0 else -_INF
    b = s[p + j - 1] - m if j > 0 else -_INF
    kth = a if a > b else b
    if n & 1:
        return m, kth
    a = m - s[p - 1 - i] if i < nl else _INF
    b = s[p + j] - m if j < nr else _INF
    nxt = a if a < b else b
    return m, (kth + nxt) / 2


class RobustDetector(Detector):
    """Rolling median/MAD band; score = P(|Z| < |z|) (the seed's cdf(|z|) was always ≥ 0.5)."""

    name: ClassVar[str] = "robust"
    config_cls: ClassVar[type[RobustConfig]] = RobustConfig

    def __init__(self, config: RobustConfig | None = None, prior: SeriesPrior | None = None) -> None:
        # The prior is not used: the window is learned from the stream alone.
        self.config = config if config is not None else RobustConfig()
        self._z = z_for_quantile(self.config.threshold)
        self._win: deque[float] = deque()
        self._sorted: list[float] = []

    def _verdict(self, x: float) -> Step:
        cfg = self.config
        s = self._sorted
        if len(s) < cfg.window:
            return (NAN, NAN, 0.0, 0.0, False, "warm-up")
        m, mad = median_mad(s)
        sigma = MAD_SCALE * mad
        note = ""
        if mad == 0.0:
            if cfg.mad_fallback:
                sigma = MEANAD_SCALE * (sum([abs(v - m) for v in s]) / len(s))
                note = "; mad=0 meanad"
            if sigma <= cfg.mad_floor:
                sigma = cfg.mad_floor
                note = "; mad=0 floor"
        elif sigma < cfg.mad_floor:
            sigma = cfg.mad_floor
            note = "; mad floor"
        half = self._z * sigma
        lower = m - half
        upper = m + half
        dev = x - m
        prob = math.erf(abs(dev) / sigma / _SQRT2) if sigma > 0.0 else float(dev != 0.0)
        if x > upper:
            return (lower, upper, prob, prob, True, "above upper bound" + note)
        if x < lower:
            return (lower, upper, prob, prob, True, "below lower bound" + note)
        return (lower, upper, prob, prob, False, "ok" + note)

    def _learn(self, x: float) -> None:
        win = self._win
        s = self._sorted
        if len(win) >= self.config.window:
            del s[bisect_left(s, win.popleft())]
        win.append(x)
        insort(s, x)

    def _step(self, x: float) -> Step:
        if not (-_INF < x < _INF):
            return (NAN, NAN, 0.0, 0.0, False, "missing value")
        out = self._verdict(x)
        self._learn(x)
        return out

    def process_one(self, x: float, ts: int) -> Verdict:
        return Verdict(*self._step(float(x)))

    def score_one(self, x: float, ts: int) -> Verdict:
        """The verdict ``process_one`` would give, without learning ``x``."""
        x = float(x)
        if not math.isfinite(x):
            return Verdict(NAN, NAN, 0.0, 0.0, False, "missing value")
        return Verdict(*self._verdict(x))

    def learn_one(self, x: float, ts: int) -> None:
        """Push a reading into the window without scoring it."""
        x = float(x)
        if math.isfinite(x):
            self._learn(x)

    def process(self, values: np.ndarray, ts: np.ndarray) -> pd.DataFrame:
        return frame_from_rows(self.process_rows(values, ts))

    def process_rows(self, values: np.ndarray, ts: np.ndarray) -> list[Step]:
        """``process`` as Verdict-shaped tuples, no frame: drivers batch many series' rows."""
        xs = np.asarray(values, dtype=float)
        if len(xs) != len(ts):
            raise ValueError(f"robust: {len(xs)} values but {len(ts)} timestamps")
        step = self._step
        return [step(x) for x in xs.tolist()]

    def get_state(self) -> dict[str, Any]:
        """The window in arrival order (the sorted copy is rebuilt on restore)."""
        return {"window": np.array(self._win, dtype=float)}

    def set_state(self, state: dict[str, Any]) -> None:
        try:
            win = [float(v) for v in np.asarray(state["window"], dtype=float).ravel()]
        except KeyError:
            raise ValueError("robust: state lacks key 'window'") from None
        if len(win) > self.config.window:
            raise ValueError(
                f"robust: state holds {len(win)} readings but the config window is {self.config.window}"
            )
        self._win = deque(win)
        self._sorted = sorted(win)
