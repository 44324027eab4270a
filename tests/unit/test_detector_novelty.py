"""novelty detector (rarity of the latest pattern of value levels)."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pandas as pd
import pytest

from spark_anomaly.detectors import RESULT_COLUMNS, SeriesPrior, build
from spark_anomaly.detectors.novelty import NoveltyConfig, NoveltyDetector

from .resume_check import assert_resumes_identically

PRIOR = SeriesPrior(n=100, mean=5.0, m2=50.0, min=0.0, max=10.0)


def run(det, xs):
    return [det.process_one(x, i) for i, x in enumerate(xs)]


def test_registry_builds_it_with_the_prior():
    det = build("novelty", {"bins": 5, "order": 2}, PRIOR)
    assert isinstance(det, NoveltyDetector) and det.config.bins == 5 and det.config.order == 2
    v = det.process_one(5.0, 0)
    assert not v.reason.startswith("warm-up") and math.isnan(v.lower) and math.isnan(v.upper)


def test_levels_only_surprise_by_hand():
    # order 1, 10 levels of width 1 over [0, 10]: 0.2 and 0.7 share level 0, 3.5 is level 3
    det = NoveltyDetector(NoveltyConfig(bins=10, order=1, surprise_cap=10.0), PRIOR)
    v = run(det, [0.2, 0.7, 0.4, 3.5, 0.1])
    assert v[0].score == 0.0 and not v[0].is_anomaly  # first reading: n = 0, nothing to compare
    # second reading, level 0 seen once among 1: surprise log(2) - log(2) = 0
    assert v[1].score == pytest.approx(0.0) and v[1].reason == "pattern seen 1 of 1 times"
    assert v[2].score == pytest.approx(0.0)
    # level 3 never seen among 3 readings: surprise log(4)
    assert v[3].is_anomaly and v[3].score == pytest.approx(math.log(4.0) / 10.0)
    assert v[3].probability == pytest.approx(1.0 - 1.0 / 4.0)
    # level 0 seen 3 times among 4: surprise log(5) - log(4)
    assert v[4].score == pytest.approx((math.log(5.0) - math.log(4.0)) / 10.0)


def test_a_repeated_pattern_becomes_ordinary_and_a_new_one_stands_out():
    xs = [1.0, 9.0] * 200  # levels alternate 1, 9; the last reading is 9
    det = NoveltyDetector(NoveltyConfig(bins=10, order=3), PRIOR)
    v = run(det, xs + [1.0, 1.0, 1.0])
    assert v[-4].score < 0.05 and not v[-4].is_anomaly  # the alternation is well known
    assert v[-3].score < 0.05  # (1, 9, 1) is known too
    assert v[-2].is_anomaly and v[-2].score > 5 * v[-4].score  # (9, 1, 1) never seen
    assert v[-1].is_anomaly  # (1, 1, 1) never seen either


def test_values_outside_the_trained_range_get_levels_of_their_own():
    det = NoveltyDetector(NoveltyConfig(bins=10, order=1), PRIOR)
    run(det, [5.0] * 50)
    far = det.process_one(1e300, 50)
    assert far.is_anomaly and far.score == pytest.approx(math.log(51.0) / 20.0)
    assert det.process_one(-25.0, 51).is_anomaly


def test_without_a_prior_the_warm_up_learns_the_range_then_freezes():
    det = NoveltyDetector(NoveltyConfig(warmup=3, bins=2, order=1))
    v = run(det, [0.0, 4.0, 2.0, 1.0, 3.0, 9.0])
    assert all(x.reason.startswith("warm-up") and x.score == 0.0 for x in v[:3])
    assert v[3].score == 0.0  # first counted reading
    assert v[4].is_anomaly  # level 1 of [0, 4] in 2 levels: new
    assert v[5].is_anomaly  # 9 is level 4: outside the frozen range, new
    assert det.get_state()["hi"] == 4.0 and det.get_state()["n"] == 3


def test_invalid_value_is_reported_not_counted():
    det = NoveltyDetector(NoveltyConfig(order=2), PRIOR)
    run(det, [1.0, 2.0])
    v = det.process_one(float("nan"), 2)
    assert v.reason == "invalid value" and not v.is_anomaly and v.score == 0.0
    state = det.get_state()
    assert state["n"] == 2 and len(state["recent"]) == 2 and sum(state["counts"].values()) == 2


def test_process_equals_process_one_and_state_round_trips():
    rng = np.random.default_rng(5)
    xs = np.sin(np.arange(600) / 10.0) + rng.normal(0.0, 0.1, 600)
    xs[[300, 450]] = [5.0, np.nan]
    ts = np.arange(600) * 1000
    cfg = NoveltyConfig(warmup=40, bins=8, order=3, table_size=1024)
    whole = NoveltyDetector(cfg).process(xs, ts)
    one = pd.DataFrame.from_records(run(NoveltyDetector(cfg), xs), columns=RESULT_COLUMNS)
    pd.testing.assert_frame_equal(whole, one)
    assert_resumes_identically(lambda: NoveltyDetector(cfg), xs, ts, (20, 200))  # in and after warm-up
    assert whole["score"].between(0, 1).all()
    assert whole["is_anomaly"].iloc[300] and whole["score"].iloc[300] > whole["score"].iloc[100:300].max()


def test_state_of_another_table_size_is_rejected():
    state = NoveltyDetector(NoveltyConfig(table_size=16), PRIOR).get_state()
    with pytest.raises(ValueError, match="slots"):
        NoveltyDetector(NoveltyConfig(table_size=32), PRIOR).set_state(state)


@pytest.mark.parametrize(
    "params",
    [{"bins": 0}, {"order": 0}, {"table_size": 0}, {"warmup": 0}, {"min_width": 0.0}, {"surprise_cap": 0.0}],
)
def test_bad_configuration_is_rejected(params):
    with pytest.raises(ValueError):
        build("novelty", params)


def test_state_restores_the_same_from_pickle_and_from_json():
    rng = np.random.default_rng(9)
    xs = rng.normal(0.0, 1.0, 400)
    cfg = NoveltyConfig(bins=12, order=3, table_size=512)
    det = NoveltyDetector(cfg, PRIOR)
    det.process(xs[:300], np.arange(300))
    state = det.get_state()
    assert len(state["counts"]) > 50
    via_pickle = NoveltyDetector(cfg, PRIOR)
    via_pickle.set_state(pickle.loads(pickle.dumps(state)))
    via_json = NoveltyDetector(cfg, PRIOR)
    via_json.set_state(json.loads(json.dumps(state)))  # slots become strings
    assert via_json.get_state() == via_pickle.get_state() == state
    rest = np.arange(300, 400)
    expected = det.process(xs[300:], rest)
    pd.testing.assert_frame_equal(via_pickle.process(xs[300:], rest), expected)
    pd.testing.assert_frame_equal(via_json.process(xs[300:], rest), expected)
