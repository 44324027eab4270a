"""kmeans (seed 001, Netdata-style): k-means on smoothed, differenced, lagged feature vectors.

Per reading: moving average of width ``n_smoothing``, first differences (``diffs``), and the
feature vector = the last ``n_lags + 1`` processed values. Every ``train_every_n`` readings (once
``train_data_size`` vectors exist) k-means is fitted on the last ``train_data_size`` vectors; the
score is the mean distance of the current vector to the centres, min–max scaled by the training
vectors' mean distances, capped at ``anomaly_score_cap`` and divided by it, so it lies in [0, 1].

Differences from the seed, all so that a score never depends on the future and replays agree:
- the current reading is scored with the model trained *before* it (the seed trained first, so
  its training-step reading was scored by a model that had seen it);
- k-means is a small deterministic Lloyd (maximin seeding, no RNG): the seed's
  ``sklearn.KMeans`` is random and costs ~0.5–2 ms per 25×4 fit, this one ~30 µs;
- the seed's 2-decimal rounding is off by default (it is scale dependent); ``round_digits=2``
  restores it, both in preprocessing and on the scored distance;
- one series per detector; a group of series (concatenated vectors) is not implemented here.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from .base import NAN, Detector, SeriesPrior, Verdict, frame_from_rows

THRESHOLD_MODES = ("score", "percentile99")
_INF = math.inf
_dist = math.dist

Step = tuple[float, float, float, float, bool, str]


@dataclass(frozen=True)
class KMeansConfig:
    """Parameters of the kmeans detector (defaults are seed 001's).

    threshold_mode: "score" flags score > score_threshold (default 0.2 = scaled distance 1 with
        cap 5, i.e. farther than every training vector); "percentile99" is Netdata's anomaly bit:
        mean distance above the 99th percentile of the training vectors' mean distances.
    round_digits: round smoothed values, differences and the scored distance like the seed
        (seed: 2); None = no rounding.
    max_iter: Lloyd iterations per fit (it stops earlier when assignments settle).
    """

    n_smoothing: int = 3
    diffs: bool = True
    n_lags: int = 3
    n_clusters: int = 2
    train_data_size: int = 25
    train_every_n: int = 50
    anomaly_score_cap: float = 5.0
    threshold_mode: str = "score"
    score_threshold: float = 0.2
    round_digits: int | None = None
    max_iter: int = 100

    def __post_init__(self) -> None:
        for name, minimum in (
            ("n_smoothing", 1),
            ("n_lags", 0),
            ("n_clusters", 1),
            ("train_data_size", 1),
            ("train_every_n", 1),
            ("max_iter", 1),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise ValueError(f"kmeans: {name} must be an int >= {minimum}, got {v!r}")
        if self.train_data_size < self.n_clusters:
            raise ValueError(
                f"kmeans: train_data_size ({self.train_data_size}) must be >= n_clusters ({self.n_clusters})"
            )
        if not isinstance(self.diffs, bool):
            raise ValueError(f"kmeans: diffs must be a bool, got {self.diffs!r}")
        cap = self.anomaly_score_cap
        if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not 0 < cap < _INF:
            raise ValueError(f"kmeans: anomaly_score_cap must be a finite number > 0, got {cap!r}")
        if self.threshold_mode not in THRESHOLD_MODES:
            raise ValueError(
                f"kmeans: threshold_mode must be one of {', '.join(THRESHOLD_MODES)}, got {self.threshold_mode!r}"
            )
        thr = self.score_threshold
        if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not 0 <= thr < 1:
            raise ValueError(f"kmeans: score_threshold must be in [0, 1), got {thr!r}")
        rd = self.round_digits
        if rd is not None and (isinstance(rd, bool) or not isinstance(rd, int) or rd < 0):
            raise ValueError(f"kmeans: round_digits must be None or an int >= 0, got {rd!r}")


def lloyd(x: np.ndarray, k: int, max_iter: int = 100) -> np.ndarray:
    """Deterministic k-means: maximin seeding, then Lloyd until assignments stop changing.

    Seeding: the point farthest from the data mean, then repeatedly the point farthest from
    the chosen centres (first index on ties). An emptied cluster keeps its centre.
    """
    x = np.asarray(x, dtype=float)
    k = min(k, len(x))
    d = ((x - x.mean(axis=0)) ** 2).sum(axis=1)
    centres = np.empty((k, x.shape[1]))
    centres[0] = x[int(np.argmax(d))]
    d = ((x - centres[0]) ** 2).sum(axis=1)
    for c in range(1, k):
        centres[c] = x[int(np.argmax(d))]
        d = np.minimum(d, ((x - centres[c]) ** 2).sum(axis=1))
    labels = None
    for _ in range(max_iter):
        new = (((x[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)).argmin(axis=1)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        for c in range(k):
            members = x[labels == c]
            if len(members):
                centres[c] = members.mean(axis=0)
    return centres


class KMeansDetector(Detector):
    """Netdata-style k-means distance score on lagged, differenced, smoothed values."""

    name: ClassVar[str] = "kmeans"
    config_cls: ClassVar[type[KMeansConfig]] = KMeansConfig

    def __init__(self, config: KMeansConfig | None = None, prior: SeriesPrior | None = None) -> None:
        # The prior is not used: the model is trained on the stream's own recent vectors.
        self.config = config if config is not None else KMeansConfig()
        self._c = 0  # readings seen (the seed's step n)
        self._raw: list[float] = []  # last n_smoothing readings
        self._prev_smoothed = NAN  # last smoothed value (for the difference)
        self._proc: list[float] = []  # last n_lags + 1 processed values
        self._train: list[tuple[float, ...]] = []  # last train_data_size feature vectors
        self._centres: list[tuple[float, ...]] = []  # empty until the first fit
        self._train_dists: list[float] = []  # sorted mean distances of the training vectors
        self._min_d = NAN
        self._max_d = NAN
        self._thr99 = NAN

    # -- features ----------------------------------------------------------------------------

    def _features(self, x: float) -> tuple[list[float], float, list[float], tuple[float, ...] | None]:
        """State after appending ``x`` (raw, smoothed, processed) and the feature vector, if any."""
        cfg = self.config
        ns = cfg.n_smoothing
        raw = self._raw + [x]
        if len(raw) > ns:
            del raw[0]
        smoothed = self._prev_smoothed
        proc = self._proc
        if len(raw) == ns:
            sm = sum(raw) / ns
            if cfg.round_digits is not None:
                sm = round(sm, cfg.round_digits)
            if cfg.diffs:
                if smoothed == smoothed:  # not NaN: a previous smoothed value exists
                    v = sm - smoothed
                    if cfg.round_digits is not None:
                        v = round(v, cfg.round_digits)
                    proc = proc + [v]
            else:
                proc = proc + [sm]
            smoothed = sm
            if len(proc) > cfg.n_lags + 1:
                del proc[0]
        vec = tuple(proc) if len(proc) == cfg.n_lags + 1 else None
        return raw, smoothed, proc, vec

    def _mean_dist(self, vec: tuple[float, ...]) -> float:
        cs = self._centres
        return sum([_dist(vec, c) for c in cs]) / len(cs)

    def _verdict(self, vec: tuple[float, ...] | None) -> Step:
        if vec is None or not self._centres:
            return (NAN, NAN, 0.0, 0.0, False, "warm-up")
        cfg = self.config
        d = self._mean_dist(vec)
        if cfg.round_digits is not None:
            d = round(d, cfg.round_digits)
        lo, hi = self._min_d, self._max_d
        note = ""
        if hi > lo:
            scaled = (d - lo) / (hi - lo)
        else:
            scaled = 0.0 if d <= hi else _INF
            note = "; zero training range"
        cap = cfg.anomaly_score_cap
        score = 0.0 if scaled <= 0.0 else (1.0 if scaled >= cap else scaled / cap)
        td = self._train_dists
        prob = bisect_left(td, d) / len(td)
        anomaly = score > cfg.score_threshold if cfg.threshold_mode == "score" else d > self._thr99
        return (NAN, NAN, score, prob, anomaly, ("far from centres" if anomaly else "ok") + note)

    # -- learning ----------------------------------------------------------------------------

    def _commit(
        self, raw: list[float], smoothed: float, proc: list[float], vec: tuple[float, ...] | None
    ) -> None:
        cfg = self.config
        self._raw, self._prev_smoothed, self._proc = raw, smoothed, proc
        if vec is not None:
            train = self._train
            train.append(vec)
            if len(train) > cfg.train_data_size:
                del train[0]
        c = self._c
        self._c = c + 1
        if c % cfg.train_every_n == 0 and len(self._train) >= cfg.train_data_size:
            self._fit()

    def _fit(self) -> None:
        cfg = self.config
        centres = lloyd(np.array(self._train, dtype=float), cfg.n_clusters, cfg.max_iter)
        self._centres = [tuple(c) for c in centres.tolist()]
        dists = sorted(self._mean_dist(v) for v in self._train)
        self._train_dists = dists
        self._min_d, self._max_d = dists[0], dists[-1]
        self._thr99 = float(np.percentile(dists, 99))

    def _step(self, x: float) -> Step:
        if not (-_INF < x < _INF):
            return (NAN, NAN, 0.0, 0.0, False, "missing value")
        raw, smoothed, proc, vec = self._features(x)
        out = self._verdict(vec)
        self._commit(raw, smoothed, proc, vec)
        return out

    def process_one(self, x: float, ts: int) -> Verdict:
        return Verdict(*self._step(float(x)))

    def score_one(self, x: float, ts: int) -> Verdict:
        """The verdict ``process_one`` would give, without changing the state."""
        x = float(x)
        if not math.isfinite(x):
            return Verdict(NAN, NAN, 0.0, 0.0, False, "missing value")
        return Verdict(*self._verdict(self._features(x)[3]))

    def learn_one(self, x: float, ts: int) -> None:
        """Learn a reading (history, training schedule) without scoring it."""
        x = float(x)
        if math.isfinite(x):
            self._commit(*self._features(x))

    def process(self, values: np.ndarray, ts: np.ndarray) -> pd.DataFrame:
        return frame_from_rows(self.process_rows(values, ts))

    def process_rows(self, values: np.ndarray, ts: np.ndarray) -> list[Step]:
        """``process`` as Verdict-shaped tuples, no frame: drivers batch many series' rows."""
        xs = np.asarray(values, dtype=float)
        if len(xs) != len(ts):
            raise ValueError(f"kmeans: {len(xs)} values but {len(ts)} timestamps")
        step = self._step
        return [step(x) for x in xs.tolist()]

    # -- state -------------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        dim = self.config.n_lags + 1
        return {
            "c": self._c,
            "raw": np.array(self._raw, dtype=float),
            "prev_smoothed": self._prev_smoothed,
            "proc": np.array(self._proc, dtype=float),
            "train": np.array(self._train, dtype=float).reshape(-1, dim),
            "centres": np.array(self._centres, dtype=float).reshape(-1, dim),
            "train_dists": np.array(self._train_dists, dtype=float),
            "min_d": self._min_d,
            "max_d": self._max_d,
            "thr99": self._thr99,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        cfg = self.config
        dim = cfg.n_lags + 1
        try:
            train = np.asarray(state["train"], dtype=float)
            centres = np.asarray(state["centres"], dtype=float)
            raw = [float(v) for v in np.asarray(state["raw"], dtype=float).ravel()]
            proc = [float(v) for v in np.asarray(state["proc"], dtype=float).ravel()]
            fields = (
                state["c"],
                state["prev_smoothed"],
                state["train_dists"],
                state["min_d"],
                state["max_d"],
            )
            thr99 = float(state["thr99"])
        except KeyError as e:
            raise ValueError(f"kmeans: state lacks key {e.args[0]!r}") from None
        c, prev_smoothed, train_dists, min_d, max_d = fields
        if (train.size and train.shape[-1] != dim) or (centres.size and centres.shape[-1] != dim):
            raise ValueError(f"kmeans: state vectors do not have n_lags + 1 = {dim} values")
        if len(raw) > cfg.n_smoothing or len(proc) > dim or len(train) > cfg.train_data_size:
            raise ValueError("kmeans: state history is longer than the config allows (config changed?)")
        self._c = int(c)
        self._raw = raw
        self._prev_smoothed = float(prev_smoothed)
        self._proc = proc
        self._train = [tuple(v) for v in train.reshape(-1, dim).tolist()]
        self._centres = [tuple(v) for v in centres.reshape(-1, dim).tolist()]
        self._train_dists = [float(v) for v in np.asarray(train_dists, dtype=float).ravel()]
        self._min_d, self._max_d, self._thr99 = float(min_d), float(max_d), thr99
