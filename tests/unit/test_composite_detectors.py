"""calibrated, ensemble and suppression: the Detector contract (batch == one-by-one, state)."""

import numpy as np
import pytest

from spark_anomaly.detectors import registry
from spark_anomaly.detectors.base import FEW_READINGS

RNG = np.random.default_rng(7)
X = RNG.normal(10.0, 1.0, 1200)
X[900] += 15.0
TS = np.arange(1200, dtype=np.int64) * 60_000

CAL = {"detector": "normal", "raw": "band", "short_window": 1, "history": 500, "min_history": 50}
# a short mean over 30 raws, a history that wraps twice, and raws the inner core cannot give (NaN)
CAL30 = {"detector": "ema", "raw": "band", "short_window": 30, "history": 300, "min_history": 40}
CONFIGS = {
    "calibrated": ("calibrated", CAL),
    "calibrated-30": ("calibrated", CAL30),
    "ensemble": (
        "ensemble",
        {
            "members": [
                {"detector": "calibrated", "params": CAL},
                {"detector": "robust", "params": {"window": 50}},
            ]
        },
    ),
    "ensemble-calibrated": (
        "ensemble",
        {"members": [{"detector": "calibrated", "params": CAL30}, {"detector": "calibrated", "params": CAL}]},
    ),
    "ensemble-mean": (
        "ensemble",
        {"members": [{"detector": "calibrated", "params": CAL30}, "normal"], "combine": "mean"},
    ),
    "suppression": ("suppression", {"detector": "calibrated", "params": CAL, "threshold": 0.5, "rows": 100}),
    "suppression-ms": (
        "suppression",
        {
            "detector": "calibrated",
            "params": CAL,
            "threshold": 0.5,
            "rows": 5,
            "ms": 40 * 60_000,
            "alarm_score": 1.0,
        },
    ),
}
WITH_GAPS = X.copy()
WITH_GAPS[[3, 150, 151, 699, 700, 1000]] = np.nan
# spikes at the edges of the silences: 100 / 101 rows apart (rows=100), 39 / 40 readings apart (ms)
SPIKY = X.copy()
SPIKY[[300, 339, 379, 419, 458, 500, 600, 701, 800, 1000, 1100]] += 9.0


def _columns(frame) -> dict:
    return {c: frame[c].to_numpy() for c in frame.columns}


@pytest.mark.parametrize("key", sorted(CONFIGS))
@pytest.mark.parametrize("x", [X, WITH_GAPS, SPIKY], ids=["plain", "gaps", "spiky"])
def test_batch_equals_one_by_one_and_chunks_with_state_round_trips(key, x):
    """Every column of ``process`` over the whole series equals reading-by-reading
    ``process_one`` and ``process`` in uneven chunks, each chunk after a state round trip."""
    name, params = CONFIGS[key]
    batch = registry.build(name, params).process(x, TS)
    one = registry.build(name, params)
    rows = [one.process_one(float(v), int(t)) for v, t in zip(x, TS, strict=True)]
    chunks, core, at = [], registry.build(name, params), 0
    for size in (1, 37, 300, 2, 500, 360):
        chunks.append(core.process(x[at : at + size], TS[at : at + size]))
        state, core = core.get_state(), registry.build(name, params)
        core.set_state(state)
        at += size
    import pandas as pd

    chunked = pd.concat(chunks, ignore_index=True)
    for col, want in _columns(batch).items():
        np.testing.assert_array_equal(
            np.array([getattr(r, col) for r in rows]), want, err_msg=f"one by one: {col}"
        )
        np.testing.assert_array_equal(chunked[col].to_numpy(), want, err_msg=f"chunked: {col}")
    assert list(batch.dtypes.astype(str)) == ["float64", "float64", "float64", "float64", "bool", "object"]
    assert batch["score"].between(0, 1).all() and (batch["score"] > 0).any()


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


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_a_few_readings_step_one_by_one_with_the_column_path_s_numbers(key):
    """A live micro-batch brings a series fewer than FEW_READINGS readings: process_columns then
    steps them through process_one. The column path (``_columns``) gives the same on so few."""
    name, params = CONFIGS[key]
    warm = registry.build(name, params)
    warm.process(SPIKY[:600], TS[:600])
    state = warm.get_state()
    at = 600
    for size in range(1, FEW_READINGS + 2):
        few, cols = registry.build(name, params), registry.build(name, params)
        few.set_state(state)
        cols.set_state(state)
        a = few.process_columns(SPIKY[at : at + size], TS[at : at + size])
        b = cols._columns(SPIKY[at : at + size], TS[at : at + size])
        for col in a:
            np.testing.assert_array_equal(a[col], b[col], err_msg=f"{size} readings: {col}")
        assert a["reason"].dtype == b["reason"].dtype == object
        state = few.get_state()
        at += size


def test_calibrated_state_holds_its_history_oldest_first_and_restores_it():
    """The saved history is the last ``history`` raws oldest first (the layout checkpoints hold),
    after it wrapped more than twice; a core restored from it carries on with the same numbers."""
    from spark_anomaly.detectors._composite import band_deviation

    params = {**CAL, "history": 450}
    inner = registry.build("normal").process(X, TS)
    raws = band_deviation(X, inner["lower"].to_numpy(), inner["upper"].to_numpy(), 1e3)
    core = registry.build("calibrated", params)
    core.process(X[:1100], TS[:1100])
    state = core.get_state()
    np.testing.assert_array_equal(state["long"], raws[1100 - 450 : 1100])  # short_window 1: the raws
    assert state["sum"] == pytest.approx(raws[650:1100].sum())
    again = registry.build("calibrated", params)
    again.set_state({**state, "long": list(state["long"])})  # any sequence, as older states held
    want = core.process(X[1100:], TS[1100:])
    got = again.process(X[1100:], TS[1100:])
    np.testing.assert_array_equal(got["score"].to_numpy(), want["score"].to_numpy())


def test_a_mostly_zero_history_is_saved_sparse_and_restores_to_the_same_numbers():
    from spark_anomaly.detectors.state_arrays import pack_sparse, unpack_sparse

    params = {"detector": "record", "raw": "excess", "short_window": 30, "history": 300, "min_history": 40}
    x = X.copy()
    x[[700, 1000]] += 30.0  # two excursions beyond every earlier reading; otherwise inside
    core = registry.build("calibrated", params)
    core.process(x[:1050], TS[:1050])
    state = core.get_state()
    saved = state["long"]
    assert isinstance(saved, dict) and 0 < len(saved["at"]) < 75  # the means after row 1000
    dense = unpack_sparse(saved)
    assert len(dense) == 300 and np.count_nonzero(dense) == len(saved["at"])
    for restored in ({**state}, {**state, "long": dense}):  # the sparse layout and the dense one
        again = registry.build("calibrated", params)
        again.set_state(restored)
        np.testing.assert_array_equal(
            again.process(x[1050:], TS[1050:])["score"].to_numpy(),
            registry.build("calibrated", params).process(x, TS)["score"].to_numpy()[1050:],
        )
    signed = np.array([0.0, -0.0, 2.5, 0.0, 0.0, 0.0, 0.0, 0.0])
    back = unpack_sparse(pack_sparse(signed))
    np.testing.assert_array_equal(back, signed)
    assert np.signbit(back[1]) and not np.signbit(back[0])
    assert isinstance(pack_sparse(np.arange(1.0, 9.0)), np.ndarray)  # dense stays dense
