"""robust detector (seed 002): rolling median/MAD band, two-sided probability, MAD=0 floor."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest

from spark_anomaly.detectors import RESULT_COLUMNS, build
from spark_anomaly.detectors.robust import MAD_SCALE, MEANAD_SCALE, RobustConfig, RobustDetector, median_mad
from spark_anomaly.detectors.stats import z_for_quantile

Z9999 = z_for_quantile(0.9999)  # 3.719...


def run(det, xs):
    return [det.process_one(x, i) for i, x in enumerate(xs)]


def test_registry_builds_it():
    det = build("robust", {"window": 10})
    assert isinstance(det, RobustDetector) and det.config.window == 10
    assert RobustDetector.name == "robust" and RobustDetector.config_cls is RobustConfig


def test_warm_up_until_window_full():
    v = run(RobustDetector(RobustConfig(window=5)), [1.0, 2.0, 3.0, 4.0, 1000.0, 3.0])
    assert [x.reason for x in v[:5]] == ["warm-up"] * 5
    assert not any(x.is_anomaly for x in v[:5]) and all(math.isnan(x.lower) for x in v[:5])
    assert v[5].reason == "ok"


def test_by_hand_median_ignores_the_spike():
    det = RobustDetector(RobustConfig(window=5))
    v = run(det, [1.0, 2.0, 3.0, 4.0, 100.0, 3.0, 10.0])
    # window [1,2,3,4,100]: median 3, |dev| [2,1,0,1,97] -> MAD 1
    assert v[5].lower == pytest.approx(3 - Z9999 * MAD_SCALE, abs=1e-12)
    assert v[5].upper == pytest.approx(3 + Z9999 * MAD_SCALE, abs=1e-12)
    assert v[5].score == 0.0 and not v[5].is_anomaly
    # window [2,3,4,100,3]: median 3, MAD 1; z = 7/1.4826 = 4.72 > 3.72
    z = 7 / MAD_SCALE
    assert v[6].is_anomaly and v[6].reason == "above upper bound"
    assert v[6].score == pytest.approx(math.erf(z / math.sqrt(2)), abs=1e-12)
    assert v[6].probability == v[6].score


def test_probability_is_two_sided_not_cdf():
    det = RobustDetector(RobustConfig(window=5))
    run(det, [1.0, 2.0, 3.0, 4.0, 5.0])
    at_median = det.score_one(3.0, 0)
    assert at_median.probability == 0.0  # the seed's cdf(|z|) would say 0.5
    up, down = det.score_one(5.0, 0), det.score_one(1.0, 0)
    assert up.score == down.score and 0.0 < up.score < 1.0
    assert down.reason == "ok"
    assert det.score_one(-100.0, 0).reason == "below lower bound"


def test_mad_zero_falls_back_to_mean_abs_dev():
    det = RobustDetector(RobustConfig(window=5))
    run(det, [5.0, 5.0, 5.0, 5.0, 6.0])
    sigma = MEANAD_SCALE * 0.2  # |dev| [0,0,0,0,1], mean 0.2
    ok = det.score_one(5.5, 0)
    assert ok.reason == "ok; mad=0 meanad"
    assert ok.upper == pytest.approx(5 + Z9999 * sigma, abs=1e-12)
    bad = det.score_one(7.0, 0)
    assert bad.is_anomaly and bad.reason == "above upper bound; mad=0 meanad"


def test_constant_window_uses_the_floor():
    det = RobustDetector(RobustConfig(window=5, mad_floor=0.01))
    run(det, [5.0] * 5)
    assert det.score_one(5.0, 0).reason == "ok; mad=0 floor"
    assert det.score_one(5.03, 0).reason == "ok; mad=0 floor"  # 3 sigma < 3.72
    v = det.score_one(5.05, 0)
    assert v.is_anomaly and v.reason == "above upper bound; mad=0 floor"
    no_fallback = RobustDetector(RobustConfig(window=5, mad_fallback=False, mad_floor=0.01))
    run(no_fallback, [5.0, 5.0, 5.0, 5.0, 6.0])
    assert no_fallback.score_one(5.05, 0).reason == "above upper bound; mad=0 floor"


def test_zero_floor_gives_infinite_z_with_reason():
    det = RobustDetector(RobustConfig(window=3, mad_floor=0.0))
    run(det, [2.0, 2.0, 2.0])
    assert det.score_one(2.0, 0).score == 0.0
    v = det.score_one(2.0001, 0)
    assert v.is_anomaly and v.score == 1.0 and v.reason == "above upper bound; mad=0 floor"


def test_median_mad_equals_numpy():
    rng = np.random.default_rng(0)
    for n in range(1, 60):
        for v in (rng.normal(size=n), rng.integers(0, 3, n).astype(float), rng.standard_cauchy(n)):
            m, mad = median_mad(sorted(v.tolist()))
            assert m == np.median(v)
            assert mad == np.median(np.abs(v - np.median(v)))


def test_matches_numpy_reference_per_step():
    rng = np.random.default_rng(1)
    xs = np.round(rng.normal(0.0, 1.0, 600), 1)  # ties on purpose
    w = 30
    out = RobustDetector(RobustConfig(window=w)).process(xs, np.arange(len(xs)))
    for i in range(w, len(xs)):
        prev = xs[i - w : i]
        m = np.median(prev)
        sigma = MAD_SCALE * np.median(np.abs(prev - m))
        assert out["lower"][i] == m - Z9999 * sigma
        assert out["upper"][i] == m + Z9999 * sigma


def test_steady_noise_not_flagged_spikes_flagged():
    rng = np.random.default_rng(5)
    xs = rng.uniform(-1.0, 1.0, 3000)  # bounded: the band (about ±2.7) can never be crossed
    xs[1000] = 6.0
    xs[2000] = -6.0
    out = RobustDetector().process(xs, np.arange(len(xs)))
    assert list(np.flatnonzero(out["is_anomaly"])) == [1000, 2000]
    assert out["reason"][2000] == "below lower bound"


def series(n=500, seed=3):
    rng = np.random.default_rng(seed)
    xs = rng.normal(0.0, 1.0, n)
    xs[::41] = np.nan
    xs[n // 2] = 20.0
    xs[n // 3 : n // 3 + 60] = 1.0  # a stuck stretch: MAD hits 0
    return xs


@pytest.mark.parametrize("cfg", [RobustConfig(), RobustConfig(window=7, mad_fallback=False)])
def test_process_equals_process_one(cfg):
    xs = series()
    fast = RobustDetector(cfg).process(xs, np.arange(len(xs)))
    d = RobustDetector(cfg)
    slow = pd.DataFrame.from_records(
        [d.process_one(float(x), i) for i, x in enumerate(xs)], columns=RESULT_COLUMNS
    )
    pd.testing.assert_frame_equal(fast, slow, check_exact=True)
    assert fast["is_anomaly"].any() and fast["reason"].str.contains("mad=0").any()


@pytest.mark.parametrize("split", [0, 50, 300])
def test_state_round_trip_through_pickle(split):
    xs = series()
    ts = np.arange(len(xs))
    whole = RobustDetector().process(xs, ts)
    a = RobustDetector()
    a.process(xs[:split], ts[:split])
    b = RobustDetector()
    b.set_state(pickle.loads(pickle.dumps(a.get_state())))
    rest = b.process(xs[split:], ts[split:])
    pd.testing.assert_frame_equal(rest, whole.iloc[split:].reset_index(drop=True), check_exact=True)


def test_score_one_does_not_mutate_and_learn_one_matches():
    a, b = RobustDetector(RobustConfig(window=10)), RobustDetector(RobustConfig(window=10))
    for i, x in enumerate(series(80)):
        before = pickle.dumps(a.get_state())
        got = a.score_one(x, i)
        assert pickle.dumps(a.get_state()) == before
        want = b.process_one(x, i)
        assert got[2:] == want[2:]
        np.testing.assert_array_equal(got[:2], want[:2])
        a.learn_one(x, i)
    np.testing.assert_array_equal(a.get_state()["window"], b.get_state()["window"])


def test_missing_value_not_learned():
    det = RobustDetector(RobustConfig(window=3))
    run(det, [1.0, 2.0])
    assert det.process_one(float("nan"), 0).reason == "missing value"
    assert det.get_state()["window"].tolist() == [1.0, 2.0]


def test_set_state_checks_the_window():
    with pytest.raises(ValueError, match="config window is 5"):
        RobustDetector(RobustConfig(window=5)).set_state({"window": np.arange(6.0)})
    with pytest.raises(ValueError, match="lacks key"):
        RobustDetector().set_state({})


@pytest.mark.parametrize(
    "params, match",
    [
        ({"window": 1}, "window"),
        ({"window": 2.5}, "window"),
        ({"threshold": 0.4}, "threshold"),
        ({"threshold": 1.0}, "threshold"),
        ({"mad_floor": -1.0}, "mad_floor"),
        ({"mad_fallback": 1}, "mad_fallback"),
    ],
)
def test_config_validation(params, match):
    with pytest.raises(ValueError, match=match):
        RobustConfig(**params)
