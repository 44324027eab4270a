"""normal detector (seed 000): Welford band, unknown-source policy, inter-arrival transform."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest

from spark_anomaly.detectors import RESULT_COLUMNS, SeriesPrior, Verdict, build
from spark_anomaly.detectors.normal import NormalConfig, NormalDetector

# The seed's table of z_p (000_pnda_openmetrics_normal_detector): two-sided quantiles.
SEED_ZP = {
    0.8: 1.281551565545,
    0.9: 1.644853626951,
    0.95: 1.959963984540,
    0.99: 2.575829303549,
    0.999: 3.290526731492,
    0.9999: 3.890591886413,
    0.99999: 4.417173413469,
    0.999999999: 6.109410204869,
}


def run(det: NormalDetector, xs, ts=None) -> list[Verdict]:
    ts = range(len(xs)) if ts is None else ts
    return [det.process_one(x, t) for x, t in zip(xs, ts, strict=True)]


def test_registry_builds_it():
    det = build("normal", {"p": 0.999})
    assert isinstance(det, NormalDetector)
    assert det.name == "normal" and NormalDetector.config_cls is NormalConfig
    assert det.config.p == 0.999


def test_first_steps_by_hand():
    v = run(NormalDetector(), [10.0, 12.0, 11.0, 13.0, 30.0])
    # no stats yet: the seed's "unknown source" flag
    for verdict in v[:2]:
        assert verdict.is_anomaly and verdict.reason == "unknown source"
        assert math.isnan(verdict.lower) and math.isnan(verdict.upper)
        assert verdict.score == 1.0 and verdict.probability == 1.0
    # n=2: mean 11, sample var 2 -> band 11 ± z_p·√2; x = mean -> score 0
    zp = SEED_ZP[0.99999]
    assert v[2].lower == pytest.approx(11 - zp * math.sqrt(2), abs=1e-9)
    assert v[2].upper == pytest.approx(11 + zp * math.sqrt(2), abs=1e-9)
    assert v[2].score == 0.0 and not v[2].is_anomaly and v[2].reason == "ok"
    # n=3: mean 11, var 1; x=13 -> z=2 -> two-sided confidence erf(2/√2) = 0.9545
    assert v[3].upper == pytest.approx(11 + zp, abs=1e-9)
    assert v[3].score == pytest.approx(0.9544997361036416, abs=1e-12)
    assert v[3].probability == v[3].score and not v[3].is_anomaly
    # n=4: mean 11.5, var 5/3; 30 is far above the band
    assert v[4].is_anomaly and v[4].reason == "above upper bound"
    assert v[4].upper == pytest.approx(11.5 + zp * math.sqrt(5 / 3), abs=1e-9)
    assert v[4].score > 0.999999


def test_below_lower_bound_and_symmetric_score():
    det = NormalDetector()
    run(det, [0.0, 1.0, -1.0, 0.5, -0.5])
    up, down = det.score_one(10.0, 0), det.score_one(-10.0, 0)
    assert down.reason == "below lower bound" and down.is_anomaly
    assert up.reason == "above upper bound"
    assert up.score == pytest.approx(down.score, abs=1e-15)


@pytest.mark.parametrize("p", sorted(SEED_ZP))
def test_band_uses_computed_quantile(p):
    det = NormalDetector(NormalConfig(p=p))
    det.set_state({"n": 3, "mean": 0.0, "m2": 2.0, "prev_ts": None})  # sample std 1
    v = det.score_one(0.0, 0)
    assert v.upper == pytest.approx(SEED_ZP[p], abs=1e-8)
    assert v.lower == pytest.approx(-SEED_ZP[p], abs=1e-8)


def test_unknown_policy_ignore():
    v = run(NormalDetector(NormalConfig(unknown_policy="ignore")), [5.0, 6.0])
    assert [x.reason for x in v] == ["unknown source", "unknown source"]
    assert not any(x.is_anomaly for x in v) and all(x.score == 0.0 for x in v)


def test_min_count_delays_the_band():
    v = run(NormalDetector(NormalConfig(min_count=4)), [1.0, 2.0, 3.0, 2.0, 2.0])
    assert [x.reason for x in v] == ["unknown source"] * 4 + ["ok"]


def test_welford_matches_numpy():
    rng = np.random.default_rng(3)
    xs = rng.normal(1e6, 3.0, 5000)
    det = NormalDetector()
    det.process(xs, np.arange(len(xs)))
    n, mean, m2 = det.moments
    assert n == len(xs)
    assert mean == pytest.approx(xs.mean(), rel=1e-13)
    assert m2 / (n - 1) == pytest.approx(xs.var(ddof=1), rel=1e-9)


def test_steady_noise_not_flagged_spike_flagged():
    rng = np.random.default_rng(7)
    xs = rng.normal(20.0, 1.0, 3000)
    xs[2500] = 35.0
    out = NormalDetector().process(xs, np.arange(len(xs)))
    flagged = np.flatnonzero(out["is_anomaly"].to_numpy())
    # early flags only while the variance rests on a handful of readings
    assert [i for i in flagged if i >= 30] == [2500]
    assert out["reason"][2500] == "above upper bound"


def test_prior_seeds_the_moments():
    prior = SeriesPrior(n=100, mean=5.0, m2=99 * 4.0, min=0.0, max=10.0)
    det = NormalDetector(NormalConfig(), prior)
    v = det.process_one(20.0, 0)
    assert v.is_anomaly and v.upper == pytest.approx(5 + SEED_ZP[0.99999] * 2, abs=1e-9)
    assert det.moments[0] == 101


def test_zero_variance_says_why_and_floor():
    det = NormalDetector()
    v = run(det, [3.0, 3.0, 3.0, 3.5])
    assert v[2].reason == "ok; zero variance" and v[2].score == 0.0
    assert v[3].reason == "above upper bound; zero variance" and v[3].score == 1.0
    floored = NormalDetector(NormalConfig(std_floor=0.5))
    v = run(floored, [3.0, 3.0, 3.0, 3.5])
    assert v[3].reason == "ok; zero variance" and not v[3].is_anomaly
    assert v[3].score == pytest.approx(math.erf(1 / math.sqrt(2)), abs=1e-12)


def test_inter_arrival_one_verdict_per_row():
    ts = np.array([0, 1000, 2010, 2990, 4000, 5005, 6000, 60000], dtype=np.int64)
    det = NormalDetector(NormalConfig(inter_arrival=True))
    out = det.process(np.full(len(ts), np.nan), ts)  # values are ignored
    assert len(out) == len(ts)
    assert out["reason"][0] == "no previous reading" and not out["is_anomaly"][0]
    assert list(out["reason"][1:3]) == ["unknown source"] * 2
    assert out["reason"].iloc[-1] == "above upper bound" and out["is_anomaly"].iloc[-1]
    assert not out["is_anomaly"][3:-1].any()
    # learned values are the gaps, not the readings
    gaps = np.diff(ts).astype(float)
    n, mean, _ = det.moments
    assert n == len(gaps) and mean == pytest.approx(gaps.mean())


def test_inter_arrival_ignores_value_prior():
    prior = SeriesPrior(n=100, mean=5.0, m2=99 * 4.0, min=0.0, max=10.0)
    det = NormalDetector(NormalConfig(inter_arrival=True), prior)
    assert det.moments == (0, 0.0, 0.0)


def test_missing_value_is_not_learned():
    det = NormalDetector()
    run(det, [1.0, 2.0, 3.0])
    before = det.get_state()
    v = det.process_one(float("nan"), 0)
    assert v.reason == "missing value" and not v.is_anomaly
    assert det.get_state() == before


def test_learn_false_freezes_moments():
    prior = SeriesPrior(n=10, mean=1.0, m2=9.0, min=0.0, max=2.0)
    det = NormalDetector(NormalConfig(learn=False), prior)
    run(det, [100.0, 100.0, 100.0])
    assert det.moments == (10, 1.0, 9.0)


def _series(n=400, seed=11):
    rng = np.random.default_rng(seed)
    xs = rng.normal(0.0, 1.0, n)
    xs[::37] = np.nan
    xs[n // 2] = 50.0
    ts = np.cumsum(rng.integers(900, 1100, n))
    return xs, ts


@pytest.mark.parametrize("cfg", [NormalConfig(), NormalConfig(inter_arrival=True, unknown_policy="ignore")])
def test_process_equals_process_one(cfg):
    xs, ts = _series()
    fast = NormalDetector(cfg).process(xs, ts)
    slow_det = NormalDetector(cfg)
    slow = pd.DataFrame.from_records(
        [slow_det.process_one(float(x), int(t)) for x, t in zip(xs, ts, strict=True)], columns=RESULT_COLUMNS
    )
    assert list(fast.columns) == list(RESULT_COLUMNS)
    pd.testing.assert_frame_equal(fast, slow, check_exact=True)


def test_process_empty():
    out = NormalDetector().process(np.array([]), np.array([], dtype=np.int64))
    assert len(out) == 0 and list(out.columns) == list(RESULT_COLUMNS)


@pytest.mark.parametrize("cfg", [NormalConfig(), NormalConfig(inter_arrival=True)])
def test_state_round_trip_through_pickle(cfg):
    xs, ts = _series()
    whole = NormalDetector(cfg).process(xs, ts)
    first = NormalDetector(cfg)
    first.process(xs[:150], ts[:150])
    state = pickle.loads(pickle.dumps(first.get_state()))
    second = NormalDetector(cfg)
    second.set_state(state)
    rest = second.process(xs[150:], ts[150:])
    pd.testing.assert_frame_equal(rest, whole.iloc[150:].reset_index(drop=True), check_exact=True)


def test_score_one_does_not_mutate_and_matches_process_one():
    det = NormalDetector(NormalConfig(inter_arrival=True))
    run(det, [0, 0, 0, 0], [0, 1000, 2000, 3100])
    state = det.get_state()
    scored = det.score_one(0.0, 9000)
    assert det.get_state() == state
    assert det.process_one(0.0, 9000) == scored


def test_learn_one_then_score_one_equals_process_one():
    xs, ts = _series(100)
    a, b = NormalDetector(), NormalDetector()
    for x, t in zip(xs, ts, strict=True):
        got, want = a.score_one(x, t), b.process_one(x, t)
        assert got[2:] == want[2:]
        np.testing.assert_array_equal(got[:2], want[:2])  # NaN-aware
        a.learn_one(x, t)
    assert a.get_state() == b.get_state()


@pytest.mark.parametrize(
    "params, match",
    [
        ({"p": 1.5}, "p must be in"),
        ({"p": 0.0}, "p must be in"),
        ({"unknown_policy": "drop"}, "unknown_policy"),
        ({"min_count": 1}, "min_count"),
        ({"std_floor": -1.0}, "std_floor"),
        ({"inter_arrival": "yes"}, "inter_arrival"),
    ],
)
def test_config_validation(params, match):
    with pytest.raises(ValueError, match=match):
        NormalConfig(**params)


def test_set_state_rejects_garbage():
    with pytest.raises(ValueError, match="lacks key"):
        NormalDetector().set_state({"n": 1})
