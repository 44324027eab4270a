"""kmeans detector (seed 001, Netdata-style): features, training schedule, scaled distance score."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from spark_anomaly.detectors import RESULT_COLUMNS, build
from spark_anomaly.detectors.kmeans import KMeansConfig, KMeansDetector, lloyd


def seed_preprocess(x, n_smoothing, n_lags, diffs, rounding=True):
    """The seed's preprocess_data (001), with its rounding made optional."""
    r = (lambda v: round(v, 2)) if rounding else (lambda v: v)
    xp = [r(sum(x[i : i + n_smoothing]) / n_smoothing) for i in range(len(x) - n_smoothing + 1)]
    if diffs:
        xp = [r(j - i) for i, j in zip(xp[:-1], xp[1:], strict=True)]
    return xp[-(n_lags + 1) :]


def tiny(**kw) -> KMeansConfig:
    """One raw value per vector, one cluster: every number is hand-checkable."""
    base = dict(n_smoothing=1, diffs=False, n_lags=0, n_clusters=1, train_data_size=4, train_every_n=4)
    base.update(kw)
    return KMeansConfig(**base)


def run(det, xs):
    return [det.process_one(x, i) for i, x in enumerate(xs)]


def test_registry_builds_it():
    det = build("kmeans", {"n_clusters": 3})
    assert isinstance(det, KMeansDetector) and det.config.n_clusters == 3
    assert KMeansDetector.name == "kmeans" and KMeansDetector.config_cls is KMeansConfig


@pytest.mark.parametrize("rounding", [True, False])
@pytest.mark.parametrize("diffs", [True, False])
def test_features_match_the_seed(rounding, diffs):
    rng = np.random.default_rng(0)
    xs = rng.uniform(0, 3, 60).tolist()
    xs[10:20] = [0.7481297] * 10  # a flat stretch as in the seed's printout
    cfg = KMeansConfig(diffs=diffs, round_digits=2 if rounding else None)
    det = KMeansDetector(cfg)
    for i, x in enumerate(xs):
        det.process_one(x, i)
        history = xs[max(0, i + 1 - (3 + 3 + 3)) : i + 1]  # the seed's raw history
        want = seed_preprocess(history, 3, 3, diffs, rounding)
        if len(want) == 4:
            assert det.get_state()["proc"].tolist() == want


def test_by_hand_one_cluster():
    det = KMeansDetector(tiny())
    v = run(det, [0.0, 2.0, 4.0, 6.0, 8.0])
    assert all(x.reason == "warm-up" and x.score == 0.0 for x in v)  # first fit at c=4, after scoring
    st = det.get_state()
    # trained on [2, 4, 6, 8]: centre 5, distances 3, 1, 1, 3
    assert st["centres"].tolist() == [[5.0]]
    assert (st["min_d"], st["max_d"]) == (1.0, 3.0)
    assert st["train_dists"].tolist() == [1.0, 1.0, 3.0, 3.0]
    near = det.score_one(5.0, 0)  # d 0 -> scaled −0.5 -> clipped 0
    assert (near.score, near.probability, near.is_anomaly, near.reason) == (0.0, 0.0, False, "ok")
    mid = det.score_one(7.0, 0)  # d 2 -> scaled 0.5 -> /5 = 0.1; 2 of 4 training distances below
    assert (mid.score, mid.probability, mid.is_anomaly) == (pytest.approx(0.1), 0.5, False)
    far = det.score_one(15.0, 0)  # d 10 -> scaled 4.5 -> 0.9
    assert (far.score, far.probability, far.is_anomaly, far.reason) == (
        pytest.approx(0.9),
        1.0,
        True,
        "far from centres",
    )
    capped = det.score_one(100.0, 0)
    assert capped.score == 1.0
    assert np.isnan(far.lower) and np.isnan(far.upper)


def test_percentile99_threshold():
    det = KMeansDetector(tiny(threshold_mode="percentile99"))
    run(det, [0.0, 2.0, 4.0, 6.0, 8.0])
    # 99th percentile of [1, 1, 3, 3] (linear) = 3
    assert not det.score_one(7.9, 0).is_anomaly  # d 2.9
    assert det.score_one(8.5, 0).is_anomaly  # d 3.5
    assert det.score_one(1.5, 0).is_anomaly  # d 3.5 on the other side
    assert not det.score_one(2.1, 0).is_anomaly  # d 2.9


def test_training_schedule_seed_defaults():
    rng = np.random.default_rng(1)
    xs = rng.normal(size=200)
    out = KMeansDetector().process(xs, np.arange(len(xs)))
    # first fit at step 50 (after scoring it), then every 50 steps
    assert (out["reason"][:51] == "warm-up").all()
    assert not (out["reason"][51:] == "warm-up").any()
    det = KMeansDetector()
    det.process(xs[:101], np.arange(101))
    centres_at_100 = det.get_state()["centres"]
    det.process(xs[101:150], np.arange(101, 150))
    np.testing.assert_array_equal(det.get_state()["centres"], centres_at_100)  # no refit before 150
    det.process(xs[150:151], np.arange(150, 151))
    assert not np.array_equal(det.get_state()["centres"], centres_at_100)


def test_periodic_series_not_flagged_spike_flagged():
    pattern = [0.0, 1.0, 2.0, 3.0, 2.0, 1.0]
    xs = np.array(pattern * 60)
    xs[300] = 9.0
    out = KMeansDetector().process(xs, np.arange(len(xs)))
    flagged = np.flatnonzero(out["is_anomaly"])
    # the spike enters the smoothed, differenced vector at 300 and leaves it after 3 + 3 readings
    assert len(flagged) and flagged.min() == 300 and flagged.max() <= 306
    assert not out["is_anomaly"][:300].any() and not out["is_anomaly"][307:].any()
    assert out["score"][300] > 0.2 and (out["score"][51:300] <= 0.2).all()


def test_lloyd_separates_blobs_deterministically():
    x = np.array([[0.0, 0.0], [0.2, 0.0], [0.0, 0.2], [10.0, 10.0], [10.2, 10.0], [10.0, 10.2]])
    c = lloyd(x, 2)
    got = np.array(sorted(c.tolist()))
    np.testing.assert_allclose(got, [[0.2 / 3, 0.2 / 3], [10 + 0.2 / 3, 10 + 0.2 / 3]], rtol=1e-12)
    np.testing.assert_array_equal(lloyd(x, 2), c)
    assert lloyd(np.zeros((5, 2)), 2).tolist() == [[0.0, 0.0], [0.0, 0.0]]  # degenerate data


def test_zero_training_range():
    det = KMeansDetector(tiny())
    run(det, [1.0] * 5)
    assert det.score_one(1.0, 0).reason == "ok; zero training range"
    v = det.score_one(1.5, 0)
    assert v.is_anomaly and v.score == 1.0 and v.reason == "far from centres; zero training range"


def test_missing_value_skipped():
    det = KMeansDetector(tiny())
    run(det, [1.0, 2.0])
    before = pickle.dumps(det.get_state())
    assert det.process_one(float("nan"), 0).reason == "missing value"
    assert pickle.dumps(det.get_state()) == before


def series(n=700, seed=2):
    rng = np.random.default_rng(seed)
    xs = np.sin(np.arange(n) / 5.0) * 3 + rng.normal(0.0, 0.3, n)
    xs[::61] = np.nan
    xs[n // 2] += 10
    return xs


CONFIGS = [
    KMeansConfig(),
    KMeansConfig(threshold_mode="percentile99", round_digits=2),
    KMeansConfig(diffs=False, n_clusters=3, train_data_size=30, train_every_n=7, n_lags=5),
]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_process_equals_process_one(cfg):
    xs = series()
    fast = KMeansDetector(cfg).process(xs, np.arange(len(xs)))
    d = KMeansDetector(cfg)
    slow = pd.DataFrame.from_records(
        [d.process_one(float(x), i) for i, x in enumerate(xs)], columns=RESULT_COLUMNS
    )
    pd.testing.assert_frame_equal(fast, slow, check_exact=True)
    assert fast["is_anomaly"].any()
    assert ((fast["score"] >= 0) & (fast["score"] <= 1)).all()
    assert ((fast["probability"] >= 0) & (fast["probability"] <= 1)).all()


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("split", [0, 5, 37, 120, 333])
def test_state_round_trip_through_pickle(cfg, split):
    xs = series()
    ts = np.arange(len(xs))
    whole = KMeansDetector(cfg).process(xs, ts)
    a = KMeansDetector(cfg)
    a.process(xs[:split], ts[:split])
    b = KMeansDetector(cfg)
    b.set_state(pickle.loads(pickle.dumps(a.get_state())))
    rest = b.process(xs[split:], ts[split:])
    pd.testing.assert_frame_equal(rest, whole.iloc[split:].reset_index(drop=True), check_exact=True)


def test_replays_are_identical():
    xs = series()
    a = KMeansDetector().process(xs, np.arange(len(xs)))
    b = KMeansDetector().process(xs, np.arange(len(xs)))
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_score_one_does_not_mutate_and_learn_one_matches():
    a, b = KMeansDetector(tiny(train_data_size=6)), KMeansDetector(tiny(train_data_size=6))
    for i, x in enumerate(series(90)):
        before = pickle.dumps(a.get_state())
        got = a.score_one(x, i)
        assert pickle.dumps(a.get_state()) == before
        want = b.process_one(x, i)
        assert got[2:] == want[2:]
        a.learn_one(x, i)
    assert pickle.dumps(a.get_state()) == pickle.dumps(b.get_state())


def test_set_state_checks_shapes():
    state = KMeansDetector(KMeansConfig(n_lags=3)).get_state()
    state["train"] = np.zeros((3, 4))
    with pytest.raises(ValueError, match="n_lags"):
        KMeansDetector(KMeansConfig(n_lags=2)).set_state(state)
    with pytest.raises(ValueError, match="lacks key"):
        KMeansDetector().set_state({"c": 1})


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_smoothing": 0}, "n_smoothing"),
        ({"n_lags": -1}, "n_lags"),
        ({"n_clusters": 0}, "n_clusters"),
        ({"train_data_size": 1, "n_clusters": 2}, "train_data_size"),
        ({"train_every_n": 0}, "train_every_n"),
        ({"anomaly_score_cap": 0}, "anomaly_score_cap"),
        ({"threshold_mode": "p99"}, "threshold_mode"),
        ({"score_threshold": 1.0}, "score_threshold"),
        ({"round_digits": -1}, "round_digits"),
        ({"diffs": "yes"}, "diffs"),
    ],
)
def test_config_validation(params, match):
    with pytest.raises(ValueError, match=match):
        KMeansConfig(**params)
