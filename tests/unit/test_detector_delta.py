"""delta detector: the change since an earlier reading, scored against past changes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from spark_anomaly.detectors import RESULT_COLUMNS, build
from spark_anomaly.detectors.delta import DeltaConfig, DeltaDetector

from .resume_check import assert_resumes_identically


def run(det, xs):
    return [det.process_one(x, i) for i, x in enumerate(xs)]


def noisy(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 50.0 + rng.normal(0.0, 1.0, n)


def test_registry_builds_it():
    det = build("delta", {"lag": 3})
    assert isinstance(det, DeltaDetector) and det.config.lag == 3


def test_warm_up_is_respected():
    det = DeltaDetector(DeltaConfig(min_history=5))
    v = run(det, [1.0, 2.0, 3.0, 4.0, 5.0, 1000.0, 7.0])
    # first reading has nothing to difference against; then 5 changes are learned before scoring
    assert v[0].reason.startswith("warm-up: no earlier")
    assert all(x.reason.startswith("warm-up") and x.score == 0.0 for x in v[:6])
    assert not any(x.is_anomaly for x in v[:6]) and all(math.isnan(x.lower) for x in v[:6])
    assert v[6].reason.startswith("change z=")


def test_by_hand_band_and_z():
    det = DeltaDetector(DeltaConfig(min_history=3, k=2.0))
    v = run(det, [0.0, 1.0, 3.0, 6.0, 16.0])
    # changes 1, 2, 3: mean 2, sd 1; next expected 6 + 2 = 8, band 8 +- 2
    assert v[4].lower == pytest.approx(6.0) and v[4].upper == pytest.approx(10.0)
    z = (10.0 - 2.0) / 1.0
    assert v[4].is_anomaly and v[4].score == pytest.approx(math.erf(z / math.sqrt(2)))


def test_spike_is_flagged_and_steady_noise_is_not():
    xs = noisy(600)
    xs[500] += 15.0  # a jump of 15 sd of the noise (about 10 sd of the differences)
    out = DeltaDetector(DeltaConfig(k=5.0)).process(xs, np.arange(len(xs)))
    assert bool(out["is_anomaly"].iloc[500])
    assert out["score"].iloc[500] > 0.999999
    steady = out.drop(index=[500, 501])  # 501 is the way back down, also a big change
    assert steady["is_anomaly"].iloc[100:].sum() == 0  # once the sd of the changes is learned


def test_stuck_series_uses_the_floor_and_flags_the_first_move():
    v = run(DeltaDetector(DeltaConfig(min_history=3)), [5.0] * 10 + [5.1])
    assert all(not x.is_anomaly for x in v[:10])
    assert v[10].is_anomaly and np.isfinite(v[10].lower)


def test_lag_compares_with_the_reading_lag_steps_back():
    period = [0.0, 10.0, 20.0, 10.0]
    xs = period * 20 + [0.0, 10.0, 50.0]
    out = DeltaDetector(DeltaConfig(lag=4)).process(np.array(xs), np.arange(len(xs)))
    assert not out["is_anomaly"].iloc[:-1].any()  # the repeating pattern changes nothing at lag 4
    assert out["is_anomaly"].iloc[-1]


def test_invalid_value_is_reported_and_not_learned():
    det = DeltaDetector(DeltaConfig(min_history=3))
    run(det, [1.0, 2.0, 3.0, 4.0, 5.0])
    before = det.get_state()
    v = det.process_one(float("nan"), 0)
    assert v.reason == "invalid value" and not v.is_anomaly and v.score == 0.0
    after = det.get_state()
    assert after["n"] == before["n"] and np.array_equal(after["recent"], before["recent"])


def test_process_equals_process_one_and_state_round_trips():
    xs = noisy(400, seed=7)
    xs[300] -= 12.0
    ts = np.arange(len(xs)) * 60_000
    cfg = DeltaConfig(lag=2, min_history=10)
    whole = DeltaDetector(cfg).process(xs, ts)
    one = pd.DataFrame.from_records(run(DeltaDetector(cfg), xs), columns=RESULT_COLUMNS)
    pd.testing.assert_frame_equal(whole, one)
    rows = DeltaDetector(cfg).process_rows(xs, ts)
    pd.testing.assert_frame_equal(pd.DataFrame.from_records(rows, columns=RESULT_COLUMNS), one)
    assert_resumes_identically(lambda: DeltaDetector(cfg), xs, ts, (250,))
    assert whole["is_anomaly"].iloc[300]


def test_bad_configuration_is_rejected():
    for bad in ({"lag": 0}, {"k": 0.0}, {"min_history": 1}, {"sd_floor": 0.0}):
        with pytest.raises(ValueError, match="delta"):
            build("delta", bad)
    with pytest.raises(ValueError, match="no parameter"):
        build("delta", {"window": 3})
