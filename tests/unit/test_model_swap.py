"""A new model version reaches series that already have state: cores whose figures are the
model's alone (zscore, range, record's start, knn's scale, and composites of them) score against
it from the next reading on; cores that learned on top of the old figures (cad, novelty) keep them.
The same holds whether a batch restores the cores from state or finds them live."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spark_anomaly.config import DetectorSpec
from spark_anomaly.detectors import SeriesPrior
from spark_anomaly.series_runner import PRIOR_VERSION, bind, run_batch

V1 = SeriesPrior(500, 20.0, 499.0, 15.0, 25.0, 1)
V2 = SeriesPrior(900, 30.0, 899.0, 25.0, 35.0, 2)  # trained on hotter history: 30 is inside


def _two_batches(spec: DetectorSpec, first, second, *, live: bool):
    """Batch 1 (readings about 20) with prior ``first``, then batch 2 (about 30) with ``second``;
    the second batch's verdict columns and states. ``live``: batch 2 gets what the stream's driver
    hands over for cores it kept, those cores and the version they follow, not their state."""
    det = bind([spec])
    rng = np.random.default_rng(3)
    one = 20 + rng.normal(0, 1, 200)
    two = 30 + rng.normal(0, 0.2, 50)
    _, states, cores = run_batch(det, one, np.arange(200) * 1000, np.array([0, 200]), [None], [first])
    cols, states2, _ = run_batch(
        det,
        two,
        (200 + np.arange(50)) * 1000,
        np.array([0, 50]),
        [{PRIOR_VERSION: states[0][PRIOR_VERSION]}] if live else states,
        [second],
        cores if live else None,
    )
    return cols[det[0].tag], states2[0]


@pytest.mark.parametrize("live", [False, True])
def test_range_scores_against_the_new_version_once_it_arrives(live):
    same, _ = _two_batches(DetectorSpec("range", {}), V1, V1, live=live)
    assert same["is_anomaly"].all()  # 30 is above v1's [15, 25]
    swapped, state = _two_batches(DetectorSpec("range", {}), V1, V2, live=live)
    assert not swapped["is_anomaly"].any()
    assert (swapped["lower"] == 25.0).all() and (swapped["upper"] == 35.0).all()
    assert state[PRIOR_VERSION] == 2


@pytest.mark.parametrize("live", [False, True])
def test_zscore_band_follows_the_new_version(live):
    swapped, _ = _two_batches(DetectorSpec("zscore", {}), V1, V2, live=live)
    same, _ = _two_batches(DetectorSpec("zscore", {}), V1, V1, live=live)
    assert same["is_anomaly"].all() and not swapped["is_anomaly"].any()
    assert np.allclose(swapped["lower"] + swapped["upper"], 2 * 30.0)


def test_record_takes_the_new_range_and_keeps_the_records_since():
    _, state = _two_batches(DetectorSpec("record", {}), V1, V2, live=False)
    assert (state["record"]["lo"], state["record"]["hi"]) == (25.0, 35.0)
    assert state["record"]["rec_lo"] < 20 < state["record"]["rec_hi"]  # batch 1's readings stay


def test_a_wrapped_range_passes_the_new_version_through():
    spec = DetectorSpec("calibrated", {"detector": "range", "raw": "excess"})
    _, state = _two_batches(spec, V1, V2, live=True)
    assert (state["calibrated"]["inner"]["lo"], state["calibrated"]["inner"]["hi"]) == (25.0, 35.0)


@pytest.mark.parametrize("name", ["cad", "novelty"])
def test_cores_that_learned_on_the_old_figures_keep_them(name):
    """A swap would put their learned contexts / pattern counts on another scale."""
    spec = DetectorSpec(name, {})
    same, state_same = _two_batches(spec, V1, V1, live=False)
    swapped, state_swapped = _two_batches(spec, V1, V2, live=False)
    for col in ("score", "probability"):
        np.testing.assert_array_equal(swapped[col], same[col])
    assert state_swapped[PRIOR_VERSION] == 2 and state_same[PRIOR_VERSION] == 1


def test_a_series_the_old_version_did_not_know_takes_the_new_one():
    """No prior at first (range learns its own warm-up), then a version that knows the series."""
    swapped, state = _two_batches(DetectorSpec("range", {}), None, V2, live=False)
    assert not any(r.startswith("warm-up") for r in swapped["reason"])
    assert (state["range"]["lo"], state["range"]["hi"]) == (25.0, 35.0)
    kept, _ = _two_batches(DetectorSpec("range", {}), None, None, live=False)
    assert all(r.startswith("warm-up") for r in kept["reason"])


def test_a_series_the_new_version_drops_keeps_its_cores():
    dropped, state = _two_batches(DetectorSpec("range", {}), V1, None, live=False)
    assert dropped["is_anomaly"].all() and (dropped["upper"] == 25.0).all()
    assert state[PRIOR_VERSION] is None


@pytest.mark.parametrize("first", [V1, None], ids=["v1", "no-model"])
@pytest.mark.parametrize("live", [True, False])
def test_the_stream_driver_passes_a_new_version_to_live_and_restored_cores(live, first):
    """Through the bucket function the stream runs: the second batch finds the series' cores live
    in this worker (or, with the cache emptied, restores them from the bucket's row); the first
    batch had version 1, or no model at all (range then learns its own warm-up)."""
    from spark_anomaly import stateful

    from .test_stateful_buckets import FakeState

    fn = stateful.make_state_fn(bind([DetectorSpec("range", {})]), 3_600_000, 1)
    st = FakeState()

    def batch(values, prior, offset0):
        n = len(values)
        pdf = pd.DataFrame(
            {
                "sensor_id": ["s0"] * n,
                "metric": ["temp"] * n,
                "ts": (offset0 + np.arange(n)) * 1000,
                "value": values,
                "source_partition": 0,
                "source_offset": offset0 + np.arange(n),
                **{
                    c: np.nan if prior is None else getattr(prior, c)
                    for c in ("n", "mean", "m2", "min", "max")
                },
                "model_version": None if prior is None else prior.model_version,
            }
        )
        st.now += 1000
        return pd.concat(list(fn((0,), iter([pdf]), st)), ignore_index=True)

    got = batch(np.full(5, 30.0), first, 0)
    if first is None:
        assert got.reason.str.startswith("warm-up").all() and got.model_version.isna().all()
    else:
        assert got.is_anomaly.all() and set(got.model_version) == {1}
    if not live:
        stateful._LIVE.clear()
    second = batch(np.full(5, 30.0), V2, 5)
    assert set(second.model_version) == {2}
    assert not second.is_anomaly.any() and set(second.upper) == {35.0}
