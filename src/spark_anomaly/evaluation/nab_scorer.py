"""NAB scoring, implemented from its published definition (Lavin & Ahmad 2015; NAB v1 sweeper).

Pure functions over numpy arrays, no I/O.

* Rows before the probationary period (first 15 % of a file, capped at 750 rows) are ignored.
* A row is a detection when its anomaly score is >= the threshold.
* Inside a window ``[left, right]`` of width ``w`` rows, a detection at row ``i`` is worth
  ``tp * sigma(-(right - i + 1) / w) / sigma(-1)`` with the scaled sigmoid
  ``sigma(y) = 2 / (1 + exp(5 y)) - 1`` (``-1`` for ``y > 3``): about +1 at the window's start,
  about 0 at its end. Only the earliest detection in a window counts (it is worth the most).
* A window without detection costs ``-fn``.
* A detection outside every window costs ``fp * sigma(|i - right_prev| / (w_prev - 1))`` where
  ``right_prev, w_prev`` are the previous window's right end and width (``-fp`` when no window
  precedes it, or when it is more than 3 window widths past the previous one).
* Normalised score = 100 * (raw - null) / (perfect - null), null = ``-fn * windows`` (no
  detection at all), perfect = ``tp * windows``.
* The threshold is chosen per profile to maximise the raw score summed over all series.
* ``Loss`` splits 100 - score into points lost to late detections, to missed windows and to
  detections outside windows, so a report says which of the three a detector should work on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .nab_data import probation_length


@dataclass(frozen=True)
class Profile:
    tp: float
    fp: float
    fn: float


# NAB config/profiles.json
PROFILES: dict[str, Profile] = {
    "standard": Profile(tp=1.0, fp=0.11, fn=1.0),
    "reward_low_FP_rate": Profile(tp=1.0, fp=0.22, fn=1.0),
    "reward_low_FN_rate": Profile(tp=1.0, fp=0.11, fn=2.0),
}


def scaled_sigmoid(y: float) -> float:
    """NAB's scaled sigmoid: 2*sigmoid(-5y) - 1 for y <= 3, else -1."""
    if y > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


MAX_TP = scaled_sigmoid(-1.0)


@dataclass
class ScoringRows:
    """The scorable rows (after probation) of one series, ready for any threshold and profile.

    ``value``: in a window, the unit TP reward sigma(position)/sigma(-1) in (0, 1]; outside,
    the unit FP cost sigma(distance) in [-1, 0]. ``window``: window number in this series or -1.
    """

    key: str
    scores: np.ndarray
    value: np.ndarray
    window: np.ndarray
    n_windows: int
    offset: int  # row index of scores[0] in the series (the probation length)


def row_values(n_rows: int, windows: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-row unit reward/cost and window number for a series of ``n_rows`` rows."""
    value = np.full(n_rows, -1.0)
    window = np.full(n_rows, -1, dtype=np.int64)
    prev_right: int | None = None
    prev_width = 0
    pos = 0
    for w, (left, right) in enumerate(sorted(windows)):
        _fill_fp(value, pos, left, prev_right, prev_width)
        width = right - left + 1
        idx = np.arange(left, right + 1)
        value[left : right + 1] = [scaled_sigmoid(-(right - i + 1) / width) / MAX_TP for i in idx]
        window[left : right + 1] = w
        prev_right, prev_width, pos = right, width, right + 1
    _fill_fp(value, pos, n_rows, prev_right, prev_width)
    return value, window


def _fill_fp(value: np.ndarray, start: int, stop: int, prev_right: int | None, prev_width: int) -> None:
    if stop <= start or prev_right is None:
        return  # before the first window: full cost (already -1)
    y = np.abs(np.arange(start, stop) - prev_right) / float(max(prev_width - 1, 1))
    with np.errstate(over="ignore"):
        value[start:stop] = np.where(y > 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0)


def prepare(key: str, scores: np.ndarray, windows: Sequence[tuple[int, int]]) -> ScoringRows:
    scores = np.nan_to_num(np.asarray(scores, dtype=float), nan=0.0)
    n = len(scores)
    value, window = row_values(n, windows)
    start = probation_length(n)
    window = window[start:]
    return ScoringRows(
        key=key,
        scores=scores[start:],
        value=value[start:],
        window=window,
        n_windows=int(np.unique(window[window >= 0]).size),
        offset=start,
    )


@dataclass(frozen=True)
class SeriesScore:
    """``late`` and ``false_cost`` say where raw score was lost, in raw units (both >= 0):
    ``late`` what the detected windows fell short of ``tp`` each (the earliest detection's
    sigmoid value), ``false_cost`` what the detections outside windows cost. With the missed
    windows' ``tp + fn`` each they add up to ``tp * windows - raw`` (see ``Loss``)."""

    key: str
    raw: float
    tp: int  # windows detected
    fn: int  # windows missed
    fp: int  # detections outside windows
    windows: int
    late: float
    false_cost: float


def score_series(rows: ScoringRows, profile: Profile, threshold: float) -> SeriesScore:
    """Raw NAB score of one series at one threshold."""
    det = rows.scores >= threshold
    out = ~(rows.window >= 0)
    fp_rows = det & out
    raw = float(profile.fp * rows.value[fp_rows].sum())
    false_cost = -raw
    tp = 0
    late = 0.0
    for w in np.unique(rows.window[rows.window >= 0]):
        hit = det & (rows.window == w)
        if hit.any():
            tp += 1
            best = float(rows.value[hit].max())  # the earliest detection is worth most
            raw += profile.tp * best
            late += profile.tp * (1.0 - best)
        else:
            raw -= profile.fn
    return SeriesScore(
        rows.key, raw, tp, rows.n_windows - tp, int(fp_rows.sum()), rows.n_windows, late, false_cost
    )


def _events(rows: ScoringRows, profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """(score, change of the raw score) for lowering the threshold to each row's score."""
    out = rows.window < 0
    s_parts = [rows.scores[out]]
    d_parts = [profile.fp * rows.value[out]]
    for w in np.unique(rows.window[~out]):
        m = rows.window == w
        s = rows.scores[m]
        v = profile.tp * rows.value[m]
        order = np.argsort(-s, kind="stable")
        s, v = s[order], v[order]
        best = np.maximum.accumulate(v)
        prev = np.concatenate(([-profile.fn], best[:-1]))
        s_parts.append(s)
        d_parts.append(best - prev)
    return np.concatenate(s_parts), np.concatenate(d_parts)


@dataclass(frozen=True)
class Sweep:
    thresholds: np.ndarray  # descending; the first is +inf (no detection)
    raw: np.ndarray  # corpus raw score at each threshold


def sweep(corpus: Sequence[ScoringRows], profile: Profile) -> Sweep:
    """The corpus raw score for every distinct threshold (NAB's calcScoreByThreshold)."""
    base = -profile.fn * sum(r.n_windows for r in corpus)
    if corpus:
        parts = [_events(r, profile) for r in corpus]
        s = np.concatenate([p[0] for p in parts])
        d = np.concatenate([p[1] for p in parts])
    else:
        s = d = np.zeros(0)
    order = np.argsort(-s, kind="stable")
    s, d = s[order], d[order]
    total = base + np.cumsum(d)
    last_of_group = np.flatnonzero(np.r_[s[1:] != s[:-1], True]) if s.size else np.zeros(0, dtype=int)
    return Sweep(np.r_[np.inf, s[last_of_group]], np.r_[base, total[last_of_group]])


def optimise_threshold(corpus: Sequence[ScoringRows], profile: Profile) -> tuple[float, float]:
    """(threshold, corpus raw score) maximising the raw score; ties go to the higher threshold."""
    sw = sweep(corpus, profile)
    best = int(np.argmax(sw.raw))
    return float(sw.thresholds[best]), float(sw.raw[best])


def null_and_perfect(corpus: Sequence[ScoringRows], profile: Profile) -> tuple[float, float]:
    windows = sum(r.n_windows for r in corpus)
    return -profile.fn * windows, profile.tp * windows


def normalise(raw: float, null: float, perfect: float) -> float:
    if perfect == null:
        return float("nan")  # no windows at all: the NAB score is undefined
    return 100.0 * (raw - null) / (perfect - null)


@dataclass(frozen=True)
class Loss:
    """Where a normalised score's distance to 100 went, in points (the three add up to 100 - score):
    ``late``: windows detected after their start (a detection at the labelled point, the window's
    middle, keeps 0.86 of a window); ``missed``: windows never detected (each loses its tp and
    costs its fn); ``false``: detections outside every window."""

    late: float
    missed: float
    false: float


def loss(per: Sequence[SeriesScore], profile: Profile, span: float) -> Loss:
    """``span``: perfect - null of the same corpus (``null_and_perfect``), i.e. 100 points."""
    if span == 0:
        nan = float("nan")
        return Loss(nan, nan, nan)
    missed = (profile.tp + profile.fn) * sum(p.fn for p in per)
    return Loss(
        100.0 * sum(p.late for p in per) / span,
        100.0 * missed / span,
        100.0 * sum(p.false_cost for p in per) / span,
    )


@dataclass(frozen=True)
class ProfileResult:
    profile: str
    threshold: float
    raw: float
    score: float  # normalised
    tp: int
    fn: int
    fp: int
    precision: float
    recall: float
    f1: float
    per_series: tuple[SeriesScore, ...]
    lost: Loss


def evaluate_profile(
    corpus: Sequence[ScoringRows], name: str, profile: Profile, threshold: float | None = None
) -> ProfileResult:
    """Score a corpus for one profile: at ``threshold`` if given, else at the optimised one.

    Window-level precision = detected windows / (detected windows + detections outside windows),
    recall = detected windows / windows, F1 their harmonic mean.
    """
    if threshold is None:
        threshold, _ = optimise_threshold(corpus, profile)
    per = tuple(score_series(r, profile, threshold) for r in corpus)
    raw = float(sum(p.raw for p in per))
    null, perfect = null_and_perfect(corpus, profile)
    tp = sum(p.tp for p in per)
    fn = sum(p.fn for p in per)
    fp = sum(p.fp for p in per)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return ProfileResult(
        name,
        threshold,
        raw,
        normalise(raw, null, perfect),
        tp,
        fn,
        fp,
        precision,
        recall,
        f1,
        per,
        loss(per, profile, perfect - null),
    )


def evaluate(
    corpus: Sequence[ScoringRows], thresholds: dict[str, float] | None = None
) -> dict[str, ProfileResult]:
    """All three NAB profiles; ``thresholds`` (profile -> threshold) applies saved ones."""
    thresholds = thresholds or {}
    return {
        name: evaluate_profile(corpus, name, prof, thresholds.get(name)) for name, prof in PROFILES.items()
    }
