"""Detector cores (numpy/pandas, no Spark) and the registry that builds them by name."""

from .base import RESULT_COLUMNS, Detector, SeriesPrior, Verdict
from .registry import build, detector_class, make_config, names

__all__ = [
    "RESULT_COLUMNS",
    "Detector",
    "SeriesPrior",
    "Verdict",
    "build",
    "detector_class",
    "make_config",
    "names",
]
