"""flatline: a stuck sensor, i.e. a run of identical readings longer than the series has shown.

None of the value-based cores can see a series that stops moving: a reading equal to the
previous one is as ordinary as a reading can be for range/record (inside the band), delta (no
change), novelty (a common level pattern) and knn (a flat day is close to the quiet days). Yet a
sensor that flat-lines, or a count that drops out to a constant (a disk that stops writing), is
a real incident. This core counts the current run of readings within ``tolerance`` of the
previous one and compares it with the longest run the series has completed before: the run
alarms once, at the reading where it first exceeds ``factor`` times that longest run (never
shorter than ``min_run``). So a series that idles at zero for hours between bursts alarms only
when an idle spell is clearly longer than every earlier one, and a continuously noisy series
alarms after ``min_run`` identical readings. The rest of the spell is reported (reason) but not
flagged again: the spell is known, and it becomes the longest run once it ends (as with
``record``, what the series has shown once counts as seen). With ``learn_alarmed=False`` a run
that alarmed does not raise the reference, so every spell longer than the series' ordinary runs
alarms: for continuous sensors, where each stuck spell is an incident of its own.
Used uncalibrated (score 1 at the onset, 0 elsewhere): the onset is rare by construction.

State: the previous reading, the current run's length, the longest completed run, whether the
current run has alarmed (four plain values). No band (NaN): the alarm is about time, not level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from .base import NAN, SeriesPrior, Step, StepDetector
from .checks import require_ints


@dataclass(frozen=True)
class FlatlineConfig:
    """factor: how many times the longest earlier run the current run must exceed to alarm.
    min_run: the shortest run that can alarm (the reference while earlier runs are shorter).
    tolerance: readings within this absolute distance of the previous one count as identical
    (0: exact repeats, what a stuck sensor or a dropped-out count produces).
    learn_alarmed: whether a run that alarmed becomes a reference once it ends."""

    factor: float = 1.25
    min_run: int = 30
    tolerance: float = 0.0
    learn_alarmed: bool = True

    def __post_init__(self) -> None:
        f = self.factor
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) or f < 1:
            raise ValueError(f"flatline.factor must be a finite number >= 1, got {f!r}")
        require_ints(self, "flatline", ("min_run",), minimum=2)
        t = self.tolerance
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise ValueError(f"flatline.tolerance must be a finite number >= 0, got {t!r}")
        if not isinstance(self.learn_alarmed, bool):
            raise ValueError(f"flatline.learn_alarmed must be true or false, got {self.learn_alarmed!r}")


class FlatlineDetector(StepDetector):
    name: ClassVar[str] = "flatline"
    uses_prior: ClassVar[bool] = False  # run lengths are learned from the stream itself
    config_cls: ClassVar[type] = FlatlineConfig

    def __init__(self, config: FlatlineConfig | None = None, prior: SeriesPrior | None = None) -> None:
        self.config = config or FlatlineConfig()
        self._prev = NAN  # previous valid reading (NaN before the first)
        self._run = 0  # length of the current run, including the previous reading
        self._longest = 0  # longest run completed before the current one (that counts)
        self._fired = False  # the current run has alarmed

    def _step(self, x: float) -> Step:
        c = self.config
        if not math.isfinite(x):
            return (NAN, NAN, 0.0, 0.0, False, "invalid value")  # neither breaks nor extends a run
        if abs(x - self._prev) <= c.tolerance:  # False while _prev is NaN
            self._run += 1
        else:
            if c.learn_alarmed or not self._fired:
                self._longest = max(self._longest, self._run)
            self._run, self._fired = 1, False
        self._prev = x
        if self._run < 2:
            return (NAN, NAN, 0.0, 0.0, False, "ok")
        reference = c.factor * max(self._longest, c.min_run)
        if self._run > reference and not self._fired:
            self._fired = True
            reason = f"flat for {self._run} readings (longest earlier run {self._longest})"
            return (NAN, NAN, 1.0, 1.0, True, reason)
        if self._fired:
            return (NAN, NAN, 0.0, 0.0, False, f"still flat ({self._run} readings)")
        return (NAN, NAN, 0.0, 0.0, False, "ok")

    def get_state(self) -> dict[str, Any]:
        return {"prev": self._prev, "run": self._run, "longest": self._longest, "fired": self._fired}

    def set_state(self, state: dict[str, Any]) -> None:
        self._prev = float(state["prev"])
        self._run, self._longest = int(state["run"]), int(state["longest"])
        self._fired = bool(state["fired"])
