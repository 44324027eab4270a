"""calibrated, ensemble and suppression: the Detector contract (batch == one-by-one, state)."""

import numpy as np
import pytest

from spark_anomaly.detectors import registry

RNG = np.random.default_rng(7)
X = RNG.normal(10.0, 1.0, 1200)
X[900] += 15.0
TS = np.arange(1200, dtype=np.int64) * 60_000

CAL = {"detector": "normal", "raw": "band", "short_window": 1, "history": 500, "min_history": 50}
CONFIGS = {
    "calibrated": CAL,
    "ensemble": {
        "members": [
            {"detector": "calibrated", "params": CAL},
            {"detector": "robust", "params": {"window": 50}},
        ]
    },
    "suppression": {"detector": "calibrated", "params": CAL, "threshold": 0.5, "rows": 100},
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_batch_equals_one_by_one_with_a_state_round_trip(name):
    batch = registry.build(name, CONFIGS[name]).process(X, TS)
    first = registry.build(name, CONFIGS[name])
    head = first.process(X[:700], TS[:700])
    second = registry.build(name, CONFIGS[name])
    second.set_state(first.get_state())
    tail = [second.process_one(float(x), int(t)) for x, t in zip(X[700:], TS[700:], strict=True)]
    scores = np.r_[head["score"].to_numpy(), [v.score for v in tail]]
    np.testing.assert_array_equal(batch["score"].to_numpy(), scores)
    assert batch["score"].between(0, 1).all()


def test_calibrated_scores_the_spike_high_and_ordinary_values_low():
    out = registry.build("calibrated", CAL).process(X, TS)
    assert out["score"].iloc[900] > 0.5
    assert out["score"].iloc[:50].eq(0).all()  # no score before min_history
    assert (out["score"].iloc[100:890] > 0.5).sum() <= 2


def test_suppression_keeps_one_alarm_per_period():
    x = np.full(600, 1.0) + RNG.normal(0, 0.01, 600)
    x[[300, 320, 450]] = 50.0
    inner = {"detector": "normal", "params": {"unknown_policy": "ignore"}}
    out = registry.build("suppression", {**inner, "threshold": 0.999, "rows": 100}).process(x, np.arange(600))
    assert out["score"].iloc[0] == 0 and out["score"].iloc[320] == 0
    alarms = np.flatnonzero(out["is_anomaly"].to_numpy())
    assert list(alarms) == [300, 450]
    assert out["reason"].iloc[320].startswith("suppressed") and out["score"].iloc[320] == 0


def test_suppression_alarm_score_reports_alarms_at_that_score():
    cfg = {"detector": "calibrated", "params": CAL, "threshold": 0.5, "rows": 100}
    plain = registry.build("suppression", cfg).process(X, TS)
    fixed = registry.build("suppression", {**cfg, "alarm_score": 0.75}).process(X, TS)
    alarms = plain["is_anomaly"].to_numpy()
    assert alarms.any() and (fixed["is_anomaly"].to_numpy() == alarms).all()
    assert (plain["score"].to_numpy()[alarms] > 0.75).all()  # the inner score (the spike: 1)
    assert (fixed["score"].to_numpy()[alarms] == 0.75).all()
    np.testing.assert_array_equal(fixed["score"].to_numpy()[~alarms], plain["score"].to_numpy()[~alarms])
    with pytest.raises(ValueError):
        registry.build("suppression", {**cfg, "alarm_score": 1.5})


def test_ensemble_max_and_mean():
    members = [
        {"detector": "calibrated", "params": CAL},
        {"detector": "calibrated", "params": {**CAL, "short_window": 5}},
    ]
    parts = [registry.build("calibrated", m["params"]).process(X, TS)["score"].to_numpy() for m in members]
    mx = registry.build("ensemble", {"members": members, "combine": "max"}).process(X, TS)["score"].to_numpy()
    mean = (
        registry.build("ensemble", {"members": members, "combine": "mean"}).process(X, TS)["score"].to_numpy()
    )
    np.testing.assert_allclose(mx, np.maximum(*parts))
    np.testing.assert_allclose(mean, (parts[0] + parts[1]) / 2)


def test_bad_configuration_is_rejected():
    with pytest.raises(ValueError):
        registry.build("ensemble", {"members": []})
    with pytest.raises(ValueError):
        registry.build("calibrated", {"detector": "normal", "raw": "nope"})
    with pytest.raises(ValueError):
        registry.build("suppression", {"detector": "normal", "params": {"bogus": 1}})
