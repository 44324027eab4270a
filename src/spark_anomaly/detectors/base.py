"""The contract every detector core honours.

A detector core is plain Python/numpy: no Spark import. It holds the state of *one* series and
sees that series' readings in arrival order. Each reading is first scored against what the
detector learned from the past, then learned from, so a score never depends on the future.
The same core runs in the streaming job (per series, state kept by Spark), in batch replay and
in the evaluate job: one implementation, several drivers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SeriesPrior:
    """What the train job knows about a series (one row of the model table).

    Detectors that need a scale (cad's value range, zscore's band) take it from here.
    """

    n: int
    mean: float
    m2: float
    min: float
    max: float
    model_version: int | None = None

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / (self.n - 1))) if self.n >= 2 else float("nan")


class Verdict(NamedTuple):
    """One scored reading: the result contract (DESIGN.md, "Result out")."""

    lower: float
    upper: float
    score: float
    probability: float
    is_anomaly: bool
    reason: str


RESULT_COLUMNS: tuple[str, ...] = Verdict._fields
NAN = float("nan")


class Detector(ABC):
    """Base class of the detector cores (one instance per series).

    Subclasses set ``name``, take a config dataclass (and optionally a ``SeriesPrior``) in
    ``__init__`` and implement ``process_one``, ``get_state`` and ``set_state``.
    ``get_state`` returns plain Python/numpy values only, so a driver can serialise it
    (Spark state, checkpoints, tests) and ``set_state`` on a fresh instance continues exactly
    where the old one stopped.
    """

    name: ClassVar[str]

    @abstractmethod
    def process_one(self, x: float, ts: int) -> Verdict:
        """Score reading ``x`` (event time ``ts`` in epoch ms) against the past, then learn it."""

    def process(self, values: np.ndarray, ts: np.ndarray) -> pd.DataFrame:
        """Process a run of readings in order; returns one row of RESULT_COLUMNS per reading.

        Subclasses override this with a faster loop when they can; the numbers must match
        ``process_one`` exactly.
        """
        rows = [self.process_one(float(x), int(t)) for x, t in zip(values, ts, strict=True)]
        if not rows:
            return empty_results(0)
        return pd.DataFrame.from_records(rows, columns=RESULT_COLUMNS)

    def process_columns(self, values: np.ndarray, ts: np.ndarray) -> dict[str, np.ndarray]:
        """``process`` as RESULT_COLUMNS arrays (reason an object array). The composites pass
        these between their layers and the stream's driver concatenates them: a pandas frame
        per layer and per series cost about as much as the detectors' own work on short runs."""
        process_rows = getattr(self, "process_rows", None)
        if process_rows is not None:
            return result_columns(process_rows(values, ts))
        out = self.process(values, ts)
        return {c: out[c].to_numpy() for c in RESULT_COLUMNS}

    @abstractmethod
    def get_state(self) -> dict[str, Any]:
        """The series state as plain values (numbers, strings, lists, dicts, numpy arrays)."""

    @abstractmethod
    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a state produced by ``get_state``."""

    def adopt_prior(self, prior: SeriesPrior) -> None:
        """A newer model version for a series this core already holds state for.

        The default keeps the core as it is: what it learned from the stream (cad's contexts,
        novelty's pattern counts) is built on the figures it started from, and swapping them
        underneath would mix two scales. Cores whose figures are the model's alone (zscore's
        band, range's trained range) override this to score against the new version from the
        next reading on.
        """
        return None


def empty_results(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lower": np.full(n, np.nan),
            "upper": np.full(n, np.nan),
            "score": np.zeros(n),
            "probability": np.zeros(n),
            "is_anomaly": np.zeros(n, dtype=bool),
            "reason": np.full(n, "", dtype=object),
        }
    )


Step = tuple[float, float, float, float, bool, str]


def result_columns(rows: list[Step]) -> dict[str, np.ndarray]:
    """RESULT_COLUMNS arrays from Verdict-shaped tuples, with the dtypes of ``empty_results``."""
    if not rows:
        return {c: empty_results(0)[c].to_numpy() for c in RESULT_COLUMNS}
    lower, upper, score, prob, anom, reason = zip(*rows, strict=True)
    return {
        "lower": np.array(lower, dtype=float),
        "upper": np.array(upper, dtype=float),
        "score": np.array(score, dtype=float),
        "probability": np.array(prob, dtype=float),
        "is_anomaly": np.array(anom, dtype=bool),
        "reason": np.array(reason, dtype=object),
    }


def frame_from_rows(rows: list[Step]) -> pd.DataFrame:
    """Result columns from Verdict-shaped tuples, with the dtypes of ``empty_results``."""
    return pd.DataFrame(result_columns(rows), columns=list(RESULT_COLUMNS))


def frame_from_columns(cols: dict[str, Any]) -> pd.DataFrame:
    """The result frame of ``process_columns``' arrays (dtypes as ``empty_results``)."""
    return pd.DataFrame({c: cols[c] for c in RESULT_COLUMNS}, columns=list(RESULT_COLUMNS), copy=False)


# below this many readings a composite steps reading by reading (``process_one``): a live
# micro-batch brings a series one to a few readings, and whole-column work on so few costs more
# in numpy calls than it saves (recommended with a full state, one reading at a time: 256 us
# through columns, 72 one by one; the two meet at about 8 readings)
FEW_READINGS = 8


class ColumnDetector(Detector):
    """A detector whose batch work is ``process_columns`` (the composites): ``process`` is its
    frame, built once at the outermost layer. Subclasses implement ``_columns``; a run of fewer
    than ``FEW_READINGS`` readings goes through ``process_one`` instead (the same numbers)."""

    @abstractmethod
    def _columns(self, values: np.ndarray, ts: np.ndarray) -> dict[str, np.ndarray]:
        """RESULT_COLUMNS arrays for a run of readings; same numbers as ``process_one``."""

    def process_columns(self, values: np.ndarray, ts: np.ndarray) -> dict[str, np.ndarray]:
        if 0 < len(values) < FEW_READINGS:
            return result_columns(
                [self.process_one(float(x), int(t)) for x, t in zip(values, ts, strict=True)]
            )
        return self._columns(values, ts)

    def process(self, values: np.ndarray, ts: np.ndarray) -> pd.DataFrame:
        return frame_from_columns(self.process_columns(values, ts))


class StepDetector(Detector):
    """A detector whose work per reading is one ``_step(x)`` returning a Verdict-shaped tuple:
    ``process_one``, the drivers' ``process_rows`` fast path and ``process`` all come from it."""

    @abstractmethod
    def _step(self, x: float) -> Step:
        """Score ``x`` against the past, then learn it."""

    def process_one(self, x: float, ts: int) -> Verdict:
        return Verdict(*self._step(float(x)))

    def process_rows(
        self, values: np.ndarray, ts: np.ndarray
    ) -> list[tuple[float, float, float, float, bool, str]]:
        """Verdict-shaped tuples (the drivers' fast path); same numbers as ``process_one``."""
        step = self._step
        return [step(float(x)) for x in np.asarray(values, dtype=float)]

    def process(self, values: np.ndarray, ts: np.ndarray) -> pd.DataFrame:
        return frame_from_rows(self.process_rows(values, ts))
