"""Loading labelled series in the NAB layout.

``<root>/data/<category>/<file>.csv`` (``timestamp,value``) and
``<root>/labels/combined_windows.json`` (``{"<category>/<file>.csv": [[start, end], ...]}``).
Row order is the stream order: timestamps may repeat or step back, so windows are located by
row index (the first row whose timestamp equals the window end point, as NAB does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

WINDOWS_FILE = Path("labels") / "combined_windows.json"


@dataclass
class LabelledSeries:
    """One series: its relative key (``category/file.csv``), readings and window row ranges."""

    key: str
    timestamps: np.ndarray  # datetime64[ns], stream order
    values: np.ndarray  # float64
    windows: list[tuple[int, int]] = field(default_factory=list)  # inclusive row index ranges
    labelled: bool = False  # the label file lists this series (possibly with no windows)

    @property
    def category(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def file_name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def ts_ms(self) -> np.ndarray:
        """Event times in epoch milliseconds (the detector contract's ``ts``)."""
        return self.timestamps.astype("datetime64[ms]").astype(np.int64)

    def __len__(self) -> int:
        return len(self.values)


def list_series(root: str | Path) -> list[str]:
    """All ``category/file.csv`` keys under ``<root>/data``, sorted."""
    data = Path(root) / "data"
    if not data.is_dir():
        raise FileNotFoundError(
            f"{data} is not a directory (expected the NAB layout <root>/data/<category>/*.csv)"
        )
    return sorted(p.relative_to(data).as_posix() for p in data.glob("*/*.csv"))


def load_windows(root: str | Path) -> dict[str, list[list[str]]]:
    """The label windows; an absent label file means no series is labelled."""
    path = Path(root) / WINDOWS_FILE
    if not path.exists():
        return {}
    with path.open() as fh:
        return json.load(fh)


def _locate(ts: np.ndarray, when: np.datetime64, *, start: bool) -> int:
    exact = np.flatnonzero(ts == when)
    if exact.size:
        return int(exact[0])
    # Not an exact row (hand-made labels): the first row at/after a start, the last at/before an end.
    idx = np.flatnonzero(ts >= when) if start else np.flatnonzero(ts <= when)
    if not idx.size:
        return -1
    return int(idx[0] if start else idx[-1])


def window_indices(ts: np.ndarray, windows: list[list[str]]) -> list[tuple[int, int]]:
    """Inclusive row ranges of the windows, in order; windows outside the data are dropped."""
    out: list[tuple[int, int]] = []
    for start_s, end_s in windows:
        start = _locate(ts, np.datetime64(pd.Timestamp(start_s)), start=True)
        end = _locate(ts, np.datetime64(pd.Timestamp(end_s)), start=False)
        if start >= 0 and end >= start:
            out.append((start, end))
    out.sort()
    return out


def read_series(
    root: str | Path, key: str, windows: dict[str, list[list[str]]] | None = None
) -> LabelledSeries:
    frame = pd.read_csv(Path(root) / "data" / key)
    if list(frame.columns[:2]) != ["timestamp", "value"]:
        raise ValueError(f"{key}: expected columns timestamp,value; got {list(frame.columns)}")
    ts = pd.to_datetime(frame["timestamp"]).to_numpy(dtype="datetime64[ns]")
    values = frame["value"].to_numpy(dtype=float)
    windows = windows if windows is not None else load_windows(root)
    spec = windows.get(key)
    return LabelledSeries(
        key=key,
        timestamps=ts,
        values=values,
        windows=window_indices(ts, spec or []),
        labelled=spec is not None,
    )


def resolve_files(root: str | Path, files: list[str] | None = None) -> list[str]:
    """The series keys to evaluate: all of them, or the listed ones (keys or ``@list-file``).

    A list entry is a key ``category/file.csv`` (``.csv`` optional) or a bare file name.
    """
    available = list_series(root)
    if not files:
        return available
    wanted: list[str] = []
    for item in files:
        if item.startswith("@"):
            lines = Path(item[1:]).read_text().splitlines()
            wanted.extend(s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#"))
        else:
            wanted.extend(s.strip() for s in item.split(",") if s.strip())
    by_name: dict[str, list[str]] = {}
    for key in available:
        by_name.setdefault(key.rsplit("/", 1)[-1], []).append(key)
    out: list[str] = []
    for w in wanted:
        w = w if w.endswith(".csv") else w + ".csv"
        match = [w] if w in available else by_name.get(w, [])
        if len(match) != 1:
            raise ValueError(f"file {w!r}: {'ambiguous' if match else 'not found'} under {root}/data")
        if match[0] not in out:
            out.append(match[0])
    return out


def split_files(keys: list[str], part: str, modulo: int = 2) -> list[str]:
    """A fixed, name-blind split: per category, sorted keys at positions i % modulo == 0 are
    ``tune``, the rest ``test``. The same rule NAB's dev/holdout split used, with another modulo.
    """
    if part not in ("tune", "test"):
        raise ValueError(f"split part must be 'tune' or 'test', got {part!r}")
    by_cat: dict[str, list[str]] = {}
    for key in sorted(keys):
        by_cat.setdefault(key.split("/", 1)[0], []).append(key)
    out = []
    for cat in sorted(by_cat):
        for i, key in enumerate(by_cat[cat]):
            if (i % modulo == 0) == (part == "tune"):
                out.append(key)
    return out


def probation_length(n_rows: int, percent: float = 0.15) -> int:
    """NAB's probationary period: the first 15 % of the rows, capped at 15 % of 5000 (750)."""
    return int(min(np.floor(percent * n_rows), percent * 5000))
