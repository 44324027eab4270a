"""A check every detector core's tests share: a restored state continues exactly as one pass."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd


def assert_resumes_identically(
    make: Callable[[], object], xs: np.ndarray, ts: np.ndarray, cuts: Iterable[int]
) -> pd.DataFrame:
    """For each cut: process the head, pickle the state into a fresh detector, process the tail;
    head + tail must equal one ``process`` over everything (returned for further checks)."""
    whole = make().process(xs, ts)
    for cut in cuts:
        first = make()
        head = first.process(xs[:cut], ts[:cut])
        second = make()
        second.set_state(pickle.loads(pickle.dumps(first.get_state())))
        tail = second.process(xs[cut:], ts[cut:])
        pd.testing.assert_frame_equal(pd.concat([head, tail], ignore_index=True), whole)
    return whole
