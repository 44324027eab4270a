"""ensemble: several detectors on the same series, their scores combined into one.

Members are any registered detectors (usually ``calibrated`` ones, so their scores mean the same
tail probability). Per reading: score = max, mean, or the ``weights``-weighted mean of the member
scores; is_anomaly = score >= threshold; the band is the first member's that has one; the reason
names the member that scored highest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ._composite import build_member, member_spec, object_array
from .base import RESULT_COLUMNS, ColumnDetector, SeriesPrior, Verdict, result_columns

_COMBINE = ("max", "mean")


@dataclass(frozen=True)
class EnsembleConfig:
    members: list[Any] = field(default_factory=list)  # [{detector: name, params: {...}}, ...]
    combine: str = "max"
    weights: list[float] | None = None  # for combine = mean; default equal
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("ensemble: needs at least one member")
        for m in self.members:
            member_spec(m, "ensemble")
        if self.combine not in _COMBINE:
            raise ValueError(f"ensemble.combine must be one of {', '.join(_COMBINE)}, got {self.combine!r}")
        if self.weights is not None and (
            len(self.weights) != len(self.members)
            or any(w < 0 for w in self.weights)
            or sum(self.weights) <= 0
        ):
            raise ValueError("ensemble.weights: one non-negative weight per member, not all zero")


_BIG = float(np.finfo(float).max)


def _finite(v: float) -> float:
    """``np.nan_to_num`` of one number: NaN -> 0, +-inf -> the largest finite float."""
    v = float(v)
    if v != v:
        return 0.0
    return v if -_BIG <= v <= _BIG else math.copysign(_BIG, v)


class EnsembleDetector(ColumnDetector):
    name: ClassVar[str] = "ensemble"
    uses_prior: ClassVar[bool] = True  # the stream joins the trained model in for it (SeriesPrior)
    config_cls: ClassVar[type] = EnsembleConfig

    def __init__(self, config: EnsembleConfig | None = None, prior: SeriesPrior | None = None) -> None:
        if config is None:
            raise ValueError("ensemble: configure its members")
        self.config = config
        self.members = [build_member(m, prior, f"ensemble member {i}") for i, m in enumerate(config.members)]
        w = np.asarray(
            config.weights if config.weights is not None else [1.0] * len(self.members), dtype=float
        )
        self._w = w / w.sum()

    def _combine(self, verdicts: list[Verdict]) -> Verdict:
        if self.config.combine == "max":
            # plain floats: np.nan_to_num then max/argmax, without arrays of four numbers
            scores = [_finite(v.score) for v in verdicts]
            score, prob = max(scores), max(_finite(v.probability) for v in verdicts)
            top = scores.index(score)
        else:
            scores = np.nan_to_num(np.array([v.score for v in verdicts], dtype=float), nan=0.0)
            probs = np.nan_to_num(np.array([v.probability for v in verdicts], dtype=float), nan=0.0)
            score, prob = float(self._w @ scores), float(self._w @ probs)
            top = int(scores.argmax())
        lower = upper = float("nan")
        for v in verdicts:
            if np.isfinite(v.lower) and np.isfinite(v.upper):
                lower, upper = v.lower, v.upper
                break
        reason = f"member {top} ({self.members[top].name}): {verdicts[top].reason}"
        return Verdict(lower, upper, score, prob, score >= self.config.threshold, reason)

    def process_one(self, x: float, ts: int) -> Verdict:
        return self._combine([m.process_one(x, ts) for m in self.members])

    def _columns(self, values: np.ndarray, ts: np.ndarray) -> dict[str, np.ndarray]:
        outs = [m.process_columns(values, ts) for m in self.members]
        if self.config.combine != "max" or not len(values):
            # a weighted mean summed per row as ``_combine`` does (a matrix product may round differently)
            rows = zip(*(zip(*(o[c] for c in RESULT_COLUMNS), strict=True) for o in outs), strict=True)
            verdicts = [self._combine([Verdict(*v) for v in vs]) for vs in rows]
            return result_columns(verdicts)
        # combine max on whole columns: the same values as ``_combine`` row by row
        scores = np.nan_to_num(np.array([np.asarray(o["score"], dtype=float) for o in outs]), nan=0.0)
        probs = np.nan_to_num(np.array([np.asarray(o["probability"], dtype=float) for o in outs]), nan=0.0)
        lowers = np.array([np.asarray(o["lower"], dtype=float) for o in outs])
        uppers = np.array([np.asarray(o["upper"], dtype=float) for o in outs])
        cols = np.arange(len(values))
        top = scores.argmax(axis=0)
        banded = np.isfinite(lowers) & np.isfinite(uppers)
        first = banded.argmax(axis=0)  # the first member with a band (if any has one)
        has = banded[first, cols]
        score = scores[top, cols]
        prefix = [f"member {i} ({m.name}): " for i, m in enumerate(self.members)]
        reasons = [list(o["reason"]) for o in outs]
        return {
            "lower": np.where(has, lowers[first, cols], np.nan),
            "upper": np.where(has, uppers[first, cols], np.nan),
            "score": score,
            "probability": probs.max(axis=0),
            "is_anomaly": score >= self.config.threshold,
            "reason": object_array([prefix[t] + reasons[t][i] for i, t in enumerate(top.tolist())]),
        }

    def get_state(self) -> dict[str, Any]:
        return {"members": [m.get_state() for m in self.members]}

    def adopt_prior(self, prior: SeriesPrior) -> None:
        for m in self.members:
            m.adopt_prior(prior)

    def set_state(self, state: dict[str, Any]) -> None:
        states = state["members"]
        if len(states) != len(self.members):
            raise ValueError(f"ensemble: state has {len(states)} members, config {len(self.members)}")
        for m, s in zip(self.members, states, strict=True):
            m.set_state(s)
