"""The range a series was trained on, as the cores that score against it keep it.

From the train job's model (``SeriesPrior.min``/``max``) when there is one; otherwise learned
from the first ``warmup`` readings and then frozen, so a later excursion is judged against the
healthy range rather than absorbed into it.
"""

from __future__ import annotations

import math
from typing import Any

from .base import NAN, SeriesPrior, Step


class TrainedRange:
    """lo/hi of a series, and the warm-up that learns them when there is no prior."""

    def __init__(self, prior: SeriesPrior | None, warmup: int) -> None:
        self.warmup = warmup
        self.lo, self.hi = math.inf, -math.inf
        self.seen = 0  # readings learned (warm-up without a prior)
        self.frozen = False
        self.adopt(prior)

    def adopt(self, prior: SeriesPrior | None) -> None:
        """Take a usable prior's [min, max] as the range (frozen); anything else changes nothing."""
        if prior is not None and math.isfinite(prior.min) and math.isfinite(prior.max) and prior.n > 0:
            self.lo, self.hi, self.frozen = float(prior.min), float(prior.max), True

    def learning(self, x: float) -> str | None:
        """Learn a finite reading while warming up: the reason to report, or None once frozen."""
        if self.frozen:
            return None
        self.lo, self.hi = min(self.lo, x), max(self.hi, x)
        self.seen += 1
        if self.seen >= self.warmup:
            self.frozen = True
        return f"warm-up: learning the range ({self.seen}/{self.warmup})"

    def unscored(self, x: float) -> Step | None:
        """The verdict of a reading that is not scored (not finite, or learned in the warm-up)."""
        if not math.isfinite(x):
            return (NAN, NAN, 0.0, 0.0, False, "invalid value")
        warming = self.learning(x)
        return None if warming is None else (NAN, NAN, 0.0, 0.0, False, warming)

    def get_state(self) -> dict[str, Any]:
        return {"lo": self.lo, "hi": self.hi, "seen": self.seen, "frozen": self.frozen}

    def set_state(self, state: dict[str, Any]) -> None:
        self.lo, self.hi = float(state["lo"]), float(state["hi"])
        self.seen = int(state["seen"])
        self.frozen = bool(state["frozen"])


def excess_step(x: float, lower: float, upper: float, min_width: float, where: str) -> Step:
    """A reading against the band [lower, upper]: inside, "ok" and score 0; outside, flagged with
    score = probability = 1 - exp(-excess), excess = its distance outside in band widths.
    ``where`` names what the band is ("trained range"), for the reason."""
    span = max(upper - lower, min_width)
    if x > upper:
        excess, side = (x - upper) / span, "above"
    elif x < lower:
        excess, side = (lower - x) / span, "below"
    else:
        return (lower, upper, 0.0, 0.0, False, "ok")
    score = -math.expm1(-excess)
    return (lower, upper, score, score, True, f"{side} {where} by {excess:.3g} widths")
