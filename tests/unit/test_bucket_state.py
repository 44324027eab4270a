"""A bucket's state row: columns of its series, compressed; rows of the older layouts still load,
series expire by their last-seen time, and new states replace held ones or are added."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
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


def test_rows_of_the_older_layouts_still_decode():
    """A plain pickle of the per-series dict, as checkpoints from before 2026-12-06 hold, and the
    zstd-compressed pickle of columns that followed it."""
    series = _entries(50, versions=False)
    raw = pickle.dumps({"version": 1, "buckets": 2, "token": b"t", "series": series})
    got = BucketState.decode(raw, 2)
    assert got.entries() == series and got.model is None and got.token == b"t"
    series = _entries(3)
    columns = {
        "version": 2, "buckets": 2, "token": b"u", "sensor": [k[0] for k in series],
        "metric": [k[1] for k in series], "seen": np.array([e[0] for e in series.values()], np.int64),
        "blob": [e[1] for e in series.values()], "model": [e[2] for e in series.values()],
    }  # fmt: skip
    packed = pickle.dumps(columns)
    row = b"SAZ2" + len(packed).to_bytes(8, "little") + pa.compress(packed, codec="zstd", asbytes=True)
    got = BucketState.decode(row, 2)
    assert got.entries() == series and got.token == b"u"
    with pytest.raises(BucketMismatch):
        BucketState.decode(row, 3)


def test_an_empty_bucket_and_one_without_versions_round_trip():
    for b in (BucketState.empty(3), BucketState.from_entries(_entries(4, versions=False), 3, b"v")):
        got = BucketState.decode(b.encode(), 3)
        assert got.entries() == b.entries() and got.token == b.token and got.model is None


def test_expire_drops_the_silent_series_and_put_replaces_or_adds():
    b = BucketState.from_entries(_entries(3), 1)  # s0..s2 seen at 1,000..1,002
    gone = b.expire(now=61_000, timeout_ms=60_000)  # s0 silent for 60 s: gone, s1 for 59.999 s: kept
    assert sorted(gone) == [("s0", "hum"), ("s0", "temp")]
    assert sorted(b.entries()) == [("s1", "hum"), ("s1", "temp"), ("s2", "hum"), ("s2", "temp")]
    assert b.expire(now=61_000, timeout_ms=60_000) == []
    keys = [("s1", "temp"), ("s9", "hum"), ("s0", "temp")]
    pos = b.positions(keys)
    assert [None if p is None else b.keys()[p] for p in pos] == [("s1", "temp"), None, None]
    assert [pickle.loads(x) for x in b.blobs([pos[0]])] == [pickle.loads(_blob(1))]
    assert b.models([pos[0]]) == [7]
    b.put(pos, keys, 70_000, [b"new", b"fresh", b"back"], [8, None, 8])
    got = b.entries()
    assert len(got) == len(b) == 6
    assert got[("s1", "temp")] == [70_000, b"new", 8]
    assert got[("s9", "hum")] == [70_000, b"fresh"]  # the model does not know it
    assert got[("s0", "temp")] == [70_000, b"back", 8]  # expired, so new again
    assert got[("s1", "hum")] == [1_001, _blob(1), 7]  # untouched
    assert BucketState.decode(b.encode(), 1).entries() == got


def test_a_bucket_without_versions_gains_the_column_once_its_detectors_follow_a_model():
    b = BucketState.from_entries(_entries(2, versions=False), 1)
    assert b.model is None and not b.has_model
    keys = [("s1", "temp")]
    b.put(b.positions(keys), keys, 4_000, [b"y"], None)  # detectors without a model
    assert b.model is None and b.models(b.positions(keys)) == [None]
    keys = [("s0", "temp")]
    b.put(b.positions(keys), keys, 5_000, [b"x"], [3])
    assert b.has_model and sorted(b.model, key=lambda v: v or 0) == [None, None, None, 3]
    assert b.entries()[("s0", "temp")] == [5_000, b"x", 3]
    assert b.entries()[("s1", "temp")] == [4_000, b"y"]
    assert b.entries()[("s1", "hum")] == [1_001, _blob(1)]
    assert BucketState.decode(b.encode(), 1).entries() == b.entries()


def test_series_are_found_by_their_exact_pair_whatever_characters_the_names_hold():
    # the same characters split differently between sensor and metric are different series
    series = {("a\0b", "c"): [1, b"x"], ("a", "b\0c"): [2, b"y"], ("é", "tempé"): [3, b"z"]}
    b = BucketState.from_entries(series, 1)
    keys = [("a", "b\0c"), ("a\0b", "c"), ("é", "tempé"), ("a\0b\0c", ""), ("", "a\0b\0c")]
    pos = b.positions(keys)
    assert [None if p is None else b.keys()[p] for p in pos] == [*keys[:3], None, None]


def test_empty_names_and_states_round_trip():
    series = {("s0", ""): [5, b""], ("", "temp"): [6, b"x"]}
    got = BucketState.decode(BucketState.from_entries(series, 1).encode(), 1)
    assert got.entries() == series
    only_empty = {("s0", ""): [5, b""]}  # no data buffers at all for metric and blob
    assert BucketState.decode(BucketState.from_entries(only_empty, 1).encode(), 1).entries() == only_empty
