"""A numpy replica of suppression(ensemble max(members)) over the members' raws.

Detector selection (docs/benchmarks-quality.md, rounds 4-8) scores hundreds of variants of the
alarm logic. Re-running the cores for each would take minutes per variant; the members' raws (what
each calibrated member feeds its calibration) do not change between such variants, so they are
computed once by the real cores (:func:`member_raws`, cached per file by
``scripts/quality_round.py cache``) and everything after them is replayed here on whole arrays:

* :func:`calibrate`: the mean of the last ``short_window`` finite raws, against the mean/sd of the
  last ``history`` such means before it, as a Gaussian tail mapped to [0, 1] (CalibratedDetector);
  a member that is not calibrated (``flatline`` in ``recommended``) is cached as its own score;
* :func:`ensemble_max`: the max of the member scores (EnsembleDetector, combine max);
* :func:`suppress`: one alarm at ``threshold``, then ``rows`` readings reported as 0
  (SuppressionDetector, ``ms`` = 0).

The running sums of the cores and the cumulative sums here round differently; over the 41 NAB
files the final scores agree to 5e-11 with the same alarm rows (tests/unit/test_replica.py checks
the same on synthetic series).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import erfc

from spark_anomaly.detectors._composite import build_member, member_spec
from spark_anomaly.detectors.calibrated import CalibratedConfig
from spark_anomaly.detectors.ensemble import EnsembleConfig
from spark_anomaly.detectors.registry import make_config
from spark_anomaly.detectors.suppression import SuppressionConfig

# -- the numeric core -----------------------------------------------------------------------------


def short_means(raw: np.ndarray, short_window: int) -> tuple[np.ndarray, np.ndarray]:
    """(finite mask, mean of the last ``short_window`` finite raws at each finite raw).

    The core skips a non-finite raw altogether (no mean, not learned), so the means run over the
    finite raws only.
    """
    raw = np.asarray(raw, dtype=float)
    valid = np.isfinite(raw)
    r = raw[valid]
    cs = np.concatenate(([0.0], np.cumsum(r)))
    j = np.arange(len(r))
    lo = np.maximum(0, j - short_window + 1)
    return valid, (cs[j + 1] - cs[lo]) / (j + 1 - lo)


def history_mean_sd(a: np.ndarray, history: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, population sd and count of the ``history`` values of ``a`` before each one."""
    cs = np.concatenate(([0.0], np.cumsum(a)))
    cs2 = np.concatenate(([0.0], np.cumsum(a * a)))
    j = np.arange(len(a))
    lo = np.maximum(0, j - history)
    n = j - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = (cs[j] - cs[lo]) / n
        var = np.maximum((cs2[j] - cs2[lo]) / n - mu * mu, 0)
    return np.nan_to_num(mu), np.sqrt(np.nan_to_num(var)), n


def tail_scores(
    a: np.ndarray,
    mu: np.ndarray,
    sd: np.ndarray,
    n: np.ndarray,
    min_history: int = 100,
    sd_floor: float = 1e-6,
    sd_floor_rel: float = 0.0,
    tail_floor: float = 1e-10,
) -> np.ndarray:
    """log(Q(z)) / log(tail_floor) clipped to [0, 1]; 0 until ``min_history`` means were seen."""
    sd = np.maximum(sd, sd_floor + sd_floor_rel * np.abs(mu))
    q = 0.5 * erfc((a - mu) / sd / math.sqrt(2))
    with np.errstate(divide="ignore"):
        s = np.where(q <= 0, 1.0, np.clip(np.log(q) / math.log(tail_floor), 0, 1))
    return np.where(n >= min_history, s, 0.0)


def calibrate(
    raw: np.ndarray,
    short_window: int = 30,
    history: int = 3000,
    min_history: int = 100,
    sd_floor: float = 1e-6,
    sd_floor_rel: float = 0.0,
    tail_floor: float = 1e-10,
) -> np.ndarray:
    """The calibrated core's score for every raw (0 where the raw is not finite)."""
    valid, a = short_means(raw, short_window)
    mu, sd, n = history_mean_sd(a, history)
    out = np.zeros(len(valid))
    out[valid] = tail_scores(a, mu, sd, n, min_history, sd_floor, sd_floor_rel, tail_floor)
    return out


def ensemble_max(scores: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """The ensemble's combine max (a NaN member score counts as 0, as in the core)."""
    return np.max(np.nan_to_num(np.asarray(scores, dtype=float), nan=0.0), axis=0)


def suppress(
    scores: np.ndarray, threshold: float = 0.3, rows: int = 200, alarm_score: float | None = 1.0
) -> tuple[np.ndarray, list[int]]:
    """(reported scores, alarm rows): an alarm at the first score >= ``threshold`` more than
    ``rows`` readings after the previous alarm, the ``rows`` readings after it reported as 0, the
    alarm itself as ``alarm_score`` (None: its own score)."""
    scores = np.asarray(scores, dtype=float)
    out = scores.copy()
    alarms: list[int] = []
    last = -(10**9)
    for i in np.flatnonzero(scores >= threshold).tolist():
        if i - last > rows:
            alarms.append(i)
            last = i
    for i in alarms:
        out[i + 1 : i + rows + 1] = 0.0
    if alarm_score is not None:
        out[np.array(alarms, dtype=int)] = alarm_score
    return out, alarms


# -- which configurations it replicates ---------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One member: its name in the cache and its calibration settings.

    ``config`` None: a plain member, used as it scores (its cached "raw" is its score), whose
    ``{detector, params}`` are in ``spec``.
    """

    name: str
    config: CalibratedConfig | None
    spec: dict[str, Any] = field(default_factory=dict)

    def calibrate(self, raw: np.ndarray, **overrides: Any) -> np.ndarray:
        """This member's calibrated score; ``overrides`` change calibrate()'s settings (variants)."""
        c = self.config
        if c is None:
            if overrides:
                raise ValueError(f"member {self.name!r} is not calibrated: no {', '.join(overrides)}")
            return np.nan_to_num(np.asarray(raw, dtype=float), nan=0.0)
        kw = dict(
            short_window=c.short_window,
            history=c.history,
            min_history=c.min_history,
            sd_floor=c.sd_floor,
            sd_floor_rel=c.sd_floor_rel,
            tail_floor=c.tail_floor,
        )
        kw.update(overrides)
        return calibrate(raw, **kw)


@dataclass(frozen=True)
class ReplicaConfig:
    """suppression(ensemble max(calibrated, ...)) as the replica needs it."""

    members: tuple[Member, ...]
    threshold: float
    rows: int
    alarm_score: float | None
    spec: dict[str, Any] = field(default_factory=dict)  # {detector, params} it came from

    @property
    def member_names(self) -> list[str]:
        return [m.name for m in self.members]

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(f"no member {name!r}; members: {', '.join(self.member_names)}")

    @classmethod
    def from_spec(cls, detector: str, params: Mapping[str, Any]) -> ReplicaConfig:
        """Parse a configuration through the cores' own config classes (same defaults and checks).

        Only what the replica reproduces is accepted: suppression by rows over an ensemble max of
        members that are calibrated with a fixed raw (not ``auto``), or plain (used as they score).
        """
        where = "replica"
        if detector != "suppression":
            raise ValueError(f"{where}: needs a suppression configuration, got {detector!r}")
        sup = SuppressionConfig(**params)
        if sup.ms:
            raise ValueError(f"{where}: suppression by event time (ms) is not replicated")
        if sup.detector != "ensemble":
            raise ValueError(f"{where}: suppression must wrap an ensemble, got {sup.detector!r}")
        ens = EnsembleConfig(**sup.params)
        if ens.combine != "max":
            raise ValueError(f"{where}: only ensemble combine max is replicated, got {ens.combine!r}")
        members: list[Member] = []
        names: list[str] = []
        for spec in ens.members:
            detector_name, member_params = member_spec(spec, f"{where}: ensemble member")
            if detector_name == "calibrated":
                cal: CalibratedConfig | None = CalibratedConfig(**member_params)
                if cal.raw == "auto":
                    raise ValueError(f"{where}: calibrated raw 'auto' is not replicated; name the raw")
                base = cal.detector
            else:
                make_config(detector_name, member_params)  # the core's own checks, now
                cal, base = None, detector_name
            name = base if base not in names else f"{base}#{len(names)}"
            names.append(name)
            members.append(Member(name, cal, {"detector": detector_name, "params": member_params}))
        return cls(
            tuple(members),
            sup.threshold,
            sup.rows,
            sup.alarm_score,
            json.loads(json.dumps({"detector": detector, "params": dict(params)})),
        )

    def replay(self, raws: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[int]]:
        """(final scores, alarm rows) of the configuration from its members' raws."""
        member_scores = [m.calibrate(raws[m.name]) for m in self.members]
        return self.suppress(ensemble_max(member_scores))

    def suppress(self, scores: np.ndarray) -> tuple[np.ndarray, list[int]]:
        return suppress(scores, self.threshold, self.rows, self.alarm_score)


GEOMETRY = ("spacing",)  # plain state values kept with the raws (knn: rows between pattern readings)


def member_raws(
    config: ReplicaConfig, values: np.ndarray, ts: np.ndarray, prior=None
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """Each member's raw input to calibration from the real cores, and what its core decided.

    The raw is the calibrated core's own ``_raws`` of its wrapped core's output, so it is exactly
    what the core calibrates; a plain member's is its score, which the ensemble takes as it is.
    The second mapping holds, per member, the plain values of the wrapped core's final state that
    describe its geometry (knn's ``spacing``), for variants that need them.
    """
    from spark_anomaly.detectors.calibrated import CalibratedDetector

    values = np.asarray(values, dtype=float)
    raws: dict[str, np.ndarray] = {}
    info: dict[str, dict[str, Any]] = {}
    for m in config.members:
        if m.config is None:  # a plain member: its score is what the ensemble takes
            core = build_member(m.spec, prior, f"replica member {m.name}")
            raws[m.name] = np.asarray(core.process(values, ts)["score"], dtype=float)
            state = core.get_state()
        else:
            cal = CalibratedDetector(m.config, prior)
            out = cal.inner.process(values, ts)
            raws[m.name] = np.asarray(cal._raws(values, out), dtype=float)
            state = cal.inner.get_state()
        info[m.name] = {k: int(state[k]) for k in GEOMETRY if isinstance(state, dict) and k in state}
    return raws, info


# -- the cache of member raws ---------------------------------------------------------------------

META_FILE = "meta.json"


def _npz_name(key: str) -> str:
    return key.replace("/", "__") + ".npz"


@dataclass
class CachedSeries:
    """One file's cached member raws, with what scoring and variants need about it.

    ``windows``: inclusive row ranges of the labelled windows; ``info``: per member, the wrapped
    core's geometry (see :func:`member_raws`). ``calibrated`` memoises, since variants of one family
    recalibrate the same members many times.
    """

    key: str
    n: int
    windows: list[tuple[int, int]]
    raws: dict[str, np.ndarray]
    config: ReplicaConfig
    info: dict[str, dict[str, Any]] = field(default_factory=dict)
    _memo: dict[tuple, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def category(self) -> str:
        return self.key.split("/", 1)[0]

    def calibrated(self, member: str, raw: np.ndarray | None = None, **overrides: Any) -> np.ndarray:
        """Member ``member``'s calibrated score (from ``raw`` instead of the cached raw if given)."""
        if raw is not None:
            return self.config.member(member).calibrate(raw, **overrides)
        k = (member, tuple(sorted(overrides.items())))
        if k not in self._memo:
            self._memo[k] = self.config.member(member).calibrate(self.raws[member], **overrides)
        return self._memo[k]

    def member_scores(self) -> np.ndarray:
        """members x rows: every member's calibrated score, in configuration order."""
        return np.array([self.calibrated(m) for m in self.config.member_names])

    def replay(self) -> tuple[np.ndarray, list[int]]:
        """The configuration's (final scores, alarm rows) on this file."""
        return self.config.suppress(ensemble_max(list(self.member_scores())))


@dataclass
class Cache:
    """All cached files of one configuration, keyed by ``category/file.csv``, sorted."""

    root: Path
    label: str
    config: ReplicaConfig
    files: dict[str, CachedSeries]

    @property
    def keys(self) -> list[str]:
        return sorted(self.files)


def save_series(
    root: str | Path,
    key: str,
    windows: list[tuple[int, int]],
    raws: Mapping[str, np.ndarray],
    info: Mapping[str, dict[str, Any]],
) -> dict[str, Any]:
    """Write one file's raws (``<category>__<file>.npz``); returns its entry for :func:`save_meta`."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / _npz_name(key), **raws)
    n = len(next(iter(raws.values())))
    return {"n": n, "windows": [list(w) for w in windows], "info": dict(info)}


def save_meta(root: str | Path, label: str, config: ReplicaConfig, files: Mapping[str, Any]) -> Path:
    path = Path(root) / META_FILE
    doc = {"label": label, "config": config.spec, "members": config.member_names, "files": dict(files)}
    path.write_text(json.dumps(doc, indent=1, sort_keys=True))
    return path


def load_cache(root: str | Path) -> Cache:
    root = Path(root)
    meta_path = root / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: build the cache first (quality_round.py cache)")
    doc = json.loads(meta_path.read_text())
    config = ReplicaConfig.from_spec(doc["config"]["detector"], doc["config"]["params"])
    files = {}
    for key, entry in sorted(doc["files"].items()):
        with np.load(root / _npz_name(key)) as z:
            raws = {m: z[m] for m in config.member_names}
        files[key] = CachedSeries(
            key=key,
            n=int(entry["n"]),
            windows=[(int(a), int(b)) for a, b in entry["windows"]],
            raws=raws,
            config=config,
            info=entry.get("info", {}),
        )
    return Cache(root, doc["label"], config, files)
