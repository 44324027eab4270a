"""normal (seed 000): a per-series normal band learned incrementally from the stream itself.

Welford moments ``(n, mean, M2)``; band ``mean ± z_p·std``. The seed's table of ``z_p`` is the
*two-sided* quantile (0.8 → 1.2816 = Φ⁻¹(0.9)): the band holds a fraction ``p`` of normal data,
so ``z_p = Φ⁻¹((1 + p)/2)``, computed for any ``p`` instead of looked up. Each reading is scored against the moments of the
readings before it, then learned. Optional inter-arrival transform: the value scored is
``ts − previous ts`` (the seed's ``InterArrivalTransformer``), for "is this source late/early?".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from .base import NAN, Detector, SeriesPrior, Verdict, frame_from_rows
from .stats import z_for_quantile

UNKNOWN_POLICIES = ("anomaly", "ignore")
_SQRT2 = math.sqrt(2.0)
_INF = math.inf


@dataclass(frozen=True)
class NormalConfig:
    """Parameters of the normal detector.

    p: two-sided coverage of the band, half-width ``z_p = Φ⁻¹((1 + p)/2)`` (seed: 0.99999 → 4.4172).
    unknown_policy: what a series with fewer than ``min_count`` readings reports: "anomaly" (the
        seed's "unknown source" flag) or "ignore" (same reason, not flagged).
    inter_arrival: score ``ts − previous ts`` (ms) instead of the value; the first reading of a
        series gives reason "no previous reading" (still one verdict per input row).
    min_count: readings needed before the band exists (a sample variance needs 2).
    learn: keep updating the moments from the stream (False: score against the prior only).
    std_floor: smallest std used; a stuck series (std 0) otherwise makes any change infinite-z.
    """

    p: float = 0.99999
    unknown_policy: str = "anomaly"
    inter_arrival: bool = False
    min_count: int = 2
    learn: bool = True
    std_floor: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.p, (int, float)) and 0.0 < self.p < 1.0):
            raise ValueError(f"normal: p must be in (0, 1), got {self.p!r}")
        if self.unknown_policy not in UNKNOWN_POLICIES:
            raise ValueError(
                f"normal: unknown_policy must be one of {', '.join(UNKNOWN_POLICIES)}, got {self.unknown_policy!r}"
            )
        if not isinstance(self.inter_arrival, bool):
            raise ValueError(f"normal: inter_arrival must be a bool, got {self.inter_arrival!r}")
        if not isinstance(self.learn, bool):
            raise ValueError(f"normal: learn must be a bool, got {self.learn!r}")
        if isinstance(self.min_count, bool) or not isinstance(self.min_count, int) or self.min_count < 2:
            raise ValueError(
                f"normal: min_count must be an int >= 2 (sample variance), got {self.min_count!r}"
            )
        if not (
            isinstance(self.std_floor, (int, float)) and math.isfinite(self.std_floor) and self.std_floor >= 0
        ):
            raise ValueError(f"normal: std_floor must be a finite number >= 0, got {self.std_floor!r}")


class NormalDetector(Detector):
    """Welford mean/variance band per series; score = P(|Z| < |z|) with z in std units."""

    name: ClassVar[str] = "normal"
    config_cls: ClassVar[type[NormalConfig]] = NormalConfig

    def __init__(self, config: NormalConfig | None = None, prior: SeriesPrior | None = None) -> None:
        self.config = config if config is not None else NormalConfig()
        # Two-sided, as the seed's table: P(|Z| <= z_p) = p. From the lower tail, which keeps
        # the precision that (1 + p)/2 would lose for p near 1.
        self._z = -z_for_quantile((1.0 - self.config.p) / 2.0)
        self._n = 0
        self._mean = 0.0
        self._m2 = 0.0
        self._prev_ts: int | None = None
        # The train job's moments are of the raw value; they mean nothing for inter-arrival times.
        if prior is not None and not self.config.inter_arrival and prior.n > 0:
            self._n = int(prior.n)
            self._mean = float(prior.mean)
            self._m2 = float(prior.m2) if prior.n >= 2 else 0.0

    # -- scoring -----------------------------------------------------------------------------

    def _verdict(self, v: float) -> tuple[float, float, float, float, bool, str]:
        """Score value ``v`` (already transformed) against the current moments; no mutation."""
        cfg = self.config
        n = self._n
        if n < cfg.min_count:
            if cfg.unknown_policy == "anomaly":
                return (NAN, NAN, 1.0, 1.0, True, "unknown source")
            return (NAN, NAN, 0.0, 0.0, False, "unknown source")
        mean = self._mean
        sd = math.sqrt(self._m2 / (n - 1)) if self._m2 > 0.0 else 0.0
        note = ""
        if sd <= cfg.std_floor:
            note = "; zero variance" if sd == 0.0 else "; std floor"
            sd = cfg.std_floor
        half = self._z * sd
        lower = mean - half
        upper = mean + half
        dev = v - mean
        # sd 0 (no floor): the band is a point; any other value is infinitely far
        prob = math.erf(abs(dev) / sd / _SQRT2) if sd > 0.0 else float(dev != 0.0)
        if v > upper:
            return (lower, upper, prob, prob, True, "above upper bound" + note)
        if v < lower:
            return (lower, upper, prob, prob, True, "below lower bound" + note)
        return (lower, upper, prob, prob, False, "ok" + note)

    def _learn_value(self, v: float) -> None:
        n = self._n + 1
        d = v - self._mean
        self._mean += d / n
        self._m2 += d * (v - self._mean)
        self._n = n

    def _step(self, x: float, ts: int) -> tuple[float, float, float, float, bool, str]:
        cfg = self.config
        if cfg.inter_arrival:
            prev = self._prev_ts
            self._prev_ts = ts
            if prev is None:
                return (NAN, NAN, 0.0, 0.0, False, "no previous reading")
            v = float(ts - prev)
        else:
            v = x
            if not (-_INF < v < _INF):
                return (NAN, NAN, 0.0, 0.0, False, "missing value")
        out = self._verdict(v)
        if cfg.learn:
            self._learn_value(v)
        return out

    def process_one(self, x: float, ts: int) -> Verdict:
        return Verdict(*self._step(float(x), int(ts)))

    def score_one(self, x: float, ts: int) -> Verdict:
        """The verdict ``process_one`` would give, without learning anything."""
        if self.config.inter_arrival:
            if self._prev_ts is None:
                return Verdict(NAN, NAN, 0.0, 0.0, False, "no previous reading")
            return Verdict(*self._verdict(float(int(ts) - self._prev_ts)))
        x = float(x)
        if not math.isfinite(x):
            return Verdict(NAN, NAN, 0.0, 0.0, False, "missing value")
        return Verdict(*self._verdict(x))

    def learn_one(self, x: float, ts: int) -> None:
        """Learn a reading without scoring it (e.g. replaying history)."""
        cfg = self.config
        if cfg.inter_arrival:
            prev = self._prev_ts
            self._prev_ts = int(ts)
            if prev is not None and cfg.learn:
                self._learn_value(float(int(ts) - prev))
            return
        x = float(x)
        if math.isfinite(x) and cfg.learn:
            self._learn_value(x)

    def process(self, values: np.ndarray, ts: np.ndarray) -> pd.DataFrame:
        return frame_from_rows(self.process_rows(values, ts))

    def process_rows(
        self, values: np.ndarray, ts: np.ndarray
    ) -> list[tuple[float, float, float, float, bool, str]]:
        """``process`` as Verdict-shaped tuples, no frame: drivers batch many series' rows."""
        xs = np.asarray(values, dtype=float)
        tss = np.asarray(ts)
        if len(xs) != len(tss):
            raise ValueError(f"normal: {len(xs)} values but {len(tss)} timestamps")
        ts_list = tss.astype(np.int64).tolist() if self.config.inter_arrival else [0] * len(xs)
        step = self._step
        return [step(x, t) for x, t in zip(xs.tolist(), ts_list, strict=True)]

    # -- state -------------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        return {"n": self._n, "mean": self._mean, "m2": self._m2, "prev_ts": self._prev_ts}

    def set_state(self, state: dict[str, Any]) -> None:
        try:
            n, mean, m2, prev = int(state["n"]), float(state["mean"]), float(state["m2"]), state["prev_ts"]
        except KeyError as e:
            raise ValueError(f"normal: state lacks key {e.args[0]!r}") from None
        if n < 0 or m2 < 0:
            raise ValueError(f"normal: invalid state n={n}, m2={m2}")
        self._n, self._mean, self._m2 = n, mean, m2
        self._prev_ts = None if prev is None else int(prev)

    @property
    def moments(self) -> tuple[int, float, float]:
        """``(n, mean, M2)``: the same mergeable moments the train job writes."""
        return self._n, self._mean, self._m2
