"""range detector (excursion beyond the trained [min, max]) and calibrated's ``excess`` raw mode."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest
import yaml

from spark_anomaly.config import DetectorSpec
from spark_anomaly.detectors import RESULT_COLUMNS, SeriesPrior, build
from spark_anomaly.detectors.range import RangeConfig, RangeDetector
from spark_anomaly.series_runner import bind, run_series

from .resume_check import assert_resumes_identically

PRIOR = SeriesPrior(n=100, mean=5.0, m2=50.0, min=0.0, max=10.0)


def run(det, xs):
    return [det.process_one(x, i) for i, x in enumerate(xs)]


def test_registry_builds_it_with_the_prior():
    det = build("range", {"margin": 0.1}, PRIOR)
    assert isinstance(det, RangeDetector) and det.config.margin == 0.1
    v = det.process_one(5.0, 0)
    assert (v.lower, v.upper) == pytest.approx((-1.0, 11.0))


def test_inside_is_quiet_outside_is_scored_by_the_excess():
    v = run(RangeDetector(prior=PRIOR), [0.0, 10.0, 5.0, 15.0, -20.0])
    assert [x.is_anomaly for x in v] == [False, False, False, True, True]
    assert all(x.score == 0.0 for x in v[:3]) and v[0].reason == "ok"
    assert v[3].score == pytest.approx(1 - math.exp(-0.5)) and v[3].reason.startswith("above trained range")
    assert v[4].score == pytest.approx(1 - math.exp(-2.0)) and v[4].reason.startswith("below trained range")
    assert v[4].probability == v[4].score


def test_without_a_prior_the_warm_up_learns_the_range_then_freezes():
    det = RangeDetector(RangeConfig(warmup=4))
    v = run(det, [3.0, 1.0, 2.0, 5.0, 4.0, 9.0, 7.0])
    assert all(x.reason.startswith("warm-up") and x.score == 0.0 for x in v[:4])
    assert all(math.isnan(x.lower) for x in v[:4])
    assert (v[4].lower, v[4].upper) == (1.0, 5.0) and not v[4].is_anomaly
    assert v[5].is_anomaly and v[5].score == pytest.approx(1 - math.exp(-1.0))
    assert (v[6].lower, v[6].upper) == (1.0, 5.0)  # the excursion did not widen the range


def test_flat_training_range_uses_the_floor():
    flat = SeriesPrior(n=10, mean=2.0, m2=0.0, min=2.0, max=2.0)
    v = run(RangeDetector(RangeConfig(min_width=0.5), flat), [2.0, 2.2])
    assert not v[0].is_anomaly and v[1].is_anomaly and v[1].score == pytest.approx(1 - math.exp(-0.4))


def test_invalid_value_is_reported_not_learned():
    det = RangeDetector(RangeConfig(warmup=3))
    run(det, [1.0, 2.0])
    v = det.process_one(float("inf"), 0)
    assert v.reason == "invalid value" and not v.is_anomaly
    assert det.get_state()["seen"] == 2 and det.get_state()["hi"] == 2.0


def test_process_equals_process_one_and_state_round_trips():
    rng = np.random.default_rng(3)
    xs = rng.normal(0.0, 1.0, 300)
    xs[[50, 200]] = [9.0, -9.0]
    ts = np.arange(300) * 1000
    cfg = RangeConfig(warmup=40, margin=0.05)
    whole = RangeDetector(cfg).process(xs, ts)
    one = pd.DataFrame.from_records(run(RangeDetector(cfg), xs), columns=RESULT_COLUMNS)
    pd.testing.assert_frame_equal(whole, one)
    assert_resumes_identically(lambda: RangeDetector(cfg), xs, ts, (20,))  # cut inside the warm-up
    assert whole["is_anomaly"].iloc[50] and whole["is_anomaly"].iloc[200]


def test_bad_configuration_is_rejected():
    for bad in ({"margin": -0.1}, {"warmup": 0}, {"min_width": 0.0}):
        with pytest.raises(ValueError, match="range"):
            build("range", bad)


# -- calibrated(raw: excess) ------------------------------------------------------------------

CAL = {"detector": "range", "raw": "excess", "short_window": 5, "history": 500, "min_history": 50}


def test_calibrated_excess_flags_the_first_excursion_and_not_steady_readings():
    rng = np.random.default_rng(11)
    xs = rng.uniform(1.0, 9.0, 800)  # inside the trained [0, 10]
    xs[700] = 14.0
    out = build("calibrated", CAL, PRIOR).process(xs, np.arange(800))
    assert out["score"].iloc[:700].max() < 0.05  # excess 0 throughout: tail 0.5 at most
    assert not out["is_anomaly"].iloc[:700].any()
    assert out["score"].iloc[700] == 1.0 and out["is_anomaly"].iloc[700]


def test_calibrated_excess_is_zero_inside_the_band_unlike_band_mode():
    det = build("calibrated", CAL, PRIOR)
    band = build("calibrated", {**CAL, "raw": "band"}, PRIOR)
    xs = np.r_[np.full(100, 5.0), [9.0]]
    raws_excess = det._raws(xs, det.inner.process(xs, np.arange(101)))
    raws_band = band._raws(xs, band.inner.process(xs, np.arange(101)))
    assert raws_excess[-1] == 0.0 and raws_band[-1] == pytest.approx(0.8)
    out = np.array([12.5])  # 2.5 above a band of half-width 5: excess 0.5 half-widths
    assert det._raws(out, det.inner.process(out, np.array([0])))[0] == pytest.approx(0.5)


# name -> most alarms allowed on the 1,400 readings of plain noise (one per 200 readings at most)
NAMED = {
    "ensemble-range-normal-delta": 3,
    "ensemble-zscore-normal-delta": 3,
    "ensemble-range-normal-delta-novelty": 7,
    "ensemble-range-delta-novelty-knn": 7,
    "ensemble-record-delta-novelty-knn": 7,
    "recommended": 7,
}


@pytest.mark.parametrize("name", NAMED)
def test_named_configurations_honour_the_contract(name):
    with open(f"conf/detectors/{name}.yaml") as fh:
        spec = yaml.safe_load(fh)
    rng = np.random.default_rng(5)
    xs = rng.normal(10.0, 1.0, 1600)
    xs[1400:1450] += 8.0
    ts = np.arange(1600, dtype=np.int64) * 300_000
    # the trained model of a long healthy history: the range spans about +-4 sd
    prior = SeriesPrior(n=5000, mean=10.0, m2=5000.0, min=6.0, max=14.0)
    batch = build(spec["detector"], spec["params"], prior).process(xs, ts)
    first = build(spec["detector"], spec["params"], prior)
    head = first.process(xs[:700], ts[:700])
    second = build(spec["detector"], spec["params"], prior)
    second.set_state(pickle.loads(pickle.dumps(first.get_state())))
    tail = [second.process_one(float(x), int(t)) for x, t in zip(xs[700:], ts[700:], strict=True)]
    scores = np.r_[head["score"].to_numpy(), [v.score for v in tail]]
    np.testing.assert_array_equal(batch["score"].to_numpy(), scores)
    assert batch["is_anomaly"].iloc[1400:1410].any()  # the step is caught within 10 readings
    # on plain noise the tail calibration still alarms now and then, at most once per 200 readings
    assert batch["is_anomaly"].iloc[:1400].sum() <= NAMED[name]


def test_recommended_in_micro_batches_through_the_stream_driver_equals_one_run():
    """The streaming job calls run_series per micro-batch with the pickled state in between."""
    with open("conf/detectors/recommended.yaml") as fh:
        spec = yaml.safe_load(fh)
    dets = bind([DetectorSpec(spec["detector"], spec["params"])])
    rng = np.random.default_rng(9)
    xs = rng.normal(3.0, 0.5, 700)
    xs[300:350] = 3.0  # a stuck sensor across seven batches: flatline's run lives in the state
    xs[600] = 12.0
    ts = np.arange(700, dtype=np.int64) * 60_000
    prior = SeriesPrior(n=100, mean=3.0, m2=25.0, min=1.0, max=5.0)
    whole, _ = run_series(dets, xs, ts, None, prior)
    state, parts = None, []
    for lo in range(0, 700, 7):
        res, state = run_series(dets, xs[lo : lo + 7], ts[lo : lo + 7], state, prior)
        state = pickle.loads(pickle.dumps(state))
        parts.append(res[0][1])
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole[0][1])
    assert whole[0][1]["is_anomaly"].iloc[600]
    stuck = whole[0][1].iloc[300:350]
    assert stuck["is_anomaly"].tolist() == [i == 37 for i in range(50)]  # run 38 > 1.25 x 30
    assert "flat for 38 readings" in stuck["reason"].iloc[37]
