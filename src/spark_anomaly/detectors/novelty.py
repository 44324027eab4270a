"""novelty: how rarely the series has shown its latest short pattern of value levels.

The winning NAB detectors (HTM, CAD OSE, ARTime) react to *new* value ranges and to *new temporal
patterns*, not only to distance from a mean. This core is a cheap form of that: the trained range
[min, max] (the train job's model, ``SeriesPrior.min``/``max``; without a prior it is learned from
the first ``warmup`` readings, then frozen) is cut into ``bins`` equal levels, extended without
bound on both sides (a reading outside the range gets a level of its own), and the core counts
how often each pattern of the last ``order`` levels occurred (counts hashed into at most
``table_size`` slots, so the state stays bounded on an endless stream; only slots in use are
stored, a few hundred bytes per series rather than a dense table).

Each reading is scored before it is counted: with ``c`` earlier occurrences of its pattern among
``n`` counted readings, surprise s = -log((c + 1) / (n + 1)) (0 for a pattern seen every time, up
to log(n + 1) for one never seen), score = min(1, s / ``surprise_cap``) (a fixed linear scale, so
wrapped in ``calibrated`` with ``raw: score`` it is the surprise that is calibrated),
probability = 1 - (c + 1) / (n + 1), is_anomaly = the pattern was never seen before. No band.
Non-finite readings are reported ("invalid value") and neither counted nor part of a pattern.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

from .base import NAN, SeriesPrior, StepDetector
from .checks import require_ints, require_positive
from .trained_range import TrainedRange

_MASK = (1 << 64) - 1
_MULT = 1_000_003
_LEVEL_CAP = 1e18  # levels of absurd readings are clipped (floor of inf fails)


@dataclass(frozen=True)
class NoveltyConfig:
    """bins: levels across the trained range. order: readings per pattern (1 = levels only).
    table_size: slots of the hashed pattern counts. warmup: readings that learn the range when
    there is no prior. min_width: smallest range width (a flat training range). surprise_cap:
    the surprise that maps to score 1."""

    bins: int = 10
    order: int = 4
    table_size: int = 4096
    warmup: int = 500
    min_width: float = 1e-9
    surprise_cap: float = 20.0

    def __post_init__(self) -> None:
        require_ints(self, "novelty", ("bins", "order", "table_size", "warmup"))
        require_positive(self, "novelty", ("min_width", "surprise_cap"))


class NoveltyDetector(StepDetector):
    name: ClassVar[str] = "novelty"
    uses_prior: ClassVar[bool] = True  # the trained model's min/max sets the levels
    config_cls: ClassVar[type] = NoveltyConfig

    def __init__(self, config: NoveltyConfig | None = None, prior: SeriesPrior | None = None) -> None:
        self.config = config or NoveltyConfig()
        self._range = TrainedRange(prior, self.config.warmup)
        self._recent: deque[int] = deque(maxlen=self.config.order)  # the last levels
        self._counts: dict[int, int] = {}  # slot -> count, slots in use only
        self._n = 0  # readings counted

    def _slot(self) -> int:
        h = 0
        for level in self._recent:
            h = (h * _MULT + level) & _MASK
        return h % self.config.table_size

    def _step(self, x: float) -> tuple[float, float, float, float, bool, str]:
        c = self.config
        skipped = self._range.unscored(x)
        if skipped is not None:
            return skipped
        lo = self._range.lo
        step = max(self._range.hi - lo, c.min_width) / c.bins
        level = (x - lo) / step
        self._recent.append(math.floor(min(max(level, -_LEVEL_CAP), _LEVEL_CAP)))
        slot = self._slot()
        seen = self._counts.get(slot, 0)
        n = self._n
        surprise = math.log(n + 1.0) - math.log(seen + 1.0)
        score = min(1.0, surprise / c.surprise_cap)
        prob = 1.0 - (seen + 1.0) / (n + 1.0)
        self._counts[slot] = seen + 1
        self._n = n + 1
        if seen == 0:
            return (NAN, NAN, score, prob, n > 0, f"new pattern (surprise {surprise:.3g})")
        return (NAN, NAN, score, prob, False, f"pattern seen {seen} of {n} times")

    def get_state(self) -> dict[str, Any]:
        return {
            **self._range.get_state(),
            "recent": list(self._recent),
            "table_size": self.config.table_size,
            "counts": dict(self._counts),
            "n": self._n,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("table_size") != self.config.table_size:
            raise ValueError(
                f"novelty: state has {state.get('table_size')} slots, config {self.config.table_size}"
            )
        # A pickled state already holds int slots and counts: copying the dict is ~50x quicker than
        # converting every item (0.8 ms at 3,000 slots, the largest part of restoring recommended).
        # A state that went through JSON has string slots and is converted.
        counts = dict(state["counts"])
        if counts and type(next(iter(counts))) is not int:
            counts = {int(k): int(v) for k, v in counts.items()}
        self._range.set_state(state)
        self._recent = deque((int(v) for v in state["recent"]), maxlen=self.config.order)
        self._counts = counts
        self._n = int(state["n"])
