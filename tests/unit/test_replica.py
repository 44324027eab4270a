"""The numpy replica (evaluation.replica) against the real cores of `recommended`.

The selection rounds score variants on the replica only, so it has to give the real detector's
final scores and alarm rows: here on synthetic five-minute series with daily cycles, spikes, a
level shift, a burst of volatility and a stuck spell, replayed by the evaluation runner (fresh
cores, prior from the probationary rows), and by the replica over the same members' raws.
"""

import numpy as np
import pytest

from spark_anomaly.detector_specs import resolve
from spark_anomaly.evaluation import replica
from spark_anomaly.evaluation.nab_data import LabelledSeries
from spark_anomaly.evaluation.runner import prior_from_probation, replay

FIVE_MIN_NS = 300 * 10**9


def synthetic(seed: int, n: int) -> LabelledSeries:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = 10 + 3 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 0.3, n)  # a day is 288 readings
    for i in rng.choice(np.arange(1200, n - 50), 6, replace=False):
        x[i] += rng.choice([-1, 1]) * rng.uniform(4, 12)  # spikes, some outside every earlier value
    x[int(0.6 * n) :] += 5.0  # a level shift
    b = int(0.8 * n)
    x[b : b + 60] += rng.normal(0, 3, 60)  # a burst of volatility
    x[int(0.3 * n)] = np.nan  # a missing reading: no raw, not learned
    s = int(0.55 * n)
    x[s : s + 45] = x[s]  # a stuck sensor: 45 identical readings (flatline's member)
    ts = np.datetime64("2026-01-01T00:00:00", "ns") + t * np.timedelta64(FIVE_MIN_NS, "ns")
    return LabelledSeries(key=f"synthetic/s{seed}.csv", timestamps=ts, values=x)


@pytest.fixture(scope="module")
def spec():
    return resolve("recommended")


@pytest.fixture(scope="module")
def config(spec):
    return replica.ReplicaConfig.from_spec(spec.detector, spec.params)


@pytest.mark.parametrize(("seed", "n"), [(1, 3500), (2, 2500)])
def test_replica_equals_the_real_recommended(spec, config, seed, n):
    series = synthetic(seed, n)
    real = replay(spec, series).anomaly_score
    raws, info = replica.member_raws(config, series.values, series.ts_ms, prior_from_probation(series.values))
    assert list(raws) == ["record", "delta", "novelty", "knn", "flatline"]
    assert info["knn"] == {"spacing": 9}  # one day / (5 min x 32 readings)
    # the plain member is cached as its own score: 1 once, when the stuck run reaches 38 readings
    # (more than 1.25 x 30; noise before it has no earlier run that long)
    assert np.flatnonzero(raws["flatline"]).tolist() == [int(0.55 * n) + 37]
    out, alarms = config.replay(raws)
    assert np.allclose(out, real, rtol=0, atol=1e-9)
    assert alarms == np.flatnonzero(real >= config.threshold).tolist()
    assert len(alarms) >= 3  # the injected changes do alarm: the comparison is not of zeros
    assert (real > 0).sum() > len(alarms)  # and scores under the threshold are compared too


def test_suppress_one_alarm_then_silence():
    s = np.array([0.1, 0.5, 0.9, 0.2, 0.4, 0.35, 0.1, 0.29, 0.8, 0.3])
    out, alarms = replica.suppress(s, threshold=0.3, rows=3, alarm_score=1.0)
    assert alarms == [1, 5, 9]  # rows 2-4 and 6-8 are quiet, whatever they score
    assert out.tolist() == [0.1, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    out, _ = replica.suppress(s, threshold=0.3, rows=3, alarm_score=None)
    assert out[[1, 5, 9]].tolist() == [0.5, 0.35, 0.3]


def test_calibrate_skips_non_finite_raws():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=400)
    with_gap = np.insert(raw, 250, np.nan)
    a = replica.calibrate(raw, short_window=5, history=100, min_history=50)
    b = replica.calibrate(with_gap, short_window=5, history=100, min_history=50)
    assert b[250] == 0.0
    assert np.array_equal(np.delete(b, 250), a)
    assert a[:50].max() == 0.0 and a[50:].max() > 0.0  # silent until min_history means


def test_cache_round_trip(tmp_path, config):
    rng = np.random.default_rng(3)
    raws = {m: rng.exponential(size=700) for m in config.member_names}
    entry = replica.save_series(tmp_path, "cat/a.csv", [(400, 420)], raws, {"knn": {"spacing": 9}})
    replica.save_meta(tmp_path, "recommended", config, {"cat/a.csv": entry})
    cache = replica.load_cache(tmp_path)
    f = cache.files["cat/a.csv"]
    assert (cache.label, cache.keys, f.n, f.windows, f.info) == (
        "recommended",
        ["cat/a.csv"],
        700,
        [(400, 420)],
        {"knn": {"spacing": 9}},
    )
    assert np.array_equal(f.replay()[0], config.replay(raws)[0])


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"ms": 1000}, "event time"),
        ({"params": {"combine": "mean", "members": ["normal"]}}, "combine max"),
        ({"params": {"members": [{"detector": "calibrated", "params": {"detector": "zscore"}}]}}, "auto"),
        ({"params": {"members": [{"detector": "flatline", "params": {"factor": 0.5}}]}}, "factor"),
    ],
)
def test_config_outside_the_replica_is_refused(spec, change, match):
    params = {**spec.params, **change}
    with pytest.raises(ValueError, match=match):
        replica.ReplicaConfig.from_spec(spec.detector, params)


def test_a_plain_member_is_used_as_it_scores(config):
    flat = config.member("flatline")
    assert flat.config is None
    raw = np.array([0.0, np.nan, 1.0, 0.0])
    assert flat.calibrate(raw).tolist() == [0.0, 0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="not calibrated"):
        flat.calibrate(raw, short_window=5)
