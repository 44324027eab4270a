import numpy as np
import pytest

from spark_anomaly.moments import Moments, merge_arrays


def test_welford_matches_numpy_on_large_offset():
    rng = np.random.default_rng(0)
    x = 1e9 + rng.normal(0, 1, 10_000)  # a sum of squares would lose all precision here
    m = Moments()
    for v in x:
        m = m.add(float(v))
    assert m.n == x.size
    assert m.mean == pytest.approx(x.mean(), rel=1e-13)
    assert m.variance == pytest.approx(x.var(ddof=1), rel=1e-6)


def test_merge_is_associative_and_equals_whole():
    rng = np.random.default_rng(1)
    parts = [rng.normal(5, 3, n) for n in (10, 1, 250, 37)]
    whole = Moments.of(np.concatenate(parts))
    ms = [Moments.of(p) for p in parts]
    left = ms[0].merge(ms[1]).merge(ms[2]).merge(ms[3])
    right = ms[0].merge(ms[1].merge(ms[2].merge(ms[3])))
    for got in (left, right):
        assert got.n == whole.n
        assert got.mean == pytest.approx(whole.mean, rel=1e-12)
        assert got.m2 == pytest.approx(whole.m2, rel=1e-12)


def test_merge_with_empty_and_short_history():
    a = Moments.of(np.array([3.0]))
    assert a.merge(Moments()) == a and Moments().merge(a) == a
    assert a.variance is None and a.std is None  # n < 2: "insufficient history"


def test_merge_arrays_matches_scalar_merge():
    rng = np.random.default_rng(2)
    a = [Moments.of(rng.normal(0, 1, n)) for n in (0, 5, 7)]
    b = [Moments.of(rng.normal(2, 1, n)) for n in (4, 0, 9)]
    n, mean, m2 = merge_arrays(
        [x.n for x in a],
        [x.mean for x in a],
        [x.m2 for x in a],
        [x.n for x in b],
        [x.mean for x in b],
        [x.m2 for x in b],
    )
    for i in range(3):
        want = a[i].merge(b[i])
        assert n[i] == want.n
        assert mean[i] == pytest.approx(want.mean)
        assert m2[i] == pytest.approx(want.m2)
