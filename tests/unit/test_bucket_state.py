"""A bucket's state row: columns of its series, compressed; rows of the older layouts still load,
series expire by their last-seen time, and new states land in place or are appended."""

from __future__ import annotations

import pickle

import pytest

from spark_anomaly.bucket_state import BucketMismatch, BucketState


def _blob(i: int) -> bytes:
    return pickle.dumps({"range": {"lo": i * 0.01, "hi": 30.0}})


def _entries(n: int, versions: bool = True) -> dict:
    """Series s0..s{n-1} (temp and hum), s{i} last seen at 1,000 + i, following version 7."""
    return {
        (f"s{i}", m): [1_000 + i, _blob(i), *([7] if versions else [])]
        for i in range(n)
        for m in ("temp", "hum")
    }


def test_a_row_is_compressed_and_decodes_to_the_same_entries():
    series = _entries(2_000)
    row = BucketState.from_entries(series, 4, b"t").encode()
    plain = pickle.dumps({"version": 1, "buckets": 4, "token": b"t", "series": series})
    assert len(row) * 4 < len(plain)
    got = BucketState.decode(row, 4)
    assert got.entries() == series and got.token == b"t"
    with pytest.raises(BucketMismatch, match="state_buckets is 8 .* written with 4"):
        BucketState.decode(row, 8)


def test_rows_of_the_older_layout_still_decode():
    """A plain pickle of the per-series dict, as checkpoints from before hold."""
    series = _entries(50, versions=False)
    raw = pickle.dumps({"version": 1, "buckets": 2, "token": b"t", "series": series})
    got = BucketState.decode(raw, 2)
    assert got.entries() == series and got.model is None and got.token == b"t"


def test_expire_drops_the_silent_series_and_put_updates_in_place_or_appends():
    b = BucketState.from_entries(_entries(3), 1)  # s0..s2 seen at 1,000..1,002
    b.expire(now=61_000, timeout_ms=60_000)  # s0 silent for 60 s: gone, s1 for 59.999 s: kept
    assert sorted(set(b.sensor)) == ["s1", "s2"] and len(b) == 4
    index = b.index()
    b.put(index, [("s1", "temp"), ("s9", "hum")], 70_000, [b"new", b"fresh"], [8, None])
    got = b.entries()
    assert got[("s1", "temp")] == [70_000, b"new", 8]
    assert got[("s9", "hum")] == [70_000, b"fresh"]  # the model does not know it
    assert b.model[-1] is None and len(b.model) == len(b)
    assert got[("s1", "hum")] == [1_001, _blob(1), 7]  # untouched
    assert BucketState.decode(b.encode(), 1).entries() == got


def test_a_bucket_without_versions_gains_the_column_once_its_detectors_follow_a_model():
    b = BucketState.from_entries(_entries(2, versions=False), 1)
    assert b.model is None
    b.put(b.index(), [("s1", "temp")], 4_000, [b"y"], None)  # detectors without a model
    assert b.model is None
    b.put(b.index(), [("s0", "temp")], 5_000, [b"x"], [3])
    assert b.model == [3, None, None, None]  # in place: s0 temp, s0 hum, s1 temp, s1 hum
    assert b.entries()[("s0", "temp")] == [5_000, b"x", 3]
    assert b.seen.tolist() == [5_000, 1_000, 4_000, 1_001]
