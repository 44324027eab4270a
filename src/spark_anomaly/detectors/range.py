"""range: how far a reading lands outside the range the series was trained on.

Many incidents (NAB's machine failures, CPU saturation, traffic jams) first show up as values the
series never took while it was healthy. This core keeps the trained range [min, max] fixed (from
the train job's model, ``SeriesPrior.min``/``max``; without a prior it learns min/max from the
first ``warmup`` readings and then freezes them) and reports the excursion beyond it:

band = [min - margin·w, max + margin·w] with w = max - min; excess = distance outside the band
in band widths (0 inside); score = probability = 1 - exp(-excess); is_anomaly = outside the band.
Inside the band nothing is scored, so wrapped in ``calibrated`` (raw: excess) a series that stays
in range for a long time makes its first excursion stand out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .base import SeriesPrior, StepDetector
from .checks import require_positive
from .trained_range import TrainedRange, excess_step


@dataclass(frozen=True)
class RangeConfig:
    """margin: band widening on each side, as a fraction of the trained width. warmup: readings
    learned before scoring when there is no prior. min_width: smallest band width (a flat
    training range)."""

    margin: float = 0.0
    warmup: int = 500
    min_width: float = 1e-9

    def __post_init__(self) -> None:
        if self.margin < 0:
            raise ValueError(f"range.margin must be >= 0, got {self.margin}")
        if self.warmup < 1:
            raise ValueError(f"range.warmup must be >= 1, got {self.warmup}")
        require_positive(self, "range", ("min_width",))


class RangeDetector(StepDetector):
    name: ClassVar[str] = "range"
    uses_prior: ClassVar[bool] = True  # the trained model's min/max is the range
    config_cls: ClassVar[type] = RangeConfig

    def __init__(self, config: RangeConfig | None = None, prior: SeriesPrior | None = None) -> None:
        self.config = config or RangeConfig()
        self._range = TrainedRange(prior, self.config.warmup)

    def _step(self, x: float) -> tuple[float, float, float, float, bool, str]:
        c = self.config
        skipped = self._range.unscored(x)
        if skipped is not None:
            return skipped
        lo, hi = self._range.lo, self._range.hi
        width = max(hi - lo, c.min_width)
        return excess_step(x, lo - c.margin * width, hi + c.margin * width, c.min_width, "trained range")

    def get_state(self) -> dict[str, Any]:
        return self._range.get_state()

    def adopt_prior(self, prior: SeriesPrior) -> None:
        """The new version's [min, max] is the range from now on."""
        self._range.adopt(prior)

    def set_state(self, state: dict[str, Any]) -> None:
        self._range.set_state(state)
