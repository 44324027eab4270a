"""knn: how far the shape of the last day lies from the nearest day-shapes of the recent past.

A nearest-neighbour view in the spirit of NAB's KNN-CAD and ARTime: the pattern at row t is the
vector of ``window`` readings spaced ``d`` rows apart and ending at t, normalised by the trained
range [min, max] (the train job's model, ``SeriesPrior.min``/``max``; without a prior it is
learned from the first ``warmup`` readings, then frozen). With ``spacing: 0`` the spacing is
chosen so that one pattern spans one day: d = round(day / (reading interval x window)), the
interval being the median of the first ``interval_samples`` intervals between readings (at
least 1, at most ``max_spacing``). So a day that looks like none of the recent days stands out
even when every single reading is ordinary (a missing daily peak, a shifted routine).

The references are the patterns that end ``gap + i * stride`` rows before t (i < ``references``,
gap = one pattern span rounded up to a multiple of ``stride``, so a reference never shares a
reading with the current pattern, and when a day is a multiple of ``stride`` rows the references
include the same time of the earlier days). The raw distance is the mean of the ``k`` smallest
root-mean-square distances (in trained ranges); score = min(1, distance / ``distance_cap``) (a
fixed linear scale, so wrapped in ``calibrated`` with ``raw: score`` it is the distance that is
calibrated), probability = score, is_anomaly = distance >= ``anomaly_distance``. Scores are 0
until ``k`` complete references exist. No band.

State: the last gap + (references - 1) * stride + span readings (a bounded ring; 4552 floats for
the defaults on five-minute readings; saved as scaled integers when they are short decimals,
``state_arrays``) and the range. Work per reading: references x window
squared differences (16 000 for the defaults, 20 us one at a time); a batch of readings shares
them between its overlapping patterns (one squared difference per reading and reference, then
block sums by halves), 4-5 us per reading on NAB's series.
Non-finite readings are reported ("invalid value") and neither stored nor part of a pattern.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import as_strided

from .base import NAN, Detector, SeriesPrior, Step, Verdict, frame_from_rows
from .checks import require_ints, require_positive
from .state_arrays import pack_decimals, unpack_decimals
from .trained_range import TrainedRange


@dataclass(frozen=True)
class KnnConfig:
    """window: readings per pattern. spacing: rows between pattern readings (0 = one day per
    pattern, from the reading interval). day_ms: the length of a day. interval_samples: intervals
    that estimate the reading interval. max_spacing: cap on the automatic spacing (bounds the
    state). references: past patterns compared. stride: rows between references. k: nearest
    references averaged. warmup: readings that learn the range without a prior. min_width: smallest
    range width. distance_cap: the distance that maps to score 1. anomaly_distance: the distance at
    which is_anomaly is set."""

    window: int = 32
    spacing: int = 0
    day_ms: int = 86_400_000
    interval_samples: int = 20
    max_spacing: int = 32
    references: int = 500
    stride: int = 8
    k: int = 3
    warmup: int = 500
    min_width: float = 1e-9
    distance_cap: float = 10.0
    anomaly_distance: float = 0.5

    def __post_init__(self) -> None:
        ints = ("window", "day_ms", "interval_samples", "max_spacing", "references", "stride", "k", "warmup")
        require_ints(self, "knn", ints)
        if isinstance(self.spacing, bool) or not isinstance(self.spacing, int) or self.spacing < 0:
            raise ValueError(
                f"knn.spacing must be an int >= 0 (0 = one day per pattern), got {self.spacing!r}"
            )
        if self.k > self.references:
            raise ValueError(f"knn.k ({self.k}) must not exceed knn.references ({self.references})")
        require_positive(self, "knn", ("min_width", "distance_cap", "anomaly_distance"))


# readings scored together by ``_bulk``, and references per pass: a pass's temporaries hold about
# _CACHE_DOUBLES doubles (256 kB, a core's cache), at least _REF_CHUNK references; with the
# defaults on 5-minute readings a 512-reading batch goes 41 references at a time (all 500 at once:
# 4-5x slower per reading), a single reading all at once
_BULK = 512
_MIN_BULK = 2  # a single reading steps alone (the batch set-up costs more than it saves)
_REF_CHUNK = 32
_CACHE_DOUBLES = 32_768


def _blocks(window: int) -> list[tuple[int, int]]:
    """(offset, level) of the power-of-two blocks that ``window`` splits into, largest first."""
    out, offset = [], 0
    for level in range(window.bit_length() - 1, -1, -1):
        if window >> level & 1:
            out.append((offset, level))
            offset += 1 << level
    return out


def _smallest(dist: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` smallest of each row, ascending (the values ``np.sort(np.partition(...))`` gives):
    for a few neighbours, taking the row minimum ``k`` times is ~10x quicker than a partition.
    Overwrites the minima it takes in ``dist``."""
    if k > 16:
        return np.sort(np.partition(dist, k - 1, axis=1)[:, :k], axis=1)
    rows = np.arange(dist.shape[0])
    out = np.empty((dist.shape[0], k))
    for i in range(k):
        j = dist.argmin(axis=1)
        out[:, i] = dist[rows, j]
        dist[rows, j] = np.inf
    return out


def pairwise_sum(e: np.ndarray, blocks: list[tuple[int, int]]) -> np.ndarray:
    """Sum ``e`` over its axis 0 (the pattern's readings, newest first) in the one fixed order
    every scoring path uses: each power-of-two block summed by halves (its first half plus its
    second, term by term, until one term is left), then the blocks in turn.

    The shared order is what lets :func:`shared_sums` (many readings at once) give the same bits
    as this sum of one reading's terms, so results never depend on how readings were batched.
    With the readings' axis leading, each half is one contiguous run of memory.
    """
    acc = None
    for offset, level in blocks:
        x = e[offset : offset + (1 << level)]
        while len(x) > 1:
            h = len(x) // 2
            x = x[:h] + x[h:]
        acc = x[0] if acc is None else acc + x[0]
    return acc


def shared_sums(e: np.ndarray, b: int, spacing: int, blocks: list[tuple[int, int]]) -> np.ndarray:
    """:func:`pairwise_sum` for ``b`` consecutive readings from one row-indexed table of terms.

    ``e[r]``: the terms of row r (one per reference); reading s's pattern term m sits at row
    ``top + s - m * spacing`` (top = (window - 1) * spacing, the table's first rows being history).
    Consecutive patterns share all but one of their rows, so each halving step is done once per
    row for all of them (a row's partial sum plus the one ``h * spacing`` rows before it, h = half
    the block, then a quarter, ...) instead of once per pattern: about ``levels x (b + window x
    spacing)`` row sums instead of ``b x window``.
    """
    n_rows = e.shape[0]
    top = n_rows - b
    acc = None
    for offset, level in blocks:
        x = e  # x[i]: partial sums whose newest term is row i + (rows dropped so far)
        h = 1 << level
        while h > 1:
            h //= 2
            shift = h * spacing
            x = x[shift:] + x[: len(x) - shift]
        start = top - offset * spacing - ((1 << level) - 1) * spacing
        part = x[start : start + b]
        acc = part if acc is None else acc + part
    return acc


class KnnDetector(Detector):
    name: ClassVar[str] = "knn"
    uses_prior: ClassVar[bool] = True  # the trained model's min/max normalises the patterns
    config_cls: ClassVar[type] = KnnConfig

    def __init__(self, config: KnnConfig | None = None, prior: SeriesPrior | None = None) -> None:
        self.config = config or KnnConfig()
        self._range = TrainedRange(prior, self.config.warmup)
        self._ts: list[int] = []  # first timestamps, while the spacing is not decided
        self._pending: list[float] = []  # readings seen before the spacing was decided
        self._spacing = 0  # 0 = not decided yet
        self._buf = np.zeros(0)
        self._pos = -1  # index of the newest reading in the ring
        self._n = 0  # readings stored (capped at the ring size)
        if self.config.spacing > 0:
            self._decide(self.config.spacing)

    # -- geometry ------------------------------------------------------------------------------
    def _decide(self, spacing: int) -> None:
        c = self.config
        self._spacing = spacing
        self._blocks = _blocks(c.window)
        span = (c.window - 1) * spacing + 1
        # the first reference ends at least one span back, on the stride grid: with references every
        # ``stride`` rows at ages that are multiples of it, a day of a multiple of ``stride`` rows
        # always has its same-time-of-day references
        self._gap = -(-span // c.stride) * c.stride
        self._size = self._gap + (c.references - 1) * c.stride + span
        self._buf = np.zeros(2 * self._size)
        self._pos, self._n = -1, 0
        pending, self._pending = self._pending, []
        for x in pending:
            self._push(x)

    def _auto_spacing(self) -> int:
        c = self.config
        gaps = np.diff(np.asarray(self._ts, dtype=float))
        interval = max(float(np.median(gaps)), 1.0)
        return int(min(c.max_spacing, max(1, round(c.day_ms / (interval * c.window)))))

    def _push(self, x: float) -> None:
        self._pos = (self._pos + 1) % self._size
        self._buf[self._pos] = x
        self._buf[self._pos + self._size] = x
        self._n = min(self._n + 1, self._size)

    def _push_many(self, xs: np.ndarray) -> None:
        """``_push`` of each of ``xs`` in turn, in two slice-free writes."""
        size, b = self._size, len(xs)
        tail = xs[-size:]  # more than a ring's worth: only the last ring's worth stays
        at = (self._pos + 1 + (b - len(tail)) + np.arange(len(tail))) % size
        self._buf[at] = tail
        self._buf[at + size] = tail
        self._pos = (self._pos + b) % size
        self._n = min(self._n + b, size)

    # -- one reading ---------------------------------------------------------------------------
    def _step(self, x: float, ts: int) -> Step:
        """Score ``x`` (read at ``ts``) against the past patterns, then keep it."""
        c = self.config
        if not math.isfinite(x):
            return (NAN, NAN, 0.0, 0.0, False, "invalid value")
        warming = self._range.learning(x)
        if self._spacing == 0:
            self._ts.append(ts)
            self._pending.append(x)
            if len(self._ts) <= c.interval_samples:
                return (NAN, NAN, 0.0, 0.0, False, warming or "estimating the reading interval")
            self._decide(self._auto_spacing())  # also stores the pending readings, x included
            self._ts = []
        else:
            self._push(x)
        if warming is not None:
            return (NAN, NAN, 0.0, 0.0, False, warming)
        n_ref = self._n_ref(self._n)
        if n_ref < c.k:
            return (NAN, NAN, 0.0, 0.0, False, f"collecting patterns ({max(n_ref, 0)}/{c.k})")
        # strided views of the ring (stored twice in a row, so the newest reading sits at
        # pos + size with a whole ring before it): reading m of the pattern and of each reference
        # (built with the ndarray constructor: a quarter of as_strided's cost, paid per reading)
        it, sp, newest, buf = self._buf.itemsize, self._spacing, self._pos + self._size, self._buf
        refs = np.ndarray(
            (c.window, n_ref), float, buf, (newest - self._gap) * it, (-sp * it, -c.stride * it)
        )
        pattern = np.ndarray((c.window, 1), float, buf, newest * it, (-sp * it, 0))
        diff = np.subtract(refs, pattern)
        diff *= diff
        sq = _smallest(pairwise_sum(diff, self._blocks)[None, :], c.k)[0]
        width = max(self._range.hi - self._range.lo, c.min_width)
        d = float((np.sqrt(sq / c.window) / width).sum() / c.k)
        score = min(1.0, d / c.distance_cap)
        return (NAN, NAN, score, score, d >= c.anomaly_distance, f"nearest patterns {d:.3g} ranges away")

    def process_one(self, x: float, ts: int) -> Verdict:
        return Verdict(*self._step(float(x), int(ts)))

    def process_rows(self, values: np.ndarray, ts: np.ndarray) -> list[Step]:
        """Verdict-shaped tuples (the drivers' fast path); same numbers as ``process_one``.

        Once the spacing is known and the range frozen, runs of at least ``_MIN_BULK`` finite
        readings that have their ``k`` references are scored up to ``_BULK`` at a time by
        ``_bulk``; the rest (warm-up, missing values, the one to three readings a series brings
        to a live micro-batch) step one by one, which is quicker for so few."""
        values = np.asarray(values, dtype=float)
        tss = np.asarray(ts).tolist()
        out: list[Step] = []
        finite = np.isfinite(values)
        k = self.config.k
        i, n = 0, len(values)
        while i < n:
            # once a reading has k references, every later one has too
            if self._spacing and self._range.frozen and finite[i] and self._n_ref(self._n + 1) >= k:
                j = i + 1
                while j < n and j - i < _BULK and finite[j]:
                    j += 1
                if j - i >= _MIN_BULK:
                    out += self._bulk(values[i:j])
                    i = j
                    continue
            out.append(self._step(float(values[i]), int(tss[i])))
            i += 1
        return out

    def _shared_pays(self, b: int) -> bool:
        """Whether :func:`shared_sums` beats one pattern at a time for ``b`` readings: it builds
        each level's sums once per row of the batch and of the span before it, which pays once
        the batch is long against the spacing (about 5 x the spacing for 32 readings a pattern)."""
        w, sp = self.config.window, self._spacing
        rows = b + (w - 1) * sp
        shared = 2 * rows + sum(rows - ((1 << lv) - 1) * sp for lv in range(1, self._blocks[0][1] + 1))
        return shared < b * (3 * w - 1)

    def _n_ref(self, stored: int) -> int:
        """References a step scores against with ``stored`` readings in the ring (its own included)."""
        c = self.config
        stored = min(stored, self._size)
        return min(c.references, (stored - 1 - (c.window - 1) * self._spacing - self._gap) // c.stride + 1)

    def _bulk(self, xs: np.ndarray) -> list[Step]:
        """``_step`` for finite readings that all have ``k`` references, with a frozen range, all
        at once: the ring's readings and ``xs`` laid out in a row, every step's pattern and
        references read from it, distances summed in ``_step``'s order (a test holds them equal
        bit for bit, whatever the batch sizes). While the ring fills, a step has fewer references
        than the last one: the distances to the ones it does not have yet are set to infinity."""
        c, size, b = self.config, self._size, len(xs)
        stored = np.minimum(self._n + 1 + np.arange(b), size)
        n_refs = np.minimum(
            c.references, (stored - 1 - (c.window - 1) * self._spacing - self._gap) // c.stride + 1
        )
        n_ref = int(n_refs[-1])
        ring = self._buf[self._pos + 1 : self._pos + size + 1]  # oldest first (stored twice in a row)
        line = np.concatenate((ring, xs))
        it, sp, top = line.itemsize, self._spacing, (c.window - 1) * self._spacing
        dist = np.empty((b, n_ref))
        shared = self._shared_pays(b)
        if shared:
            r0 = size - top  # rows r0 .. size + b - 1: the b patterns and the history they reach
            now = line[r0:, None]
            past = as_strided(
                line[r0 - self._gap :], shape=(b + top, n_ref), strides=(it, -c.stride * it), writeable=False
            )
        else:
            # strided views, no copies: step s's newest reading is line[size + s]; reference j's
            # reading m is ``gap + j*stride + m*spacing`` rows before it, the pattern's ``m*spacing``;
            # laid out (m, s, j), so that pairwise_sum's halves are contiguous
            refs = as_strided(
                line[size - self._gap :],
                shape=(c.window, b, n_ref),
                strides=(-sp * it, it, -c.stride * it),
                writeable=False,
            )
            pattern = as_strided(
                line[size:], shape=(c.window, b, 1), strides=(-sp * it, it, 0), writeable=False
            )
        # references a few dozen at a time when the batch is long, so that every temporary stays
        # in the core's cache; all at once for a few readings (one pass, no per-chunk overhead)
        rows_per_ref = b + top if shared else b * c.window
        chunk = max(_REF_CHUNK, _CACHE_DOUBLES // rows_per_ref)
        for j0 in range(0, n_ref, chunk):
            j1 = min(j0 + chunk, n_ref)
            if shared:
                # each row's squared difference from each reference lag, once per row
                terms = np.subtract(now, past[:, j0:j1])
                terms *= terms
                dist[:, j0:j1] = shared_sums(terms, b, sp, self._blocks)
            else:
                diff = np.subtract(refs[:, :, j0:j1], pattern, order="C")
                diff *= diff
                dist[:, j0:j1] = pairwise_sum(diff, self._blocks)
        if n_refs[0] < n_ref:
            dist[np.arange(n_ref)[None, :] >= n_refs[:, None]] = np.inf
        sq = _smallest(dist, c.k)
        width = max(self._range.hi - self._range.lo, c.min_width)
        ds = ((np.sqrt(sq / c.window) / width).sum(axis=1) / c.k).tolist()
        self._push_many(xs)
        cap, at = c.distance_cap, c.anomaly_distance
        return [
            (NAN, NAN, min(1.0, d / cap), min(1.0, d / cap), d >= at, f"nearest patterns {d:.3g} ranges away")
            for d in ds
        ]

    def process(self, values: np.ndarray, ts: np.ndarray) -> pd.DataFrame:
        return frame_from_rows(self.process_rows(values, ts))

    # -- state ---------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        n = self._n
        if self._spacing and n:
            recent = self._buf[self._pos + self._size - n + 1 : self._pos + self._size + 1].copy()
        else:
            recent = np.zeros(0)
        return {
            **self._range.get_state(),
            "spacing": self._spacing,
            "ts": list(self._ts),
            "pending": list(self._pending),
            "recent": pack_decimals(recent),
        }

    def adopt_prior(self, prior: SeriesPrior) -> None:
        """The new version's width scales the distances (the buffer holds raw readings)."""
        self._range.adopt(prior)

    def set_state(self, state: dict[str, Any]) -> None:
        self._range.set_state(state)
        self._ts = [int(v) for v in state["ts"]]
        self._pending = [float(v) for v in state["pending"]]
        spacing = int(state["spacing"])
        if spacing:
            pending, self._pending = self._pending, []
            self._decide(spacing)
            # the ring as pushing ``recent`` one by one would leave it (at most one ring's worth)
            recent = unpack_decimals(state["recent"]).ravel()[-self._size :]
            k = len(recent)
            self._buf[:k] = recent
            self._buf[self._size : self._size + k] = recent
            self._pos, self._n = k - 1, k
            self._pending = pending
        else:
            self._spacing = 0
            self._buf, self._pos, self._n = np.zeros(0), -1, 0
