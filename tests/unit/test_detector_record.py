"""record detector (excursion beyond every reading since training) and its calibrated use."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest

from spark_anomaly.detectors import RESULT_COLUMNS, SeriesPrior, build
from spark_anomaly.detectors.record import RecordConfig, RecordDetector

from .resume_check import assert_resumes_identically

PRIOR = SeriesPrior(n=100, mean=5.0, m2=50.0, min=0.0, max=10.0)


def run(det, xs):
    return [det.process_one(x, i) for i, x in enumerate(xs)]


def test_registry_builds_it_with_the_prior_and_the_margin_pads_the_trained_range():
    det = build("record", {"margin": 0.1}, PRIOR)
    assert isinstance(det, RecordDetector) and det.config.margin == 0.1
    v = det.process_one(5.0, 0)
    assert (v.lower, v.upper) == pytest.approx((-1.0, 11.0)) and v.reason == "ok"
    assert RecordDetector().config.margin == 0.03


def test_a_new_record_alarms_once_and_a_return_to_it_does_not():
    v = run(RecordDetector(RecordConfig(margin=0.0), PRIOR), [5.0, 15.0, 5.0, 15.0, 14.0, 20.0, -5.0, -4.0])
    assert [x.is_anomaly for x in v] == [False, True, False, False, False, True, True, False]
    assert v[1].score == pytest.approx(1 - math.exp(-0.5)) and v[1].reason.startswith("above every")
    assert (v[2].lower, v[2].upper) == (0.0, 15.0)  # the band grew to the record
    # 20 against [0, 15]: 5 / 15 band widths; -5 against [0, 20]: 5 / 20
    assert v[5].score == pytest.approx(1 - math.exp(-1 / 3))
    assert v[6].score == pytest.approx(1 - math.exp(-0.25))
    assert v[6].reason.startswith("below every") and v[6].probability == v[6].score
    assert (v[7].lower, v[7].upper) == (-5.0, 20.0)


def test_the_margin_keeps_a_slow_drift_quiet_but_not_a_jump():
    # a climb of 0.01 a reading (0.1 % of the trained width): a new record by a hair every time
    drift = np.r_[np.full(10, 9.0), 10.0 + 0.01 * np.arange(1, 201)]
    bare = RecordDetector(RecordConfig(margin=0.0), PRIOR).process(drift, np.arange(len(drift)))
    padded = RecordDetector(RecordConfig(margin=0.03), PRIOR).process(drift, np.arange(len(drift)))
    assert bare["is_anomaly"].sum() == 200 and not padded["is_anomaly"].any()
    jump = RecordDetector(RecordConfig(margin=0.03), PRIOR).process(np.array([9.0, 10.5]), np.arange(2))
    assert jump["is_anomaly"].tolist() == [False, True]  # 0.5 > 0.3 = 3 % of the width 10


def test_without_a_prior_the_warm_up_learns_the_range_then_records_widen_it():
    det = RecordDetector(RecordConfig(warmup=4, margin=0.0))
    v = run(det, [3.0, 1.0, 2.0, 5.0, 4.0, 9.0, 7.0, 9.5])
    assert all(x.reason.startswith("warm-up") and x.score == 0.0 and math.isnan(x.lower) for x in v[:4])
    assert (v[4].lower, v[4].upper) == (1.0, 5.0) and not v[4].is_anomaly
    assert v[5].is_anomaly and v[5].score == pytest.approx(1 - math.exp(-1.0))
    assert (v[6].lower, v[6].upper) == (1.0, 9.0) and not v[6].is_anomaly
    assert v[7].is_anomaly


def test_flat_training_range_uses_the_floor():
    flat = SeriesPrior(n=10, mean=2.0, m2=0.0, min=2.0, max=2.0)
    v = run(RecordDetector(RecordConfig(min_width=0.5, margin=0.0), flat), [2.0, 2.2, 2.1])
    assert not v[0].is_anomaly and v[1].is_anomaly and v[1].score == pytest.approx(1 - math.exp(-0.4))
    assert not v[2].is_anomaly


def test_invalid_value_is_reported_not_learned():
    det = RecordDetector(RecordConfig(margin=0.0), PRIOR)
    for bad in (float("inf"), float("nan"), -float("inf")):
        v = det.process_one(bad, 0)
        assert v.reason == "invalid value" and not v.is_anomaly and v.score == 0.0
    assert det.get_state()["rec_hi"] == -math.inf and det.get_state()["rec_lo"] == math.inf
    assert det.process_one(10.5, 1).is_anomaly


def test_process_equals_process_one_and_state_round_trips():
    rng = np.random.default_rng(3)
    xs = rng.normal(0.0, 1.0, 300).cumsum()  # a random walk sets records now and then
    xs[[50, 200]] = [40.0, -40.0]
    xs[120] = np.nan
    ts = np.arange(300) * 1000
    cfg = RecordConfig(warmup=40, margin=0.02)
    whole = RecordDetector(cfg).process(xs, ts)
    one = pd.DataFrame.from_records(run(RecordDetector(cfg), xs), columns=RESULT_COLUMNS)
    pd.testing.assert_frame_equal(whole, one)
    rows = RecordDetector(cfg).process_rows(xs, ts)
    pd.testing.assert_frame_equal(pd.DataFrame.from_records(rows, columns=RESULT_COLUMNS), one)
    # cuts inside the warm-up, right after a record and later
    assert_resumes_identically(lambda: RecordDetector(cfg), xs, ts, (20, 51, 201, 299))
    assert whole["is_anomaly"].iloc[50] and whole["is_anomaly"].iloc[200]
    state = RecordDetector(cfg, PRIOR).get_state()
    assert all(isinstance(v, (int, float, bool)) for v in state.values())  # plain values
    assert len(pickle.dumps(state)) < 200


def test_bad_configuration_is_rejected():
    bads = ({"margin": -0.1}, {"margin": float("nan")}, {"warmup": 0}, {"warmup": 2.5}, {"min_width": 0.0})
    for bad in bads:
        with pytest.raises(ValueError, match="record"):
            build("record", bad)
    with pytest.raises(ValueError, match="record"):
        build("record", {"margins": 0.1})


def test_calibrated_record_flags_a_new_level_once_where_range_keeps_flagging_it():
    # inside the trained [0, 10], then three visits to 14 (a new level) 300 readings apart
    rng = np.random.default_rng(11)
    xs = rng.uniform(1.0, 9.0, 1400)
    for start in (700, 1000, 1300):
        xs[start : start + 20] = 14.0
    cal = {"raw": "excess", "short_window": 5, "history": 500, "min_history": 50}
    rec = build("calibrated", {**cal, "detector": "record"}, PRIOR).process(xs, np.arange(1400))
    rng_ = build("calibrated", {**cal, "detector": "range"}, PRIOR).process(xs, np.arange(1400))
    assert rec["score"].iloc[:700].max() < 0.05 and rec["score"].iloc[700] == 1.0
    assert rec["score"].iloc[1000:1020].max() < 0.05 and rec["score"].iloc[1300:1320].max() < 0.05
    assert rng_["is_anomaly"].iloc[1000:1020].any() and rng_["is_anomaly"].iloc[1300:1320].any()
