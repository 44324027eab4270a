"""Detectors by name: the one place configuration turns a name and parameters into a core."""

from __future__ import annotations

import dataclasses
import functools
import importlib
from typing import Any

from .base import Detector, SeriesPrior

# name -> "module:Class". Each class has a ``config_cls`` dataclass of its parameters.
_DETECTORS: dict[str, str] = {
    "zscore": "spark_anomaly.detectors.zscore:ZScoreDetector",
    "normal": "spark_anomaly.detectors.normal:NormalDetector",
    "ema": "spark_anomaly.detectors.ema:EmaDetector",
    "robust": "spark_anomaly.detectors.robust:RobustDetector",
    "kmeans": "spark_anomaly.detectors.kmeans:KMeansDetector",
    "cad": "spark_anomaly.detectors.cad:CadDetector",
    "calibrated": "spark_anomaly.detectors.calibrated:CalibratedDetector",
    "ensemble": "spark_anomaly.detectors.ensemble:EnsembleDetector",
    "suppression": "spark_anomaly.detectors.suppression:SuppressionDetector",
    "delta": "spark_anomaly.detectors.delta:DeltaDetector",
    "range": "spark_anomaly.detectors.range:RangeDetector",
    "novelty": "spark_anomaly.detectors.novelty:NoveltyDetector",
    "knn": "spark_anomaly.detectors.knn:KnnDetector",
    "record": "spark_anomaly.detectors.record:RecordDetector",
    "flatline": "spark_anomaly.detectors.flatline:FlatlineDetector",
}


def names() -> list[str]:
    return sorted(_DETECTORS)


@functools.cache  # the table is fixed: a restore builds ~10 cores of recommended per series
def detector_class(name: str) -> type[Detector]:
    try:
        target = _DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; known: {', '.join(names())}") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def make_config(name: str, params: dict[str, Any] | None = None) -> Any:
    """The detector's config dataclass from a dict, rejecting unknown keys with a clear error."""
    cfg_cls = detector_class(name).config_cls
    params = dict(params or {})
    known = _fields(cfg_cls)
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(
            f"detector {name!r} has no parameter(s) {', '.join(unknown)}; it takes: {', '.join(sorted(known))}"
        )
    return cfg_cls(**params)


@functools.cache
def _fields(cfg_cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cfg_cls))


def build(name: str, params: dict[str, Any] | Any = None, prior: SeriesPrior | None = None) -> Detector:
    """A fresh detector core for one series."""
    cls = detector_class(name)
    config = params if dataclasses.is_dataclass(params) else make_config(name, params)
    return cls(config, prior)
