"""flatline detector (a run of identical readings longer than the series has shown)."""

from __future__ import annotations

import json
import math
import pickle
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from spark_anomaly.detectors import RESULT_COLUMNS, build
from spark_anomaly.detectors.flatline import FlatlineConfig, FlatlineDetector
from spark_anomaly.loadgen import LoadConfig, generate

from .resume_check import assert_resumes_identically


def flags(det: FlatlineDetector, xs: np.ndarray) -> np.ndarray:
    return det.process(np.asarray(xs, float), np.arange(len(xs)))["is_anomaly"].to_numpy()


def test_registry_builds_it_with_its_defaults():
    det = build("flatline", {"factor": 1.5, "min_run": 10})
    assert isinstance(det, FlatlineDetector) and det.config == FlatlineConfig(1.5, 10, 0.0, True)
    assert FlatlineDetector().config == FlatlineConfig(1.25, 30, 0.0, True)


def test_a_stuck_noisy_sensor_alarms_once_after_min_run_and_normal_noise_does_not():
    rng = np.random.default_rng(0)
    xs = rng.normal(20.0, 1.0, 2000)
    xs[1200:1500] = xs[1199]  # stuck at its last reading for 300 readings
    out = FlatlineDetector(FlatlineConfig(factor=1.0, min_run=30)).process(xs, np.arange(2000))
    assert not out["is_anomaly"].iloc[:1200].any()
    # the run counts the last good reading too: 1199..1229 is 31 readings, the first > 30
    assert out["is_anomaly"].to_numpy().nonzero()[0].tolist() == [1229]
    assert out["score"].iloc[1229] == 1.0 and out["probability"].iloc[1229] == 1.0
    assert out["reason"].iloc[1229] == "flat for 31 readings (longest earlier run 1)"
    assert out["reason"].iloc[1400].startswith("still flat") and out["score"].iloc[1400] == 0.0
    assert out["lower"].isna().all() and out["upper"].isna().all()


def test_an_idle_count_series_alarms_only_on_an_idle_spell_longer_than_every_earlier_one():
    # bursts separated by idle spells of zeros: 100, 150, 120 readings, then 300
    rng = np.random.default_rng(1)
    parts = []
    for idle in (100, 150, 120, 300):
        parts += [rng.uniform(1.0, 9.0, 20), np.zeros(idle)]
    xs = np.concatenate(parts)
    hits = flags(FlatlineDetector(FlatlineConfig(factor=1.25, min_run=30)), xs).nonzero()[0]
    # first spell: its 38th zero passes 1.25·min_run; second: its 126th passes 1.25·100;
    # third (120) never passes 1.25·150 = 187.5; fourth: its 188th zero does
    starts = np.cumsum([0] + [20 + n for n in (100, 150, 120)]) + 20
    assert hits.tolist() == [starts[0] + 37, starts[1] + 125, starts[3] + 187]


def test_tolerance_counts_near_identical_readings_as_a_run():
    xs = np.r_[np.arange(10.0), 5.0 + 1e-4 * (np.arange(40) % 2)]  # a dithering stuck value
    assert not flags(FlatlineDetector(FlatlineConfig(factor=1.0, min_run=30)), xs).any()
    tol = flags(FlatlineDetector(FlatlineConfig(factor=1.0, min_run=30, tolerance=1e-3)), xs)
    assert tol.nonzero()[0].tolist() == [10 + 30]  # the run starts at row 10 (9.0 before it)


def test_invalid_values_neither_break_nor_extend_a_run():
    det = FlatlineDetector(FlatlineConfig(factor=1.0, min_run=3))
    v = [det.process_one(x, i) for i, x in enumerate([1.0, 2.0, 2.0, math.nan, 2.0, math.inf, 2.0])]
    assert v[3].reason == "invalid value" and v[5].reason == "invalid value"
    assert [x.is_anomaly for x in v] == [False, False, False, False, False, False, True]


def test_process_equals_process_one_and_state_round_trips():
    rng = np.random.default_rng(3)
    xs = np.round(rng.normal(0.0, 1.0, 600), 1)  # rounded: short runs of repeats occur
    xs[100:160] = 0.5
    xs[300:400] = -0.2
    xs[250] = np.nan
    ts = np.arange(600) * 1000
    cfg = FlatlineConfig(factor=1.25, min_run=20)
    whole = FlatlineDetector(cfg).process(xs, ts)
    det = FlatlineDetector(cfg)
    one = pd.DataFrame.from_records(
        [det.process_one(x, t) for x, t in zip(xs, ts, strict=True)], columns=RESULT_COLUMNS
    )
    pd.testing.assert_frame_equal(whole, one)
    rows = FlatlineDetector(cfg).process_rows(xs, ts)
    pd.testing.assert_frame_equal(pd.DataFrame.from_records(rows, columns=RESULT_COLUMNS), one)
    assert whole["is_anomaly"].to_numpy().nonzero()[0].tolist() == [125, 375]  # 60 > 1.25·20; 100 > 1.25·60
    # cuts before any run, inside a flat spell before and after its alarm, and late
    assert_resumes_identically(lambda: FlatlineDetector(cfg), xs, ts, (0, 1, 110, 126, 250, 380, 599))
    each = FlatlineConfig(factor=1.25, min_run=20, learn_alarmed=False)
    assert_resumes_identically(lambda: FlatlineDetector(each), xs, ts, (126, 160, 375))
    state = FlatlineDetector(cfg).get_state()
    assert all(isinstance(v, (int, float, bool)) for v in state.values())  # plain values
    assert len(pickle.dumps(det.get_state())) < 120


def test_bad_configuration_is_rejected():
    bads = (
        {"factor": 0.5},
        {"factor": float("nan")},
        {"factor": True},
        {"min_run": 1},
        {"min_run": 2.5},
        {"tolerance": -1.0},
        {"tolerance": float("inf")},
        {"learn_alarmed": 1},
    )
    for bad in bads:
        with pytest.raises(ValueError, match="flatline"):
            build("flatline", bad)
    with pytest.raises(ValueError, match="flatline"):
        build("flatline", {"factors": 1.0})


def test_in_an_ensemble_the_onset_of_a_flat_spell_alarms_where_calibrated_members_are_quiet():
    rng = np.random.default_rng(5)
    xs = rng.normal(10.0, 1.0, 1500)
    xs[1000:1300] = 10.0  # stuck at an ordinary level: nothing unusual in value or change
    member = {"detector": "calibrated", "params": {"detector": "delta", "raw": "band", "short_window": 30}}
    ens = {"combine": "max", "members": [member, {"detector": "flatline", "params": {"min_run": 30}}]}
    out = build("ensemble", ens).process(xs, np.arange(1500))
    alone = build("ensemble", {**ens, "members": [member]}).process(xs, np.arange(1500))
    assert out["score"].iloc[1000 + 37] == 1.0  # 38 readings > 1.25·30
    assert alone["score"].iloc[1000:1300].max() < 0.3


def test_with_learn_alarmed_off_every_stuck_spell_alarms_not_only_the_longest_so_far():
    rng = np.random.default_rng(2)
    xs = rng.normal(0.0, 1.0, 1000)
    for start, n in ((200, 60), (500, 40), (800, 40)):
        xs[start : start + n] = xs[start]
    keep = flags(FlatlineDetector(FlatlineConfig(min_run=10)), xs).nonzero()[0]
    each = flags(FlatlineDetector(FlatlineConfig(min_run=10, learn_alarmed=False)), xs).nonzero()[0]
    assert keep.tolist() == [212]  # the 60-run is then the reference: 40 < 1.25·60
    assert each.tolist() == [212, 512, 812]  # 13 > 1.25·10 each time


def test_it_finds_the_load_generators_stuck_sensors_and_nothing_else():
    cfg = LoadConfig(seed=3, sensors=4, anomaly_rate=0.004, anomaly_kinds=("stuck",))
    vals, _, truth = generate(cfg, 3000)
    series: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for v in vals:
        d = json.loads(v)
        for m in ("temp", "hum"):
            series[(d["id"], m)].append((d["ts"], d[m]))
    spells = {(t["sensor_id"], t["metric"], t["start_ts"]): set(t["ts"]) for t in truth if t["n"] >= 11}
    assert len(spells) >= 20
    caught, other = set(), 0
    for (sid, metric), rows in series.items():
        ts = np.array([r[0] for r in rows])
        xs = np.array([r[1] for r in rows], dtype=float)
        det = FlatlineDetector(FlatlineConfig(min_run=8, learn_alarmed=False))
        for t in ts[det.process(xs, ts)["is_anomaly"].to_numpy()]:
            hit = [k for k, span in spells.items() if k[:2] == (sid, metric) and t in span]
            caught.update(hit)
            other += not hit
    assert caught == set(spells) and other == 0  # every spell of > 10 readings, no other alarm
