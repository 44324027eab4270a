"""Round 11 (docs/benchmarks-quality.md): calibration conditioned on the time of day.

The calibrated members compare a reading's 30-raw mean with the last 3,000 such means of every
hour. On a series with a daily cycle (tweet counts, traffic, CPU of a daily job) the changes are
larger at the busy hours, so a busy-hour burst looks like a tail against a history that is mostly
quiet hours: delta raises most of the false alarms on tune (56 of 103), most of them on the tweet
feeds. Here the mean/sd a member's mean is judged against come from the means of the same
time-of-day bucket only (``buckets`` per day from the reading's timestamp; the last
``3000 / buckets`` means of that bucket, about the same ten days the global history spans on
5-minute data). Until a bucket holds ``MIN_BUCKET`` means, the global score stands.

* ``cond``: the conditioned score replaces the member's score;
* ``both``: min(global, conditioned): a reading counts only when it is unusual for its time of day
  *and* overall (only removes alarms).

  SPARK_ANOMALY_NAB_DATA=../shared/nab python scripts/quality_round.py cv scripts/families/round11_time_of_day.py

Registered family (6 variants + the baseline), written down before it was run.
"""

from __future__ import annotations

import os
from functools import cache

import numpy as np

from spark_anomaly.evaluation import replica
from spark_anomaly.evaluation.nab_data import load_windows, read_series

MIN_BUCKET = 20
DAY_MS = 86_400_000


@cache
def _windows(root: str):
    return load_windows(root)


def timestamps(key: str) -> np.ndarray:
    root = os.environ.get("SPARK_ANOMALY_NAB_DATA")
    if not root:
        raise SystemExit("round 11 needs the timestamps: set SPARK_ANOMALY_NAB_DATA")
    return read_series(root, key, _windows(root)).ts_ms


_TS: dict[str, np.ndarray] = {}


def conditioned(f, member: str, buckets: int, mode: str) -> np.ndarray:
    """Member ``member``'s calibrated score, judged against its own time-of-day bucket."""
    if f.key not in _TS:
        _TS[f.key] = timestamps(f.key)
    ts = _TS[f.key]
    c = f.config.member(member).config
    valid, a = replica.short_means(f.raws[member], c.short_window)
    mu, sd, n = replica.history_mean_sd(a, c.history)
    glob = replica.tail_scores(a, mu, sd, n, c.min_history, c.sd_floor, c.sd_floor_rel, c.tail_floor)
    bucket = ((ts[valid] % DAY_MS) * buckets // DAY_MS).astype(np.int64)
    cond = glob.copy()
    h = max(c.history // buckets, MIN_BUCKET)
    for b in range(buckets):
        idx = np.flatnonzero(bucket == b)
        if idx.size == 0:
            continue
        mb, sb, nb = replica.history_mean_sd(a[idx], h)
        s = replica.tail_scores(a[idx], mb, sb, nb, MIN_BUCKET, c.sd_floor, c.sd_floor_rel, c.tail_floor)
        ok = (nb >= MIN_BUCKET) & (n[idx] >= c.min_history)
        cond[idx] = np.where(ok, s, glob[idx])
    score = cond if mode == "cond" else np.minimum(glob, cond)
    out = np.zeros(len(valid))
    out[valid] = score
    return out


def variant(members: tuple[str, ...] | None, buckets: int, mode: str):
    def run(f):
        names = f.config.member_names
        chosen = names if members is None else members
        scores = [conditioned(f, m, buckets, mode) if m in chosen else f.calibrated(m) for m in names]
        return f.config.suppress(replica.ensemble_max(scores))

    return run


VARIANTS = {
    "base": lambda f: f.replay(),
    "A-delta-cond-24": variant(("delta",), 24, "cond"),
    "B-delta-both-24": variant(("delta",), 24, "both"),
    "C-delta-both-6": variant(("delta",), 6, "both"),
    "D-delta-cond-6": variant(("delta",), 6, "cond"),
    "E-all-both-24": variant(None, 24, "both"),
    "F-all-cond-24": variant(None, 24, "cond"),
}
