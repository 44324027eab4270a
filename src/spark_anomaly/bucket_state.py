"""The state row of one hash bucket: the saved detector states of every series it holds.

Every micro-batch that touches a bucket decodes its whole row and encodes it again, the series it
brings no readings for included, so the row is laid out for that: an Arrow table (sensor ids,
metrics, last-seen times, pickled states, model versions), stored as its columns' buffers, each
compressed with zstd. A batch turns into Python objects only the series it brings readings for;
the others stay in Arrow buffers from decode to encode. A bucket of 31k range states, 1,250 of
them touched (the Python side of one call): 24 ms as pickled columns compressed whole, 13 ms as
Arrow columns. In the stream, range over 1M series held in 20k-event batches: median batch
3.7-4.0 s with a pickled entry per series, 2.1-2.2 s as pickled columns, 1.7 s as Arrow columns
(docs/benchmarks-notes.md). Rows of the two earlier layouts still decode.

Series are found by hashing ``sensor_id + "\\0" + metric`` in Arrow (its look-up takes no pair of
columns); names holding a NUL could make two pairs one string, so every hit's pair is checked
and a wrong one looked up exactly.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Key = tuple[str, str]

_ARROW = b"SAZ3"  # header + JSON + the columns' buffers, each compressed with zstd (``encode``)
_PICKLED = b"SAZ2"  # header + 8-byte length + a zstd-compressed pickle of columns (2026-12-06)
_VARIABLE = ("sensor", "metric", "blob")
_FIELDS = [
    pa.field("sensor", pa.string()),
    pa.field("metric", pa.string()),
    pa.field("seen", pa.int64()),  # last reading's processing time (ms)
    pa.field("blob", pa.binary()),  # pickled detector states
]
_MODEL = pa.field("model", pa.int64())  # the model version each series follows (null: none)


class BucketMismatch(RuntimeError):
    """The checkpoint's state was written with another ``detect.state_buckets``."""


def _objects(values: pa.Array | pa.ChunkedArray) -> list:
    """Strings or bytes as a list (``to_pylist`` builds a scalar per element: 20x slower)."""
    return values.to_numpy(zero_copy_only=False).tolist()


def _ints(values: pa.Array | pa.ChunkedArray) -> list[int | None]:
    """Nullable integers as a list, nulls as None (``to_numpy`` would make them NaN floats)."""
    valid = values.is_valid().to_numpy(zero_copy_only=False)
    return [
        v if ok else None
        for v, ok in zip(values.fill_null(0).to_numpy().tolist(), valid.tolist(), strict=True)
    ]


def _check_buckets(written: int | None, buckets: int) -> None:
    if written != buckets:
        raise BucketMismatch(
            f"detect.state_buckets is {buckets} but the checkpoint's state was written with "
            f"{written}: series would land in other buckets and lose their state. "
            "Set it back, or start from a new detect.checkpoint."
        )


def _keys(table: pa.Table) -> list[Key]:
    return list(zip(_objects(table["sensor"]), _objects(table["metric"]), strict=True))


def _schema(with_model: bool) -> pa.Schema:
    return pa.schema([*_FIELDS, _MODEL] if with_model else _FIELDS)


class BucketState:
    """One bucket's series as an Arrow table; its ``model`` column exists once a series follows a
    model version. Rows have no order a caller may rely on: ``put`` moves updated series last."""

    def __init__(self, buckets: int, token: bytes, table: pa.Table) -> None:
        self.buckets, self.token, self.table = buckets, token, table

    @classmethod
    def empty(cls, buckets: int) -> BucketState:
        return cls(buckets, b"", _schema(False).empty_table())

    @classmethod
    def decode(cls, row: bytes, buckets: int) -> BucketState:
        """The bucket in ``row``, refusing one written with another bucket count. Reads the Arrow
        layout, and the two before it: zstd-compressed pickled columns, and a plain pickle of a
        dict per series (checkpoints of earlier versions)."""
        if row[:4] == _ARROW:
            table, written, token = _read_columns(pa.py_buffer(row))
            _check_buckets(written, buckets)
            return cls(buckets, token, table)
        if row[:4] == _PICKLED:
            size = int.from_bytes(row[4:12], "little")
            row = pa.decompress(memoryview(row)[12:], decompressed_size=size, codec="zstd", asbytes=True)
        saved = pickle.loads(row)
        _check_buckets(saved.get("buckets"), buckets)
        token = saved.get("token", b"")
        if saved.get("version") == 2:
            with_model = saved["model"] is not None
            schema = _schema(with_model)
            return cls(buckets, token, pa.table({k: saved[k] for k in schema.names}, schema=schema))
        return cls.from_entries(saved["series"], buckets, token)

    @classmethod
    def from_entries(cls, series: dict[Key, list], buckets: int, token: bytes = b"") -> BucketState:
        """From the per-series layout: key -> [seen, pickled states(, model version)]."""
        entries = list(series.items())
        model = [e[2] if len(e) > 2 else None for _, e in entries]
        with_model = any(v is not None for v in model)
        cols = {
            "sensor": [k[0] for k, _ in entries],
            "metric": [k[1] for k, _ in entries],
            "seen": [e[0] for _, e in entries],
            "blob": [e[1] for _, e in entries],
            **({"model": model} if with_model else {}),
        }
        return cls(buckets, token, pa.table(cols, schema=_schema(with_model)))

    def encode(self) -> bytes:
        return _write_columns(self.table, self.buckets, self.token)

    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def has_model(self) -> bool:
        """Whether the row records model versions (once any series followed one)."""
        return "model" in self.table.column_names

    @property
    def model(self) -> list[int | None] | None:
        """Each series' model version, or None when no series follows one."""
        return _ints(self.table["model"]) if self.has_model else None

    def keys(self) -> list[Key]:
        return _keys(self.table)

    def expire(self, now: int, timeout_ms: int) -> list[Key]:
        """Drop the series silent for ``timeout_ms`` or longer; returns their keys."""
        seen = self.table["seen"].to_numpy()
        keep = (now - seen) < timeout_ms
        if keep.all():
            return []
        gone = _keys(self.table.filter(pa.array(~keep)))
        self.table = self.table.filter(pa.array(keep))
        return gone

    def positions(self, keys: Sequence[Key]) -> list[int | None]:
        """Where each of ``keys`` is held (None: not held)."""
        if not len(self) or not keys:
            return [None] * len(keys)
        sensor, metric = self.table["sensor"], self.table["metric"]
        held = pc.binary_join_element_wise(sensor, metric, "\0").combine_chunks()
        found = _ints(pc.index_in(pa.array([f"{s}\0{m}" for s, m in keys], pa.string()), value_set=held))
        hits = [i for i, p in enumerate(found) if p is not None]
        at = pa.array([found[i] for i in hits], pa.int64())
        pairs = zip(_objects(sensor.take(at)), _objects(metric.take(at)), strict=True)
        wrong = [i for i, pair in zip(hits, pairs, strict=True) if pair != keys[i]]
        if wrong:  # joined alike, so the first such row was found: look these up exactly
            exact = dict(zip(self.keys(), range(len(self)), strict=True))
            for i in wrong:
                found[i] = exact.get(keys[i])
        return found

    def blobs(self, positions: Sequence[int]) -> list[bytes]:
        return _objects(self.table["blob"].take(pa.array(positions, pa.int64()))) if positions else []

    def models(self, positions: Sequence[int]) -> list[int | None]:
        """The versions followed at ``positions`` (all None when no series follows one)."""
        if not self.has_model:
            return [None] * len(positions)
        return _ints(self.table["model"].take(pa.array(positions, pa.int64()))) if positions else []

    def put(
        self,
        positions: Sequence[int | None],
        keys: Sequence[Key],
        now: int,
        blobs: Sequence[bytes],
        models: Sequence[int | None] | None,
    ) -> None:
        """Save the new states of ``keys`` (seen at ``now``; ``positions`` as ``positions`` gave
        them): the held ones replaced, the others added. ``models``: the model version each
        follows (None: the model does not know it), or None when the detectors follow no model."""
        with_model = self.has_model or models is not None
        rest = self.table
        held = [p for p in positions if p is not None]
        if held:
            keep = np.ones(len(rest), bool)
            keep[held] = False
            rest = rest.filter(pa.array(keep))
        if with_model and "model" not in rest.column_names:
            rest = rest.append_column(_MODEL, pa.nulls(len(rest), pa.int64()))
        cols = {
            "sensor": [k[0] for k in keys],
            "metric": [k[1] for k in keys],
            "seen": np.full(len(keys), now, np.int64),
            "blob": list(blobs),
            **({"model": models or [None] * len(keys)} if with_model else {}),
        }
        self.table = pa.concat_tables([rest, pa.table(cols, schema=_schema(with_model))])

    def entries(self) -> dict[Key, list]:
        """The per-series view: key -> [seen, pickled states(, model version)] (for tools, tests)."""
        model = self.model or [None] * len(self)
        seen, blob = self.table["seen"].to_numpy().tolist(), _objects(self.table["blob"])
        return {
            k: [t, b] if v is None else [t, b, v]
            for k, t, b, v in zip(self.keys(), seen, blob, model, strict=True)
        }


# The row's own container. An Arrow IPC stream (tried first) compresses each buffer alone, and the
# offsets of the string and binary columns, rising by a few bytes per series, hardly compress:
# they were 278 KB of a 460 KB row of 31k synthetic range states. Stored as lengths instead,
# which repeat, that row is 181 KB (the pickled columns: 193 KB); rows of the stream's own range
# states: 334 KB a bucket of 31k series, against 330 KB as pickled columns. Layout: header, 4-byte
# length, JSON of the row count, bucket count, token and each part's raw and compressed size,
# then the parts: per variable-width column its lengths (int32) and its bytes, then ``seen``
# (int64) and, when present, the model versions (int64) and their validity (uint8).


def _parts(table: pa.Table) -> list[memoryview]:
    parts: list = []
    for name in _VARIABLE:
        col = table[name].combine_chunks()
        off, data = np.zeros(1, np.int32), None
        if len(col):  # an empty array may have no buffers; all-empty strings no data buffer
            off = np.frombuffer(col.buffers()[1], np.int32, len(col) + 1, col.offset * 4)
            data = col.buffers()[2]
        parts += [np.diff(off).astype(np.int32), b"" if data is None else data[off[0] : off[-1]]]
    parts.append(table["seen"].combine_chunks().to_numpy(zero_copy_only=False).astype(np.int64, copy=False))
    if "model" in table.column_names:
        model = table["model"].combine_chunks()
        parts += [
            model.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False),
            model.is_valid().to_numpy(zero_copy_only=False).astype(np.uint8),
        ]
    return [memoryview(p).cast("B") if isinstance(p, np.ndarray) else memoryview(p) for p in parts]


def _write_columns(table: pa.Table, buckets: int, token: bytes) -> bytes:
    raw = _parts(table)
    packed = [pa.compress(p, codec="zstd", asbytes=True) for p in raw]
    head = json.dumps(
        {
            "rows": table.num_rows,
            "buckets": buckets,
            "token": token.hex(),
            "model": "model" in table.column_names,
            "sizes": [[r.nbytes, len(c)] for r, c in zip(raw, packed, strict=True)],
        }
    ).encode()
    return b"".join([_ARROW, len(head).to_bytes(4, "little"), head, *packed])


def _read_columns(row: pa.Buffer) -> tuple[pa.Table, int, bytes]:
    size = int.from_bytes(row[4:8].to_pybytes(), "little")
    head = json.loads(row[8 : 8 + size].to_pybytes())
    n, pos, parts = head["rows"], 8 + size, []
    for raw_size, packed_size in head["sizes"]:
        parts.append(pa.decompress(row[pos : pos + packed_size], decompressed_size=raw_size, codec="zstd"))
        pos += packed_size
    cols = {}
    for i, name in enumerate(_VARIABLE):
        offsets = np.zeros(n + 1, np.int32)
        np.cumsum(np.frombuffer(parts[2 * i], np.int32, n), out=offsets[1:])
        kind = pa.binary() if name == "blob" else pa.string()
        cols[name] = pa.Array.from_buffers(kind, n, [None, pa.py_buffer(offsets), parts[2 * i + 1]])
    cols["seen"] = pa.Array.from_buffers(pa.int64(), n, [None, parts[6]])
    if head["model"]:
        valid = np.frombuffer(parts[8], np.uint8, n).astype(bool)
        cols["model"] = pa.array(np.frombuffer(parts[7], np.int64, n), mask=~valid)
    return pa.table(cols, schema=_schema(head["model"])), head["buckets"], bytes.fromhex(head["token"])
