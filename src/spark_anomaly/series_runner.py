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
from .detector_specs import registry_params
from .detectors import RESULT_COLUMNS, Detector, SeriesPrior, registry
from .detectors.base import Step, result_columns


@dataclass(frozen=True)
class BoundDetector:
    """A configured detector: output tag (the entry's name), registry name and validated config."""

    tag: str
    name: str
    config: Any


def bind(specs: list[DetectorSpec]) -> list[BoundDetector]:
    """Validated configs, tagged by name (``name#2`` when a name repeats).

    A name may be a named configuration (``recommended``): it is read here, on the driver, and
    the workers get the config it builds; its rows are tagged with that name.
    """
    seen: dict[str, int] = {}
    out = []
    for spec in specs:
        seen[spec.name] = seen.get(spec.name, 0) + 1
        tag = spec.name if seen[spec.name] == 1 else f"{spec.name}#{seen[spec.name]}"
        name, params = registry_params(spec.name, spec.params)
        out.append(BoundDetector(tag, name, registry.make_config(name, params)))
    return out


def needs_prior(detectors: list[BoundDetector]) -> bool:
    """Whether any of the detectors takes the trained model (a ``SeriesPrior``) per series."""
    return any(getattr(registry.detector_class(d.name), "uses_prior", False) for d in detectors)


def run_batch(
    detectors: list[BoundDetector],
    values: np.ndarray,
    ts: np.ndarray,
    starts: np.ndarray,
    states: list[dict[str, Any] | None],
    priors: list[SeriesPrior | None],
    cores: list[dict[str, Detector]] | None = None,
) -> tuple[dict[str, dict[str, np.ndarray]], list[dict[str, Any]], list[dict[str, Detector]]]:
    """Many series at once: series ``i`` is ``values[starts[i]:starts[i+1]]`` (arrival order).

    Why: the per-call costs (pandas frames, class look-ups) dominate when each series has only a
    few readings, so cores that offer ``process_rows`` (Verdict-shaped tuples) are run without
    building a frame per series and each result column is built once for the whole batch.
    The numbers are those of ``process`` / ``process_one``: same cores, same order.
    ``cores`` optionally holds live cores per series (tag -> core) that are exactly at the state
    given in ``states``: they are used as they are, skipping construction and ``set_state``.
    Returns per tag the RESULT_COLUMNS arrays (concatenated in input order), the new states and
    the live cores (now at the new states).
    """
    n_series = len(starts) - 1
    new_states: list[dict[str, Any]] = [dict(s) if s else {} for s in states]
    newer = _newer_priors(new_states, priors) if needs_prior(detectors) else [False] * n_series
    vals = np.asarray(values, dtype=float)
    tss = np.asarray(ts, dtype="int64")
    bounds = np.asarray(starts).tolist()
    live: list[dict[str, Detector]] = [dict(c) for c in cores] if cores is not None else [{} for _ in states]
    out: dict[str, dict[str, np.ndarray]] = {}
    for d in detectors:
        cls = registry.detector_class(d.name)
        fast = getattr(cls, "process_rows", None) is not None
        rows: list[Step] = []
        parts: list[dict[str, np.ndarray]] = []
        tag, config = d.tag, d.config
        for i in range(n_series):
            lo, hi = bounds[i], bounds[i + 1]
            st = new_states[i]
            core = live[i].get(tag)
            if core is None:
                core = live[i][tag] = cls(config, priors[i])
                if tag in st:
                    core.set_state(st[tag])
            if newer[i]:
                core.adopt_prior(priors[i])
            if fast:
                rows.extend(core.process_rows(vals[lo:hi], tss[lo:hi]))
            else:
                parts.append(core.process_columns(vals[lo:hi], tss[lo:hi]))
            st[tag] = core.get_state()
        if fast:
            out[tag] = result_columns(rows)
        elif parts:
            out[tag] = {c: np.concatenate([p[c] for p in parts]) for c in RESULT_COLUMNS}
        else:
            out[tag] = result_columns([])
    return out, new_states, live


# The state key that records the model version a series' cores last took their prior from.
# A tag is a detector name (optionally ``name#2``), never starting with "#", so it cannot clash.
PRIOR_VERSION = "#model_version"


def _newer_priors(states: list[dict[str, Any]], priors: list[SeriesPrior | None]) -> list[bool]:
    """Per series, whether it now has a prior of another model version than its cores were
    built on; each state then records the version it has (None: the model does not know it).

    A series with nothing recorded (new, or state from before versions were recorded) takes the
    version it has now without a swap: a new series' cores are built with that prior anyway.
    A series the new version does not know (no prior) keeps its cores as they are; one the model
    comes to know later (None, then a version) takes that version's prior.
    """
    out = []
    for st, prior in zip(states, priors, strict=True):
        version = None if prior is None else prior.model_version
        out.append(version is not None and PRIOR_VERSION in st and st[PRIOR_VERSION] != version)
        st[PRIOR_VERSION] = version
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
    cols, states, _ = run_batch(detectors, values, ts, np.array([0, len(values)]), [state], [prior])
    results = [(d.tag, pd.DataFrame(cols[d.tag], columns=list(RESULT_COLUMNS))) for d in detectors]
    return results, states[0]


def dump_state(state: dict[str, Any]) -> bytes:
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def load_state(blob: bytes | None) -> dict[str, Any] | None:
    return None if blob is None else pickle.loads(blob)
