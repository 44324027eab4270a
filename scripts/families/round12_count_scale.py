"""Round 12 (docs/benchmarks-quality.md): delta on a variance-stabilised scale for count-like series.

On tune, delta raises 58 of recommended's 103 false alarms (``quality_round.py alarms``), most of
them on the tweet feeds, whose readings are counts: for counts the spread of a change grows with
the level (Poisson: variance = mean), so a burst of ordinary changes at a busy level looks like a
tail against changes learned mostly at quiet levels. Round 5 tried a non-parametric answer (the
change statistics per level bin) and lost; here the classic parametric one: delta sees
sqrt(x + 3/8) (Anscombe: about unit variance for Poisson counts) or log1p(x) instead of x. The
other members are unchanged. Whether a series is count-like is decided from its probationary rows
only (what the train job's model would hold), never from its name:

* ``int``: every probationary reading a whole number >= 0;
* ``nonneg``: every probationary reading >= 0 (the trained minimum, which the model already has).

  SPARK_ANOMALY_NAB_DATA=../shared/nab python scripts/quality_round.py cv scripts/families/round12_count_scale.py

Registered family (3 variants + the baseline), written down before it was run.
"""

from __future__ import annotations

import os
from functools import cache

import numpy as np

from spark_anomaly.evaluation import replica
from spark_anomaly.evaluation.nab_data import load_windows, probation_length, read_series
from spark_anomaly.evaluation.runner import prior_from_probation


@cache
def _windows(root: str):
    return load_windows(root)


_SERIES: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def series(key: str) -> tuple[np.ndarray, np.ndarray]:
    root = os.environ.get("SPARK_ANOMALY_NAB_DATA")
    if not root:
        raise SystemExit("round 12 needs the values: set SPARK_ANOMALY_NAB_DATA")
    if key not in _SERIES:
        s = read_series(root, key, _windows(root))
        _SERIES[key] = (np.asarray(s.values, dtype=float), np.asarray(s.ts_ms))
    return _SERIES[key]


def count_like(values: np.ndarray, rule: str) -> bool:
    head = values[: probation_length(len(values))]
    head = head[np.isfinite(head)]
    if head.size == 0 or head.min() < 0:
        return False
    return rule == "nonneg" or bool(np.all(head == np.floor(head)))


TRANSFORMS = {
    "sqrt": lambda x: np.sqrt(np.maximum(x, 0.0) + 0.375),
    "log": lambda x: np.log1p(np.maximum(x, 0.0)),
}


def delta_raw(f: replica.CachedSeries, transform: str) -> np.ndarray:
    values, ts = series(f.key)
    y = TRANSFORMS[transform](values)
    one = replica.ReplicaConfig(
        (f.config.member("delta"),), f.config.threshold, f.config.rows, f.config.alarm_score
    )
    raws, _ = replica.member_raws(one, y, ts, prior_from_probation(y))
    return raws["delta"]


def variant(rule: str, transform: str):
    def run(f: replica.CachedSeries):
        values, _ = series(f.key)
        if not count_like(values, rule):
            return f.replay()
        scores = [
            f.calibrated(m, raw=delta_raw(f, transform)) if m == "delta" else f.calibrated(m)
            for m in f.config.member_names
        ]
        return f.config.suppress(replica.ensemble_max(scores))

    return run


VARIANTS = {
    "base": lambda f: f.replay(),
    "A-int-sqrt": variant("int", "sqrt"),
    "B-nonneg-sqrt": variant("nonneg", "sqrt"),
    "C-int-log": variant("int", "log"),
}
