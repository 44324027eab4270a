"""ema (seed 004): exponential smoothing with a smoothed windowed sigma; band ``pr ± k·σ``.

Follows DETECTORS.md "ema" step by step (names there → fields here: M → ``window``,
α → ``alpha``, 0.9 → ``warm_alpha`` for c < ``warm_steps`` = 5, γ → ``gamma``, k → ``k``,
50·M → ``warmup_windows``·``window``). The prediction is the previous smoothed value; σ comes
from the ring buffer *before* the current reading enters it, so the band never sees the future.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from .base import NAN, Detector, SeriesPrior, Verdict, frame_from_rows

_SQRT2 = math.sqrt(2.0)
_INF = math.inf

Step = tuple[float, float, float, float, bool, str]


def _pos_int(name: str, v: Any, minimum: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"ema: {name} must be an int >= {minimum}, got {v!r}")


def _in_unit(name: str, v: Any, lo_open: bool = True) -> None:
    ok = (
        isinstance(v, (int, float))
        and not isinstance(v, bool)
        and (0.0 < v <= 1.0 if lo_open else 0.0 <= v <= 1.0)
    )
    if not ok:
        raise ValueError(f"ema: {name} must be in {'(0' if lo_open else '[0'}, 1], got {v!r}")


@dataclass(frozen=True)
class EmaConfig:
    """Parameters of the ema detector (defaults are seed 004's).

    window: ring-buffer length M for the windowed sigma.
    alpha / warm_alpha / warm_steps: smoothing factor; warm_alpha while c < warm_steps so the
        smoothed value catches up with the level quickly.
    gamma: smoothing factor of sigma.
    k: band half-width in units of the (smoothed) sigma.
    warmup_windows: no alarms until c > warmup_windows·window (sigma starts at 0 and needs
        ~1/gamma readings to converge).
    sigma_divide_by_m: False = the seed's sqrt(Σ(buf−μ)²) (√M times a std); True = the std
        sqrt(Σ(buf−μ)²/M).
    sigma_floor: smallest sigma used in the band (0 = seed: a flat buffer gives a zero-width band).
    """

    window: int = 20
    alpha: float = 0.04
    warm_alpha: float = 0.9
    warm_steps: int = 5
    gamma: float = 0.01
    k: float = 1.3
    warmup_windows: int = 50
    sigma_divide_by_m: bool = False
    sigma_floor: float = 0.0

    def __post_init__(self) -> None:
        _pos_int("window", self.window, 1)
        _in_unit("alpha", self.alpha)
        _in_unit("warm_alpha", self.warm_alpha)
        _pos_int("warm_steps", self.warm_steps, 0)
        _in_unit("gamma", self.gamma)
        if not (isinstance(self.k, (int, float)) and not isinstance(self.k, bool) and 0 < self.k < _INF):
            raise ValueError(f"ema: k must be a finite number > 0, got {self.k!r}")
        _pos_int("warmup_windows", self.warmup_windows, 0)
        if not isinstance(self.sigma_divide_by_m, bool):
            raise ValueError(f"ema: sigma_divide_by_m must be a bool, got {self.sigma_divide_by_m!r}")
        if not (isinstance(self.sigma_floor, (int, float)) and 0 <= self.sigma_floor < _INF):
            raise ValueError(f"ema: sigma_floor must be a finite number >= 0, got {self.sigma_floor!r}")


class EmaDetector(Detector):
    """Seed 004's EMA band.

    Score/probability = P(|Z| < |z|), z = (x − pr)/σ_std where σ_std is the smoothed sigma as a
    per-reading std (σ/√M in the seed's undivided form), so the score means the same as for the
    other band detectors while the band and alarms stay exactly the seed's. Warm-up readings
    report the band but score 0.
    """

    name: ClassVar[str] = "ema"
    config_cls: ClassVar[type[EmaConfig]] = EmaConfig

    def __init__(self, config: EmaConfig | None = None, prior: SeriesPrior | None = None) -> None:
        # The prior is not used: the seed's state is learned from the stream alone.
        self.config = config if config is not None else EmaConfig()
        cfg = self.config
        self._c = 0
        self._old_s = 0.0
        self._sigma_old = 0.0
        self._buf: list[float] = [0.0] * cfg.window
        self._alarm_after = cfg.warmup_windows * cfg.window
        self._std_div = 1.0 if cfg.sigma_divide_by_m else math.sqrt(cfg.window)

    def _sigma(self, buf: list[float]) -> float:
        """Smoothed sigma for this step (from the buffer before the current reading)."""
        cfg = self.config
        m = cfg.window
        mu = sum(buf) / m
        ss = sum([(b - mu) * (b - mu) for b in buf])
        raw = math.sqrt(ss / m) if cfg.sigma_divide_by_m else math.sqrt(ss)
        return cfg.gamma * raw + (1.0 - cfg.gamma) * self._sigma_old

    def _verdict(self, x: float, pr: float, sigma: float, c: int) -> Step:
        cfg = self.config
        sig = sigma if sigma >= cfg.sigma_floor else cfg.sigma_floor
        half = cfg.k * sig
        low = pr - half
        high = pr + half
        if c <= self._alarm_after:
            return (low, high, 0.0, 0.0, False, "warm-up")
        dev = x - pr
        if sig > 0.0:
            prob = math.erf(abs(dev) * self._std_div / sig / _SQRT2)
            note = "" if sigma >= cfg.sigma_floor else "; sigma floor"
        else:
            prob = 0.0 if dev == 0.0 else 1.0
            note = "; zero sigma"
        if x > high:
            return (low, high, prob, prob, True, "above upper bound" + note)
        if x < low:
            return (low, high, prob, prob, True, "below lower bound" + note)
        return (low, high, prob, prob, False, "ok" + note)

    def _step(self, x: float) -> Step:
        if not (-_INF < x < _INF):
            return (NAN, NAN, 0.0, 0.0, False, "missing value")
        cfg = self.config
        c = self._c
        if c == 0:
            self._old_s = x
            self._buf = [x] * cfg.window
        a = cfg.warm_alpha if c < cfg.warm_steps else cfg.alpha
        pr = self._old_s
        sigma = self._sigma(self._buf)
        out = self._verdict(x, pr, sigma, c)
        self._old_s = a * x + (1.0 - a) * pr
        self._buf[c % cfg.window] = x
        self._sigma_old = sigma
        self._c = c + 1
        return out

    def process_one(self, x: float, ts: int) -> Verdict:
        return Verdict(*self._step(float(x)))

    def score_one(self, x: float, ts: int) -> Verdict:
        """The verdict ``process_one`` would give, without changing the state."""
        x = float(x)
        if not math.isfinite(x):
            return Verdict(NAN, NAN, 0.0, 0.0, False, "missing value")
        if self._c == 0:
            return Verdict(*self._verdict(x, x, self._sigma([x] * self.config.window), 0))
        return Verdict(*self._verdict(x, self._old_s, self._sigma(self._buf), self._c))

    def learn_one(self, x: float, ts: int) -> None:
        """Learn a reading without scoring it (the state update of ``process_one``)."""
        self._step(float(x))

    def process(self, values: np.ndarray, ts: np.ndarray) -> pd.DataFrame:
        return frame_from_rows(self.process_rows(values, ts))

    def process_rows(self, values: np.ndarray, ts: np.ndarray) -> list[Step]:
        """``process`` as Verdict-shaped tuples, no frame: drivers batch many series' rows."""
        xs = np.asarray(values, dtype=float)
        if len(xs) != len(ts):
            raise ValueError(f"ema: {len(xs)} values but {len(ts)} timestamps")
        step = self._step
        return [step(x) for x in xs.tolist()]

    def get_state(self) -> dict[str, Any]:
        return {
            "c": self._c,
            "old_s": self._old_s,
            "sigma_old": self._sigma_old,
            "buf": np.array(self._buf, dtype=float),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        try:
            c, old_s, sigma_old, buf = state["c"], state["old_s"], state["sigma_old"], state["buf"]
        except KeyError as e:
            raise ValueError(f"ema: state lacks key {e.args[0]!r}") from None
        buf = [float(b) for b in np.asarray(buf, dtype=float).ravel()]
        if len(buf) != self.config.window:
            raise ValueError(
                f"ema: state buffer has {len(buf)} slots but the config window is {self.config.window}"
            )
        if int(c) < 0:
            raise ValueError(f"ema: invalid state count c={c}")
        self._c, self._old_s, self._sigma_old, self._buf = int(c), float(old_s), float(sigma_old), buf
