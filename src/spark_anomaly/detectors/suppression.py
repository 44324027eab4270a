"""suppression: one alarm, then silence for a while (per series).

Wraps any registered detector. When its score reaches ``threshold`` an alarm is raised; for the
next ``rows`` readings and/or ``ms`` milliseconds of event time (whichever are configured, both
must have passed) later scores are reported as 0 with reason "suppressed". NAB rewards only the
earliest detection in a window and charges for every further one, and operators want one page
per incident, not one per reading.

``alarm_score`` (optional): the score reported for an alarm, instead of the inner score. The
first reading over the threshold usually scores just above it, so without it every alarm carries
nearly the same score and a threshold tuned on one set of series can split them arbitrarily on
another; with ``alarm_score: 1.0`` an alarm is an alarm (readings under the threshold still report
the inner score).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ._composite import build_member, member_spec, object_array
from .base import ColumnDetector, SeriesPrior, Verdict


@dataclass(frozen=True)
class SuppressionConfig:
    detector: str = "calibrated"
    params: dict[str, Any] = field(default_factory=dict)
    threshold: float = 0.5
    rows: int = 0  # readings to stay silent after an alarm
    ms: int = 0  # event time to stay silent after an alarm
    alarm_score: float | None = None  # score reported for an alarm (None: the inner score)

    def __post_init__(self) -> None:
        member_spec({"detector": self.detector, "params": self.params}, "suppression")
        if self.rows < 0 or self.ms < 0:
            raise ValueError("suppression: rows and ms must be >= 0")
        if self.alarm_score is not None and not 0.0 <= self.alarm_score <= 1.0:
            raise ValueError(f"suppression.alarm_score must be in [0, 1] or null, got {self.alarm_score!r}")


class SuppressionDetector(ColumnDetector):
    name: ClassVar[str] = "suppression"
    uses_prior: ClassVar[bool] = True  # the stream joins the trained model in for it (SeriesPrior)
    config_cls: ClassVar[type] = SuppressionConfig

    def __init__(self, config: SuppressionConfig | None = None, prior: SeriesPrior | None = None) -> None:
        self.config = config or SuppressionConfig()
        self.inner = build_member(
            {"detector": self.config.detector, "params": self.config.params}, prior, "suppression"
        )
        self._since = -1  # readings since the last alarm; -1 = no alarm yet
        self._alarm_ts: int | None = None

    def _step(self, v: Verdict, ts: int) -> Verdict:
        c = self.config
        if self._since >= 0:
            self._since += 1
            quiet = self._since <= c.rows or (
                c.ms > 0 and self._alarm_ts is not None and ts - self._alarm_ts < c.ms
            )
            if quiet:
                return Verdict(v.lower, v.upper, 0.0, v.probability, False, f"suppressed ({v.reason})")
        if v.score >= c.threshold:
            self._since, self._alarm_ts = 0, int(ts)
            score = v.score if c.alarm_score is None else c.alarm_score
            return Verdict(v.lower, v.upper, score, v.probability, True, v.reason)
        return Verdict(v.lower, v.upper, v.score, v.probability, False, v.reason)

    def process_one(self, x: float, ts: int) -> Verdict:
        return self._step(self.inner.process_one(x, ts), int(ts))

    def _columns(self, values: np.ndarray, ts: np.ndarray) -> dict[str, np.ndarray]:
        """``_step`` over a batch: only the readings at or over the threshold are visited one by
        one (to find the alarms); the silence after each alarm is then set on whole columns."""
        out = self.inner.process_columns(values, ts)
        c = self.config
        score = np.asarray(out["score"], dtype=float)
        n = len(score)
        tss = np.asarray(ts).astype(np.int64)
        since0, alarm_ts = self._since, self._alarm_ts

        def quiet(i: int, last: int | None) -> bool:
            if last is None and since0 < 0:
                return False
            since = i - last if last is not None else since0 + i + 1
            return since <= c.rows or (c.ms > 0 and alarm_ts is not None and int(tss[i]) - alarm_ts < c.ms)

        alarms: list[int] = []
        alarm_times: list[int] = []
        for i in np.flatnonzero(score >= c.threshold).tolist():
            if not quiet(i, alarms[-1] if alarms else None):
                alarms.append(i)
                alarm_ts = int(tss[i])
                alarm_times.append(alarm_ts)
        # each row's previous alarm (in this batch, else the state's), then its silence
        rows = np.arange(n)
        marks = np.full(n, -1)
        marks[alarms] = np.arange(len(alarms))
        prev_k = np.maximum.accumulate(np.r_[-1, marks[:-1]]) if n else marks
        in_batch = prev_k >= 0
        prev_row = np.where(in_batch, np.asarray(alarms + [0])[prev_k], 0)
        prev_ts = np.where(in_batch, np.asarray(alarm_times + [0])[prev_k], self._alarm_ts or 0)
        since = np.where(in_batch, rows - prev_row, since0 + rows + 1)
        armed = in_batch | (since0 >= 0)
        by_time = (c.ms > 0) & (in_batch | (self._alarm_ts is not None)) & (tss - prev_ts < c.ms)
        silent = armed & ((since <= c.rows) | by_time)
        alarm = np.zeros(n, dtype=bool)
        alarm[alarms] = True
        silent &= ~alarm
        reported = np.where(silent, 0.0, score)
        if c.alarm_score is not None:
            reported[alarm] = c.alarm_score
        reasons = object_array(list(out["reason"]))
        for i in np.flatnonzero(silent).tolist():
            reasons[i] = f"suppressed ({reasons[i]})"
        if alarms:
            self._since, self._alarm_ts = n - 1 - alarms[-1], alarm_times[-1]
        elif since0 >= 0:
            self._since = since0 + n
        return {
            "lower": np.asarray(out["lower"], dtype=float),
            "upper": np.asarray(out["upper"], dtype=float),
            "score": reported,
            "probability": np.asarray(out["probability"], dtype=float),
            "is_anomaly": alarm,
            "reason": reasons,
        }

    def get_state(self) -> dict[str, Any]:
        return {"inner": self.inner.get_state(), "since": self._since, "alarm_ts": self._alarm_ts}

    def adopt_prior(self, prior: SeriesPrior) -> None:
        self.inner.adopt_prior(prior)

    def set_state(self, state: dict[str, Any]) -> None:
        self.inner.set_state(state["inner"])
        self._since = int(state["since"])
        self._alarm_ts = None if state["alarm_ts"] is None else int(state["alarm_ts"])
