"""ema detector (seed 004): smoothing, windowed sigma, warm-up, seed-faithful band."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest

from spark_anomaly.detectors import RESULT_COLUMNS, build
from spark_anomaly.detectors.ema import EmaConfig, EmaDetector


def test_registry_builds_it():
    det = build("ema", {"k": 2.0})
    assert isinstance(det, EmaDetector) and det.config.k == 2.0
    assert EmaDetector.name == "ema" and EmaDetector.config_cls is EmaConfig


def test_first_steps_by_hand():
    det = EmaDetector()
    v = [det.process_one(x, i) for i, x in enumerate([10.0, 20.0, 15.0, 12.0])]
    # c=0: old_s = buf = 10; pr = 10, sigma 0 -> zero-width band at 10
    assert (v[0].lower, v[0].upper) == (10.0, 10.0)
    # c=1: pr = old_s = 0.9·10 + 0.1·10 = 10; buffer still all 10
    assert (v[1].lower, v[1].upper) == (10.0, 10.0)
    # c=2: pr = 0.9·20 + 0.1·10 = 19; buf = 19×10 + 20 -> mu 10.5, Σ(b−mu)² = 95
    s2 = 0.01 * math.sqrt(95.0)
    assert v[2].lower == pytest.approx(19 - 1.3 * s2, abs=1e-12)
    assert v[2].upper == pytest.approx(19 + 1.3 * s2, abs=1e-12)
    # c=3: pr = 0.9·15 + 0.1·19 = 15.4; buf = 18×10 + 20 + 15 -> mu 10.75, Σ = 113.75
    s3 = 0.01 * math.sqrt(113.75) + 0.99 * s2
    assert v[3].lower == pytest.approx(15.4 - 1.3 * s3, abs=1e-12)
    assert v[3].upper == pytest.approx(15.4 + 1.3 * s3, abs=1e-12)
    # all of it is warm-up: no alarms, score 0, band reported
    assert all(x.reason == "warm-up" and not x.is_anomaly and x.score == 0.0 for x in v)
    assert det.get_state()["c"] == 4


def test_alpha_switches_after_warm_steps():
    det = EmaDetector()
    xs = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    v = [det.process_one(x, 0) for x in xs]
    s = xs[0]
    preds = []
    for c, x in enumerate(xs):
        preds.append(s)
        a = 0.9 if c < 5 else 0.04
        s = a * x + (1 - a) * s
    centres = [(x.lower + x.upper) / 2 for x in v]
    assert centres == pytest.approx(preds, abs=1e-12)
    assert det.get_state()["old_s"] == pytest.approx(s, abs=1e-12)


def test_sigma_divided_by_m():
    det = EmaDetector(EmaConfig(sigma_divide_by_m=True))
    v = [det.process_one(x, 0) for x in [10.0, 20.0, 15.0]]
    assert v[2].upper == pytest.approx(19 + 1.3 * 0.01 * math.sqrt(95.0 / 20), abs=1e-12)


def noisy(n=3000, seed=2):
    rng = np.random.default_rng(seed)
    return 50.0 + rng.normal(0.0, 1.0, n)


def test_no_alarm_during_warm_up_then_spike_flagged():
    xs = noisy()
    xs[500] += 40.0  # inside warm-up (c <= 50·M = 1000)
    xs[2000] += 40.0
    xs[2500] -= 40.0
    out = EmaDetector().process(xs, np.arange(len(xs)))
    assert not out["is_anomaly"][:1001].any()
    assert (out["reason"][:1001] == "warm-up").all() and (out["score"][:1001] == 0).all()
    assert list(np.flatnonzero(out["is_anomaly"])) == [2000, 2500]
    assert out["reason"][2000] == "above upper bound" and out["reason"][2500] == "below lower bound"
    assert out["score"][2000] > 0.999999
    # steady readings score low on average: z is in std units of the window
    assert out["score"][1001:].median() < 0.9


def test_first_alarm_possible_at_c_1001():
    xs = np.full(1003, 5.0)
    xs[1000] = 6.0
    out = EmaDetector().process(xs, np.arange(len(xs)))
    assert out["reason"][1000] == "warm-up" and not out["is_anomaly"][1000]  # c = 1000 = 50·M
    xs[1000], xs[1001] = 5.0, 6.0
    out = EmaDetector().process(xs, np.arange(len(xs)))
    # a flat buffer and sigma 0: the seed flags any move; the reason says why
    assert out["is_anomaly"][1001] and out["reason"][1001] == "above upper bound; zero sigma"
    # back to 5 below the prediction 0.04·6 + 0.96·5 = 5.04; sigma 0.01·√0.95 > 0 now
    assert out["reason"][1002] == "below lower bound"
    assert out["upper"][1002] == pytest.approx(5.04 + 1.3 * 0.01 * math.sqrt(0.95), abs=1e-12)
    floored = EmaDetector(EmaConfig(sigma_floor=1.0)).process(xs, np.arange(len(xs)))
    assert not floored["is_anomaly"][1001] and floored["reason"][1001] == "ok; sigma floor"


def test_score_is_two_sided_in_std_units():
    det = EmaDetector(EmaConfig(warmup_windows=0))
    for x in noisy(200):
        det.process_one(x, 0)
    st = det.get_state()
    buf = np.asarray(st["buf"])
    sigma = 0.01 * math.sqrt(((buf - buf.mean()) ** 2).sum()) + 0.99 * st["sigma_old"]
    pr = st["old_s"]
    x = pr + 2.0 * sigma / math.sqrt(20)  # two stds above the prediction
    v = det.score_one(x, 0)
    assert v.score == pytest.approx(math.erf(2 / math.sqrt(2)), abs=1e-9)
    assert det.score_one(pr - 2.0 * sigma / math.sqrt(20), 0).score == pytest.approx(v.score, abs=1e-9)
    assert v.probability == v.score and 0.0 <= v.score <= 1.0


def test_missing_value_skipped():
    det = EmaDetector()
    det.process_one(1.0, 0)
    before = pickle.dumps(det.get_state())
    v = det.process_one(float("inf"), 0)
    assert v.reason == "missing value" and not v.is_anomaly
    assert pickle.dumps(det.get_state()) == before


def series(n=1600, seed=4):
    xs = noisy(n, seed)
    xs[::53] = np.nan
    xs[n * 3 // 4] += 30
    return xs


@pytest.mark.parametrize("cfg", [EmaConfig(), EmaConfig(window=7, sigma_divide_by_m=True, warmup_windows=2)])
def test_process_equals_process_one(cfg):
    xs = series()
    fast = EmaDetector(cfg).process(xs, np.arange(len(xs)))
    d = EmaDetector(cfg)
    slow = pd.DataFrame.from_records(
        [d.process_one(float(x), i) for i, x in enumerate(xs)], columns=RESULT_COLUMNS
    )
    pd.testing.assert_frame_equal(fast, slow, check_exact=True)
    assert fast["is_anomaly"].any()


@pytest.mark.parametrize("split", [0, 3, 1100])
def test_state_round_trip_through_pickle(split):
    xs = series()
    ts = np.arange(len(xs))
    whole = EmaDetector().process(xs, ts)
    a = EmaDetector()
    a.process(xs[:split], ts[:split])
    b = EmaDetector()
    b.set_state(pickle.loads(pickle.dumps(a.get_state())))
    rest = b.process(xs[split:], ts[split:])
    pd.testing.assert_frame_equal(rest, whole.iloc[split:].reset_index(drop=True), check_exact=True)


def test_score_one_does_not_mutate():
    det = EmaDetector(EmaConfig(warmup_windows=1))
    assert det.score_one(3.0, 0) == det.score_one(3.0, 0)
    assert det.get_state()["c"] == 0
    for x in series(100):
        before = pickle.dumps(det.get_state())
        scored = det.score_one(x, 0)
        assert pickle.dumps(det.get_state()) == before
        got = det.process_one(x, 0)
        assert scored[2:] == got[2:]
        np.testing.assert_array_equal(scored[:2], got[:2])


def test_set_state_checks_the_window():
    state = EmaDetector().get_state()
    with pytest.raises(ValueError, match="buffer has 20 slots"):
        EmaDetector(EmaConfig(window=10)).set_state(state)
    with pytest.raises(ValueError, match="lacks key"):
        EmaDetector().set_state({"c": 0})


@pytest.mark.parametrize(
    "params, match",
    [
        ({"window": 0}, "window"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"warm_alpha": -0.1}, "warm_alpha"),
        ({"gamma": 2}, "gamma"),
        ({"k": -1.0}, "k must be"),
        ({"warmup_windows": -1}, "warmup_windows"),
        ({"sigma_divide_by_m": "yes"}, "sigma_divide_by_m"),
        ({"sigma_floor": float("nan")}, "sigma_floor"),
    ],
)
def test_config_validation(params, match):
    with pytest.raises(ValueError, match=match):
        EmaConfig(**params)
