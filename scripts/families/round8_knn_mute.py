"""Round 8 (docs/benchmarks-quality.md): knn left out of the ensemble max for a while after an alarm.

knn's pattern covers S = (window - 1) * d + 1 rows (d its spacing), so a burst that makes another
member alarm stays in knn's day shape for S rows. After an alarm at row a, knn's score is left out
of the max (for the alarm decision and the reported score) at rows t with t - a < M; alarms in that
time restart it. "Another member's alarm": record, delta or novelty is >= the threshold at a.

  python scripts/quality_round.py cv scripts/families/round8_knn_mute.py

Registered family (5 variants + the baseline, M = 0); CV recorded: +0.08 points, wins 53 %.
"""

from __future__ import annotations

import numpy as np

from spark_anomaly.detectors.knn import KnnConfig

KNN = "knn"


def span(f) -> int:
    """Rows one knn pattern covers in this file (d from the core's own spacing decision)."""
    window = KnnConfig(**f.config.member(KNN).config.params).window
    return (window - 1) * f.info[KNN]["spacing"] + 1


def mute_out(f, mute: int, after_any: bool) -> tuple[np.ndarray, list[int]]:
    c = f.config
    sc = f.member_scores()
    k = c.member_names.index(KNN)
    others = np.delete(sc, k, axis=0).max(axis=0)
    full = sc.max(axis=0)
    out = np.empty(full.size)
    last, mute_end, alarms = -(10**9), -1, []
    fl, ol = full.tolist(), others.tolist()
    for i in range(full.size):
        s = ol[i] if i < mute_end else fl[i]
        if i - last <= c.rows:
            out[i] = 0.0
            continue
        if s >= c.threshold:
            out[i] = c.alarm_score
            last = i
            alarms.append(i)
            if after_any or ol[i] >= c.threshold:
                mute_end = max(mute_end, i + mute)
        else:
            out[i] = s
    return out, alarms


VARIANTS = {
    "base": lambda f: mute_out(f, 0, False),  # = the replica of recommended, array for array
    "A-other-S": lambda f: mute_out(f, span(f), False),
    "B-any-S": lambda f: mute_out(f, span(f), True),
    "C-other-S/2": lambda f: mute_out(f, span(f) // 2, False),
    "D-other-S+29": lambda f: mute_out(f, span(f) + 29, False),
    "E-any-S+29": lambda f: mute_out(f, span(f) + 29, True),
}
