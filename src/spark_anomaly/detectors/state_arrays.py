"""Arrays of a core's state saved smaller, because the stream pays for every byte of state.

The stream moves every touched series' state through the state store and into Python each
micro-batch, at a cost per byte (PySpark's decoding of the state row alone: 22 ms per MB;
docs/benchmarks-notes.md), so bytes saved in the largest arrays are batch time saved. Both
layouts restore bit for bit, and a plain float64 array (every earlier layout) restores as it is.

* :func:`pack_sparse`: a history that is mostly +0.0 as its non-zero positions and values
  (calibrated's history of an ``excess`` raw on a series that stays inside its band:
  recommended's record member, a sixth of its state).
* :func:`pack_decimals`: readings that arrived as decimal text with a few digits (``21.03``) as
  int16/int32 plus their number of decimals. The parsed value v is the double nearest to that
  decimal, so it equals rint(v * 10**d) / 10**d bit for bit (10**d is exact and IEEE division is
  correctly rounded). knn's ring of readings: 48 kB of recommended's 135 kB a series on one-minute
  load-generator readings, 12 kB as int16. Whatever would not restore bit for bit (more than
  ``MAX_DECIMALS`` decimals, too large for int32, a -0.0) stays float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_DECIMALS = 6
_PROBE = 64  # readings the number of decimals is guessed from before the whole run is checked
_INT16 = np.iinfo(np.int16).max
_INT32 = np.iinfo(np.int32).max


def pack_sparse(values: np.ndarray) -> np.ndarray | dict[str, Any]:
    """``values`` as ``{"n", "at", "values"}`` when at least three quarters are +0.0 (-0.0 is kept
    as a value), else as they are."""
    at = np.flatnonzero((values != 0.0) | np.signbit(values))
    if 4 * len(at) > len(values):
        return values
    return {"n": len(values), "at": at.astype(np.int32), "values": values[at]}


def unpack_sparse(saved: Any) -> np.ndarray:
    """:func:`pack_sparse` undone; dense arrays and sequences as they are."""
    if isinstance(saved, dict):
        out = np.zeros(int(saved["n"]))
        out[np.asarray(saved["at"], dtype=np.int64)] = np.asarray(saved["values"], dtype=float)
        return out
    return np.asarray(saved, dtype=float)


def _pack_at(v: np.ndarray, decimals: int) -> dict[str, Any] | None:
    scale = 10.0**decimals
    with np.errstate(invalid="ignore", over="ignore"):
        q = np.rint(v * scale)
        top = np.abs(q).max()
    if not top <= _INT32:  # also NaN and inf
        return None
    ints = q.astype(np.int16 if top <= _INT16 else np.int32)
    # what unpack_decimals computes; not _exact's rint(v * scale) / scale, which keeps a -0.0
    # that the integers lose
    back = ints / scale
    if not np.array_equal(back.view(np.int64), v.view(np.int64)):  # bits, so -0.0 counts
        return None
    return {"decimals": decimals, "ints": ints}


def _exact(v: np.ndarray, decimals: int) -> bool:
    """Whether every value has at most ``decimals`` decimals (no integer range involved)."""
    scale = 10.0**decimals
    with np.errstate(invalid="ignore", over="ignore"):
        back = np.rint(v * scale) / scale
    return np.array_equal(back.view(np.int64), v.view(np.int64))


def pack_decimals(values: np.ndarray) -> np.ndarray | dict[str, Any]:
    """``values`` as ``{"decimals": d, "ints": int16/int32}`` when that restores them bit for bit
    with the fewest decimals, else as a float64 array."""
    v = np.ascontiguousarray(values, dtype=float)
    probe = v[-_PROBE:]
    if not len(v) or not _exact(probe, MAX_DECIMALS):  # continuous data: one look and out
        return v
    fewest = next(d for d in range(MAX_DECIMALS + 1) if _exact(probe, d))
    for d in range(fewest, MAX_DECIMALS + 1):  # older readings may carry more decimals
        packed = _pack_at(v, d)
        if packed is not None:
            return packed
    return v


def unpack_decimals(saved: Any) -> np.ndarray:
    """:func:`pack_decimals` undone; float arrays and sequences (earlier layouts) as they are."""
    if isinstance(saved, dict):
        return np.asarray(saved["ints"]) / 10.0 ** int(saved["decimals"])
    return np.asarray(saved, dtype=float)
