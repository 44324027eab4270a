"""Run a set of detector cores over one series' readings: the piece every driver shares.

The streaming driver (``stateful``), the batch replay (``replay``) and the evaluate job all call
``run_series``, so the same readings and state give the same numbers everywhere.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .config import DetectorSpec
from .detectors import RESULT_COLUMNS, SeriesPrior, registry


@dataclass(frozen=True)
class BoundDetector:
    """A configured detector: output tag, registry name and validated config."""

    tag: str
    name: str
    config: Any


def bind(specs: list[DetectorSpec]) -> list[BoundDetector]:
    """Validated configs, tagged by name (``name#2`` when a name repeats)."""
    seen: dict[str, int] = {}
    out = []
    for spec in specs:
        seen[spec.name] = seen.get(spec.name, 0) + 1
        tag = spec.name if seen[spec.name] == 1 else f"{spec.name}#{seen[spec.name]}"
        out.append(BoundDetector(tag, spec.name, registry.make_config(spec.name, spec.params)))
    return out


def run_series(
    detectors: list[BoundDetector],
    values: np.ndarray,
    ts: np.ndarray,
    state: dict[str, Any] | None,
    prior: SeriesPrior | None = None,
) -> tuple[list[tuple[str, pd.DataFrame]], dict[str, Any]]:
    """Process one series' readings (in arrival order) through every detector.

    ``state`` maps tag -> detector state from the previous call (None for a new series).
    Returns per tag the result frame (RESULT_COLUMNS, one row per reading) and the new state.
    """
    state = dict(state or {})
    results = []
    for d in detectors:
        core = registry.build(d.name, d.config, prior)
        if d.tag in state:
            core.set_state(state[d.tag])
        frame = core.process(values, ts)
        state[d.tag] = core.get_state()
        results.append((d.tag, frame[list(RESULT_COLUMNS)]))
    return results, state


def dump_state(state: dict[str, Any]) -> bytes:
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def load_state(blob: bytes | None) -> dict[str, Any] | None:
    return None if blob is None else pickle.loads(blob)
