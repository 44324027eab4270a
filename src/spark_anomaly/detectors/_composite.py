"""Helpers shared by the composite detectors (calibrated, ensemble, suppression)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .base import Detector, SeriesPrior


def member_spec(spec: Any, where: str) -> tuple[str, dict[str, Any]]:
    """``{"detector": name, "params": {...}}`` (or a bare name) -> (name, params)."""
    if isinstance(spec, str):
        return spec, {}
    if not isinstance(spec, dict) or "detector" not in spec:
        raise ValueError(
            f"{where}: a member is a detector name or {{detector: <name>, params: {{...}}}}, got {spec!r}"
        )
    unknown = sorted(set(spec) - {"detector", "params"})
    if unknown:
        raise ValueError(f"{where}: member keys are 'detector' and 'params', not {', '.join(unknown)}")
    return str(spec["detector"]), dict(spec.get("params") or {})


def build_member(spec: Any, prior: SeriesPrior | None, where: str) -> Detector:
    from .registry import build

    name, params = member_spec(spec, where)
    return build(name, params, prior)


def object_array(items: list[Any]) -> np.ndarray:
    """A list as a 1-d object array (strings stay strings; no nesting even for tuples)."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def band_deviation_one(x: float, lower: float, upper: float, cap: float) -> float:
    """:func:`band_deviation` of one reading, in plain floats (the same IEEE operations)."""
    if not (math.isfinite(lower) and math.isfinite(upper) and math.isfinite(x)):
        return math.nan
    centre = (lower + upper) / 2.0
    half = (upper - lower) / 2.0
    off = abs(x - centre)
    dev = off / half if half > 0 else (cap if off > 0 else 0.0)
    return dev if dev < cap else cap


def band_deviation(x: np.ndarray, lower: np.ndarray, upper: np.ndarray, cap: float) -> np.ndarray:
    """|x - centre| in half band widths (NaN where there is no band; ``cap`` for a zero width)."""
    x, lower, upper = (np.asarray(a, dtype=float) for a in (x, lower, upper))
    centre = (lower + upper) / 2.0
    half = (upper - lower) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        dev = np.abs(x - centre) / half
    dev = np.where(half > 0, dev, np.where(np.abs(x - centre) > 0, cap, 0.0))
    dev = np.where(np.isfinite(lower) & np.isfinite(upper) & np.isfinite(x), dev, np.nan)
    return np.minimum(dev, cap)
