"""record: how far a reading lands beyond every value the series has shown since it was trained.

``range`` keeps the trained [min, max] fixed, so once a series has moved outside it (a new load
level, a growing tweet volume) every later visit there alarms again, and on NAB most of its
alarms were such repeats (false positives that look like weak detections). This core starts from
the same trained range (the train job's model, ``SeriesPrior.min``/``max``; without a prior it
is learned from the first ``warmup`` readings, then frozen) and widens it to every reading it has
scored: the band is [lowest - margin·w, highest + margin·w], w = the trained width. A reading
outside it is a new record by more than ``margin`` trained widths: excess = its distance outside
the band in band widths; score = probability = 1 - exp(-excess); is_anomaly = outside the band.
So the first excursion to a new level stands out and returning there does not; a small
``margin`` keeps a slow drift, which sets a new record by a hair at almost every step, quiet.
Wrapped in ``calibrated`` (raw: excess) like ``range``.

State: range's (trained lo/hi, readings learned, frozen) plus the lowest and highest reading scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from .base import SeriesPrior, StepDetector
from .checks import require_positive
from .trained_range import TrainedRange, excess_step


@dataclass(frozen=True)
class RecordConfig:
    """margin: how far past the lowest/highest reading so far a reading must land to count, as a
    fraction of the trained width. warmup: readings learned before scoring when there is no prior.
    min_width: smallest trained width (a flat training range)."""

    margin: float = 0.03
    warmup: int = 500
    min_width: float = 1e-9

    def __post_init__(self) -> None:
        if not (isinstance(self.margin, (int, float)) and math.isfinite(self.margin) and self.margin >= 0):
            raise ValueError(f"record.margin must be a finite number >= 0, got {self.margin!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 1:
            raise ValueError(f"record.warmup must be an int >= 1, got {self.warmup!r}")
        require_positive(self, "record", ("min_width",))


class RecordDetector(StepDetector):
    name: ClassVar[str] = "record"
    uses_prior: ClassVar[bool] = True  # the trained model's min/max is where the records start
    config_cls: ClassVar[type] = RecordConfig

    def __init__(self, config: RecordConfig | None = None, prior: SeriesPrior | None = None) -> None:
        self.config = config or RecordConfig()
        self._range = TrainedRange(prior, self.config.warmup)
        self._lo = math.inf  # lowest reading scored so far
        self._hi = -math.inf  # highest reading scored so far

    def _step(self, x: float) -> tuple[float, float, float, float, bool, str]:
        c = self.config
        skipped = self._range.unscored(x)
        if skipped is not None:
            return skipped
        lo, hi = self._range.lo, self._range.hi
        pad = c.margin * max(hi - lo, c.min_width)
        lower, upper = min(lo, self._lo) - pad, max(hi, self._hi) + pad
        self._lo, self._hi = min(self._lo, x), max(self._hi, x)
        return excess_step(x, lower, upper, c.min_width, "every reading so far")

    def get_state(self) -> dict[str, Any]:
        return {**self._range.get_state(), "rec_lo": self._lo, "rec_hi": self._hi}

    def adopt_prior(self, prior: SeriesPrior) -> None:
        """The new version's [min, max] is where records start; the records since stay."""
        self._range.adopt(prior)

    def set_state(self, state: dict[str, Any]) -> None:
        self._range.set_state(state)
        self._lo, self._hi = float(state["rec_lo"]), float(state["rec_hi"])
