"""Mergeable moments (n, mean, M2): Welford per value, Chan et al. to merge.

The train job computes them in Spark (whose variance aggregate is this same Welford/Chan
scheme, in the JVM); this module is the plain reference, used to merge model versions and in
tests. Never a sum of squares: that cancels catastrophically for large means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Moments:
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @property
    def variance(self) -> float | None:
        """Sample variance; None below two values (seed 003's M2.variance)."""
        return self.m2 / (self.n - 1) if self.n >= 2 else None

    @property
    def std(self) -> float | None:
        v = self.variance
        return None if v is None else float(np.sqrt(v))

    def add(self, x: float) -> Moments:
        """Welford's update with one value."""
        n = self.n + 1
        delta = x - self.mean
        mean = self.mean + delta / n
        return Moments(n, mean, self.m2 + delta * (x - mean))

    def merge(self, other: Moments) -> Moments:
        """Chan et al.'s pairwise merge: associative and commutative up to rounding."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * other.n / n
        m2 = self.m2 + other.m2 + delta * delta * self.n * other.n / n
        return Moments(n, mean, m2)

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        """Moments of a batch (two-pass, exact to rounding)."""
        v = np.asarray(values, dtype=float)
        if v.size == 0:
            return cls()
        mean = float(v.mean())
        return cls(int(v.size), mean, float(((v - mean) ** 2).sum()))


def merge_arrays(
    n_a: np.ndarray,
    mean_a: np.ndarray,
    m2_a: np.ndarray,
    n_b: np.ndarray,
    mean_b: np.ndarray,
    m2_b: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised Chan merge of aligned moment arrays (n = 0 is an empty side)."""
    n_a, n_b = np.asarray(n_a, dtype=float), np.asarray(n_b, dtype=float)
    n = n_a + n_b
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = np.nan_to_num(mean_b) - np.nan_to_num(mean_a)
        mean = np.where(n_a == 0, mean_b, np.where(n_b == 0, mean_a, mean_a + delta * n_b / n))
        m2 = np.nan_to_num(m2_a) + np.nan_to_num(m2_b) + np.where(n > 0, delta * delta * n_a * n_b / n, 0.0)
    return n.astype(np.int64), mean, m2
