"""calibrated: a detector's raw output mapped online to a comparable tail probability.

Raw outputs differ in scale between detectors and series (a band deviation, a CAD novelty, a
k-means distance). This core wraps any registered detector and learns, per series and only from
the past, the distribution of the wrapped detector's recent raw output (the idea of HTM's
"anomaly likelihood"):

1. raw r_t: the wrapped detector's ``score``, or (``raw: band``) the reading's distance from the
   band centre in half band widths |x - c| / h (capped), or ``auto``: band when there is one,
   or ``excess``: how far the reading lands outside the band, max(0, |x - c| / h - 1) (0 inside,
   so a series that stays in its band for long makes its first excursion stand out).
2. a_t = mean of the last ``short_window`` raws (a sustained change scores more than one blip).
3. The long-term mean mu and standard deviation sd of a over the last ``history`` steps (before
   this one); z = (a_t - mu) / max(sd, sd_floor); tail q = Q(z) = P(Z > z).
4. score = min(1, log(q) / log(tail_floor)): 0 for an ordinary value, 1 for a tail probability
   of ``tail_floor`` or smaller. ``probability`` = 1 - q. Scores are 0 until ``min_history``
   values of a were seen.

So one threshold means the same tail probability for every detector and every series, which is
what combining detectors (ensemble) and NAB's single corpus-wide threshold need.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ._composite import band_deviation, band_deviation_one, build_member, member_spec, object_array
from .base import RESULT_COLUMNS, ColumnDetector, SeriesPrior, Verdict, result_columns
from .state_arrays import pack_sparse, unpack_sparse

_RAW = ("auto", "score", "band", "probability", "excess")
_SQRT2 = math.sqrt(2.0)
AUTO_DECIDE = 200
# batches shorter than this are stepped reading by reading in ``process_columns``
_ROW_BY_ROW = 64


class _Ring:
    """The last ``size`` values in a float64 ring. Why not a deque: the stream takes and restores
    every touched series' state each micro-batch, and a deque of 3,000 floats cost about 60 µs
    each way (four of them in recommended); here each way is one array copy."""

    __slots__ = ("buf", "n", "pos")

    def __init__(self, size: int) -> None:
        self.buf = np.empty(size)
        self.n = 0  # values held
        self.pos = 0  # where the next value goes (the oldest value once full)

    def __len__(self) -> int:
        return self.n

    def push(self, value: float) -> None:
        self.buf[self.pos] = value
        self.pos = (self.pos + 1) % len(self.buf)
        if self.n < len(self.buf):
            self.n += 1

    def oldest(self) -> float:
        return float(self.buf[self.pos if self.n == len(self.buf) else 0])

    def values(self) -> np.ndarray:
        """Oldest first, a copy."""
        if self.n < len(self.buf):
            return self.buf[: self.n].copy()
        return np.concatenate((self.buf[self.pos :], self.buf[: self.pos]))

    def load(self, values: np.ndarray) -> None:
        """Hold the last ``size`` of ``values`` (oldest first)."""
        values = np.asarray(values, dtype=float).ravel()[-len(self.buf) :]
        self.n = len(values)
        self.buf[: self.n] = values
        self.pos = self.n % len(self.buf)


@dataclass(frozen=True)
class CalibratedConfig:
    """detector/params: the wrapped detector. raw: which output is calibrated (see module doc).

    short_window: raws averaged before calibration. history: steps in the long-term
    distribution. min_history: steps before any score. sd_floor: smallest sd (in raw units;
    ``sd_floor_rel`` of |mu| is added). tail_floor: the tail probability that maps to score 1.
    threshold: the score at which is_anomaly is set. band_cap: cap on the band deviation.
    """

    detector: str = "normal"
    params: dict[str, Any] = field(default_factory=dict)
    raw: str = "auto"
    short_window: int = 10
    history: int = 2000
    min_history: int = 100
    sd_floor: float = 1e-6
    sd_floor_rel: float = 0.0
    tail_floor: float = 1e-10
    threshold: float = 0.5
    band_cap: float = 1e3

    def __post_init__(self) -> None:
        member_spec({"detector": self.detector, "params": self.params}, "calibrated")
        if self.raw not in _RAW:
            raise ValueError(f"calibrated.raw must be one of {', '.join(_RAW)}, got {self.raw!r}")
        if self.short_window < 1 or self.history < 2 or not 1 <= self.min_history <= self.history:
            raise ValueError("calibrated: need short_window >= 1, history >= 2, 1 <= min_history <= history")
        if not 0 < self.tail_floor < 1:
            raise ValueError("calibrated.tail_floor must be in (0, 1)")
        if self.sd_floor <= 0 or self.sd_floor_rel < 0:
            raise ValueError("calibrated: sd_floor must be > 0 and sd_floor_rel >= 0")


class CalibratedDetector(ColumnDetector):
    name: ClassVar[str] = "calibrated"
    uses_prior: ClassVar[bool] = True  # the stream joins the trained model in for it (SeriesPrior)
    config_cls: ClassVar[type] = CalibratedConfig

    def __init__(self, config: CalibratedConfig | None = None, prior: SeriesPrior | None = None) -> None:
        self.config = config or CalibratedConfig()
        self.inner = build_member(
            {"detector": self.config.detector, "params": self.config.params}, prior, "calibrated"
        )
        self._log_floor = math.log(self.config.tail_floor)
        self._short: deque[float] = deque(maxlen=self.config.short_window)
        self._long = _Ring(self.config.history)
        self._sum = 0.0
        self._sumsq = 0.0
        self._mode: str | None = None if self.config.raw == "auto" else self.config.raw
        self._undecided = 0

    # -- raw value of one inner verdict --------------------------------------------------------
    def _raws(self, x: np.ndarray, out: dict[str, np.ndarray]) -> np.ndarray:
        if self._mode is None:
            return self._auto_raws(x, out)
        if self._mode in ("band", "excess"):
            dev = band_deviation(x, out["lower"], out["upper"], self.config.band_cap)
            return dev if self._mode == "band" else np.maximum(dev - 1.0, 0.0)
        col = "probability" if self._mode == "probability" else "score"
        return np.asarray(out[col], dtype=float)

    def _auto_raws(self, x: np.ndarray, out: dict[str, np.ndarray]) -> np.ndarray:
        """auto: the first verdict with a finite band picks ``band``; ``AUTO_DECIDE`` verdicts
        without one pick ``score``. Undecided verdicts give no raw value (not learned)."""
        lower, upper = np.asarray(out["lower"], dtype=float), np.asarray(out["upper"], dtype=float)
        has_band = np.isfinite(lower) & np.isfinite(upper)
        raws = np.full(len(lower), np.nan)
        for i in range(len(lower)):
            if self._mode is None:
                if has_band[i]:
                    self._mode = "band"
                else:
                    self._undecided += 1
                    if self._undecided >= AUTO_DECIDE:
                        self._mode = "score"
                    continue
            raws[i:] = self._raws(x[i:], {c: np.asarray(v)[i:] for c, v in out.items()})
            break
        return raws

    def _step(self, raw: float, v: Verdict) -> Verdict:
        c = self.config
        if not math.isfinite(raw):
            return Verdict(v.lower, v.upper, 0.0, 0.0, False, f"calibrating ({v.reason})")
        self._short.append(raw)
        a = sum(self._short) / len(self._short)
        n = len(self._long)
        score, prob, reason = 0.0, 0.0, "calibrating"
        if n >= c.min_history:
            mu = self._sum / n
            var = max(self._sumsq / n - mu * mu, 0.0)
            sd = max(math.sqrt(var), c.sd_floor + c.sd_floor_rel * abs(mu))
            z = (a - mu) / sd
            q = 0.5 * math.erfc(z / _SQRT2)
            prob = 1.0 - q
            score = 1.0 if q <= 0.0 else min(1.0, max(0.0, math.log(q) / self._log_floor))
            reason = f"tail {q:.3g}; {v.reason}"
        if n == c.history:
            old = self._long.oldest()
            self._sum -= old
            self._sumsq -= old * old
        self._long.push(a)
        self._sum += a
        self._sumsq += a * a
        return Verdict(v.lower, v.upper, score, prob, score >= c.threshold, reason)

    def process_one(self, x: float, ts: int) -> Verdict:
        v = self.inner.process_one(x, ts)
        if self._mode is None:  # auto, undecided: the array path decides (rare, at the start)
            out = {c: np.array([getattr(v, c)]) for c in ("lower", "upper", "score", "probability")}
            return self._step(float(self._raws(np.array([x]), out)[0]), v)
        return self._step(self._raw_one(float(x), v), v)

    def _raw_one(self, x: float, v: Verdict) -> float:
        """``_raws`` of one verdict in plain floats: the same operations, without 1-element arrays."""
        if self._mode in ("band", "excess"):
            dev = band_deviation_one(x, float(v.lower), float(v.upper), self.config.band_cap)
            return dev if self._mode == "band" else max(dev - 1.0, 0.0)
        return float(v.probability if self._mode == "probability" else v.score)

    def _columns(self, values: np.ndarray, ts: np.ndarray) -> dict[str, np.ndarray]:
        """``_step`` over a whole batch, with the same floating-point operations in the same
        order (a test holds every column equal to ``process_one``): the short means add their
        raws oldest first as ``sum`` does, and the history's running sums are one sequential
        ``cumsum`` over (-leaving value, +new mean) pairs, as ``_step`` subtracts and adds.
        Only the tail, its log and the reason text are per reading."""
        values = np.asarray(values, dtype=float)
        out = self.inner.process_columns(values, ts)
        raws = np.asarray(self._raws(values, out), dtype=float)
        c = self.config
        if len(raws) < _ROW_BY_ROW:
            # a few readings (a live micro-batch): the histories' deque <-> array round trip and
            # the per-window passes cost more than stepping them
            rows = zip(*(out[k] for k in RESULT_COLUMNS), strict=True)
            return result_columns(
                [self._step(r, Verdict(*v)) for r, v in zip(raws.tolist(), rows, strict=True)]
            )
        lower, upper = np.asarray(out["lower"], dtype=float), np.asarray(out["upper"], dtype=float)
        inner_reasons = list(out["reason"])
        finite = np.isfinite(raws)
        score = np.zeros(len(raws))
        prob = np.zeros(len(raws))
        reasons = [f"calibrating ({r})" for r in inner_reasons]
        r = raws[finite]
        m = len(r)
        if m:
            # short means: mean of the last short_window finite raws, summed oldest first
            w = c.short_window
            seq = np.concatenate((np.asarray(self._short, dtype=float), r))
            pos = np.arange(len(self._short), len(seq))
            acc = np.zeros(m)
            for back in range(w - 1, -1, -1):
                idx = pos - back
                ok = idx >= 0
                acc = np.where(ok, acc + seq[np.where(ok, idx, 0)], acc)
            a = acc / np.minimum(pos + 1, w)
            # history before each step: its length, and the running sums as _step updates them
            hist = np.concatenate((self._long.values(), a))
            n0 = len(self._long)
            n = np.minimum(n0 + np.arange(m), c.history)
            leave = np.arange(m) + n0 - c.history  # index in hist of the value leaving, if full
            old = np.where(leave >= 0, hist[np.maximum(leave, 0)], 0.0)
            steps = np.empty(2 * m + 1)
            steps[0], steps[1::2], steps[2::2] = self._sum, -old, a
            sums = np.cumsum(steps)
            steps[0], steps[1::2], steps[2::2] = self._sumsq, -(old * old), a * a
            sumsqs = np.cumsum(steps)
            s_before, q_before = sums[0:-1:2], sumsqs[0:-1:2]
            fin_rows = np.flatnonzero(finite)
            scored = n >= c.min_history
            with np.errstate(invalid="ignore", divide="ignore"):
                mu = s_before / n
                var = np.maximum(q_before / n - mu * mu, 0.0)
                sd = np.maximum(np.sqrt(var), c.sd_floor + c.sd_floor_rel * np.abs(mu))
                z = ((a - mu) / sd).tolist()
            log_floor = self._log_floor
            for j, row in enumerate(fin_rows.tolist()):
                if not scored[j]:
                    reasons[row] = "calibrating"
                    continue
                q = 0.5 * math.erfc(z[j] / _SQRT2)
                prob[row] = 1.0 - q
                score[row] = 1.0 if q <= 0.0 else min(1.0, max(0.0, math.log(q) / log_floor))
                reasons[row] = f"tail {q:.3g}; {inner_reasons[row]}"
            self._short = deque(seq[-w:].tolist(), maxlen=w)
            self._long.load(hist)
            self._sum, self._sumsq = float(sums[-1]), float(sumsqs[-1])
        return {
            "lower": lower,
            "upper": upper,
            "score": score,
            "probability": prob,
            "is_anomaly": score >= c.threshold,
            "reason": object_array(reasons),
        }

    def get_state(self) -> dict[str, Any]:
        return {
            "inner": self.inner.get_state(),
            "mode": self._mode,
            "undecided": self._undecided,
            "sum": self._sum,
            "sumsq": self._sumsq,
            "short": np.fromiter(self._short, dtype=float, count=len(self._short)),
            "long": pack_sparse(self._long.values()),
        }

    def adopt_prior(self, prior: SeriesPrior) -> None:
        self.inner.adopt_prior(prior)

    def set_state(self, state: dict[str, Any]) -> None:
        self.inner.set_state(state["inner"])
        self._mode = state["mode"]
        self._undecided = int(state["undecided"])
        # ``tolist`` gives the same Python floats as ``float(v)`` per value, without a call per value
        short = np.asarray(state["short"], dtype=float).ravel().tolist()
        self._short = deque(short, maxlen=self.config.short_window)
        self._long.load(unpack_sparse(state["long"]))
        self._sum = float(state["sum"])
        self._sumsq = float(state["sumsq"])
