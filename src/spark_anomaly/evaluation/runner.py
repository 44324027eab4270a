"""Replaying labelled series through detector cores, one series at a time, in arrival order.

Each series gets a fresh core from the registry (the same code the streaming job runs) and a
``SeriesPrior`` computed from its probationary rows only (what the train job would have learned
before the scored part began; no look-ahead). Series run in parallel worker processes.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from spark_anomaly.detectors.base import SeriesPrior

from ..detector_specs import DetectorSpec
from .nab_data import LabelledSeries, load_windows, probation_length, read_series


@dataclass
class Replay:
    """A detector's output over one series."""

    key: str
    anomaly_score: np.ndarray  # in [0, 1]
    lower: np.ndarray
    upper: np.ndarray
    seconds: float


def prior_from_probation(values: np.ndarray) -> SeriesPrior | None:
    """The model a train job would hold after the probationary rows."""
    return prior_of(values[: probation_length(len(values))])


def prior_of(values: np.ndarray) -> SeriesPrior | None:
    """(n, mean, M2, min, max) over the finite ``values``: the model a train job would hold."""
    head = np.asarray(values, dtype=float)
    head = head[np.isfinite(head)]
    if head.size == 0:
        return None
    mean = float(head.mean())
    return SeriesPrior(
        n=int(head.size),
        mean=mean,
        m2=float(((head - mean) ** 2).sum()),
        min=float(head.min()),
        max=float(head.max()),
    )


def to_anomaly_score(score: Iterable[float]) -> np.ndarray:
    """The contract's ``score`` as NAB's ``anomaly_score``: NaN -> 0, clipped to [0, 1]."""
    s = np.asarray(pd.to_numeric(pd.Series(score), errors="coerce"), dtype=float)
    return np.clip(np.nan_to_num(s, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)


def replay(spec: DetectorSpec, series: LabelledSeries) -> Replay:
    start = time.perf_counter()
    detector = spec.build(prior_from_probation(series.values))
    out = detector.process(series.values, series.ts_ms)
    if len(out) != len(series):
        raise RuntimeError(
            f"{spec.label} returned {len(out)} rows for {len(series)} readings of {series.key}"
        )
    return Replay(
        key=series.key,
        anomaly_score=to_anomaly_score(out["score"]),
        lower=np.asarray(out["lower"], dtype=float),
        upper=np.asarray(out["upper"], dtype=float),
        seconds=time.perf_counter() - start,
    )


def _job(args: tuple[DetectorSpec, str, str, dict]) -> tuple[str, str, Replay | str]:
    spec, root, key, windows = args
    try:
        return spec.label, key, replay(spec, read_series(root, key, windows))
    except Exception as exc:  # reported by the parent with the series and detector named
        import traceback

        return spec.label, key, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"


def _progress_printer(total: int) -> Callable[[str, str, Replay | str], None]:
    state = {"done": 0, "t0": time.perf_counter()}

    def report(label: str, key: str, result: Replay | str) -> None:
        state["done"] += 1
        what = f"{result.seconds:6.1f}s" if isinstance(result, Replay) else "FAILED"
        elapsed = time.perf_counter() - state["t0"]
        print(
            f"[{state['done']:>4}/{total}] {elapsed:7.1f}s  {label:<24} {key:<60} {what}",
            file=sys.stderr,
            flush=True,
        )

    return report


def run(
    specs: list[DetectorSpec],
    root: str | Path,
    keys: list[str],
    workers: int = 2,
    progress: Callable[[str, str, Replay | str], None] | bool = True,
) -> dict[str, dict[str, Replay]]:
    """Replay every (detector, series) pair; returns label -> key -> Replay.

    Longest series first so the pool stays busy; results do not depend on the order.
    """
    root = str(root)
    windows = load_windows(root)
    sizes = {k: (Path(root) / "data" / k).stat().st_size for k in keys}
    jobs = [(s, root, k, windows) for s in specs for k in sorted(keys, key=lambda k: -sizes[k])]
    if progress is True:
        progress = _progress_printer(len(jobs))
    results: dict[str, dict[str, Replay]] = {s.label: {} for s in specs}
    errors: list[str] = []

    def collect(item: tuple[str, str, Replay | str]) -> None:
        label, key, result = item
        if progress:
            progress(label, key, result)
        if isinstance(result, Replay):
            results[label][key] = result
        else:
            errors.append(f"{label} on {key}: {result}")

    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            collect(_job(job))
    else:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        with ctx.Pool(workers) as pool:
            for item in pool.imap_unordered(_job, jobs, chunksize=1):
                collect(item)
    if errors:
        raise RuntimeError("detector replay failed:\n" + "\n".join(errors))
    return results


def label_column(n_rows: int, windows: list[tuple[int, int]]) -> np.ndarray:
    label = np.zeros(n_rows, dtype=np.int64)
    for left, right in windows:
        label[left : right + 1] = 1
    return label


def results_path(out: str | Path, label: str, key: str) -> Path:
    """NAB results layout: ``<out>/<detector>/<category>/<detector>_<file>.csv``."""
    category, file_name = key.split("/", 1)
    return Path(out) / label / category / f"{label}_{file_name}"


def write_results(out: str | Path, label: str, series: LabelledSeries, rep: Replay) -> Path:
    path = results_path(out, label, series.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        {
            "timestamp": pd.Series(series.timestamps).dt.strftime("%Y-%m-%d %H:%M:%S"),
            "value": series.values,
            "anomaly_score": rep.anomaly_score,
            "label": label_column(len(series), series.windows),
        }
    )
    frame.to_csv(path, index=False, float_format="%.10g")
    return path
