"""Normal-distribution helpers shared by the detectors (no Spark)."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

_STD = NormalDist()


def z_for_quantile(p: float) -> float:
    """Phi^-1(p): the z whose one-sided normal quantile is p (robust's threshold)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"quantile p must be in (0, 1), got {p}")
    return _STD.inv_cdf(p)


def two_sided_confidence(z: float) -> float:
    """1 - 2*(1 - Phi(|z|)) = P(|Z| < |z|): near 1 when z is far in either tail.

    The seeds' cdf(|z|) is always >= 0.5; this is the honest two-sided form.
    """
    if math.isnan(z):
        return math.nan
    return math.erf(abs(z) / math.sqrt(2.0))


# Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7). Spark SQL has no erf; the zscore path computes
# this same polynomial as column expressions, so the numpy reference and the stream agree.
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def erf_approx(x: np.ndarray) -> np.ndarray:
    """erf(x) for x >= 0 via A&S 7.1.26."""
    x = np.asarray(x, dtype=float)
    t = 1.0 / (1.0 + _AS_P * x)
    a1, a2, a3, a4, a5 = _AS_A
    poly = ((((a5 * t + a4) * t + a3) * t + a2) * t + a1) * t
    return 1.0 - poly * np.exp(-x * x)
