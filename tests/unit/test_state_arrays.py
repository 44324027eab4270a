"""state_arrays: the smaller layouts of state arrays restore bit for bit, or are not used."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from spark_anomaly.detectors.state_arrays import pack_decimals, unpack_decimals


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype == np.float64 and np.array_equal(a.view(np.int64), b.view(np.int64))


RNG = np.random.default_rng(3)


@pytest.mark.parametrize(
    ("values", "decimals", "dtype"),
    [
        (np.round(RNG.normal(21.0, 4.0, 6000), 2), 2, np.int16),  # a temperature as "21.03"
        (np.round(RNG.normal(20_000.0, 50.0, 500), 1), 1, np.int32),  # too large for int16 at d=1
        (np.round(RNG.uniform(1, 900, 500)), 0, np.int16),  # whole numbers
        # the newest readings are whole numbers, older ones carry 3 decimals: the whole run decides
        (np.r_[np.round(RNG.uniform(1, 9, 100), 3), np.round(RNG.uniform(1, 9, 400))], 3, np.int16),
    ],
)
def test_short_decimals_pack_as_integers_and_restore_bit_for_bit(values, decimals, dtype):
    saved = pack_decimals(values)
    assert saved["decimals"] == decimals and saved["ints"].dtype == dtype
    assert same_bits(unpack_decimals(pickle.loads(pickle.dumps(saved))), values)


@pytest.mark.parametrize(
    "values",
    [
        RNG.normal(size=300),  # continuous
        np.r_[np.round(RNG.normal(size=50), 2), [-0.0]],  # -0.0 has no integer
        np.round(RNG.normal(size=50), 7),  # more than six decimals
        np.array([3.0e9, 1.5]),  # beyond int32
        np.zeros(0),
    ],
)
def test_what_would_not_restore_bit_for_bit_stays_float64(values):
    saved = pack_decimals(values)
    assert isinstance(saved, np.ndarray)
    assert same_bits(unpack_decimals(saved), np.asarray(values, dtype=float))


def test_earlier_layouts_restore_as_they_are():
    assert same_bits(unpack_decimals([1.5, 2.25]), np.array([1.5, 2.25]))
