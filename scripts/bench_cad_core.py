"""CPU cost of the CAD core the way the stream uses it, and a bit-for-bit comparison of two cores.

Series come from the load generator (seed-003 temp/hum readings, noisy daily cycles, a few injected
anomalies); the prior is the range of the first ``--prior-readings`` (the stream bench trains on 500
ticks of the sensors it then streams 200 of). The cyclic GC is off, as in the stream's group
function. Each series runs in chunks of ``--chunk`` readings; after every chunk the state is
taken and pickled (as the stream does every batch), and before every other chunk a fresh core is
restored from that blob (unpickle + ``set_state``, as after a cache miss). Reported per core, best
and median of ``--reps`` repetitions, in CPU time (``time.process_time``):

- step: µs per reading in ``process_rows``;
- restore: ms per unpickle + construction + ``set_state``;
- dump: ms per ``get_state`` + pickle;
- per reading overall: (step + restore + dump CPU) / readings.

With several ``--core`` files (e.g. the previous ``cad.py`` saved from git) the rows (score,
probability, reason) of every core are compared with an uninterrupted run of the first; the exit
status is 1 when any differ.

    PYTHONPATH=src python scripts/bench_cad_core.py --core /tmp/cad_old.py --core src/spark_anomaly/detectors/cad.py
    (git show main:src/spark_anomaly/detectors/cad.py > /tmp/cad_old.py)
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import pickle
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from spark_anomaly import loadgen
from spark_anomaly.evaluation.runner import prior_of


def load_core(path: str):
    """A cad.py file as a module of the detectors package (so its relative imports work)."""
    import spark_anomaly.detectors  # noqa: F401

    spec = importlib.util.spec_from_file_location(
        f"spark_anomaly.detectors._bench_core_{len(sys.modules)}", path
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def make_series(n_series: int, n: int, seed: int) -> list[np.ndarray]:
    cfg = loadgen.LoadConfig(seed=seed, sensors=(n_series + 1) // 2, anomaly_rate=0.0005)
    cols: dict[tuple[str, str], list[float]] = {}
    for batch in loadgen.Generator(cfg, total_ticks=n):
        for raw in batch.values:
            rec = json.loads(raw)
            for m in loadgen.METRICS:
                cols.setdefault((rec["id"], m), []).append(float(rec[m]))
    return [np.asarray(v, dtype=float) for v in list(cols.values())[:n_series]]


def run(mod, series, priors, chunk: int, config: dict, restore_every: int):
    """All series chunk by chunk; returns rows per series, CPU totals and counts.

    The cyclic GC is off while it runs, as in the stream's group function (``stateful.py``).
    """
    gc.collect()
    gc.disable()
    try:
        return _run(mod, series, priors, chunk, config, restore_every)
    finally:
        gc.enable()


def _run(mod, series, priors, chunk: int, config: dict, restore_every: int):
    cfg = mod.CadConfig(**config)
    t_step = t_restore = t_dump = 0.0
    n_restore = n_dump = readings = 0
    rows_all = []
    ctx_end = []
    clock = time.process_time
    for v, prior in zip(series, priors, strict=True):
        ts = np.zeros(len(v), dtype=np.int64)
        core = mod.CadDetector(cfg, prior)
        blob = None
        rows = []
        for k, pos in enumerate(range(0, len(v), chunk)):
            if blob is not None and k % restore_every == 0:
                t0 = clock()
                core = mod.CadDetector(cfg, prior)
                core.set_state(pickle.loads(blob))
                t_restore += clock() - t0
                n_restore += 1
            part = v[pos : pos + chunk]
            t0 = clock()
            rows += core.process_rows(part, ts[: len(part)])
            t_step += clock() - t0
            readings += len(part)
            t0 = clock()
            blob = pickle.dumps(core.get_state(), protocol=pickle.HIGHEST_PROTOCOL)
            t_dump += clock() - t0
            n_dump += 1
        rows_all.append([r[2:] for r in rows])
        ctx_end.append(core.n_contexts)
    return rows_all, {
        "step_us": 1e6 * t_step / readings,
        "restore_ms": 1e3 * t_restore / max(n_restore, 1),
        "dump_ms": 1e3 * t_dump / n_dump,
        "total_us": 1e6 * (t_step + t_restore + t_dump) / readings,
        "contexts_end_mean": statistics.mean(ctx_end),
        "contexts_end_max": max(ctx_end),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--core", action="append", help="cad.py file(s) to measure (default: the package's)")
    p.add_argument("--series", type=int, default=40)
    p.add_argument("--readings", type=int, default=200, help="per series (the stream bench: 200)")
    p.add_argument(
        "--prior-readings",
        type=int,
        default=500,
        help="the prior is the range of the first N readings (the bench trains on 500 ticks of the same sensors)",
    )
    p.add_argument("--chunk", type=int, default=25)
    p.add_argument(
        "--restore-every", type=int, default=2, help="restore from the blob before every k-th chunk"
    )
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-contexts", type=int, default=None)
    p.add_argument("--learn", action="store_true", help="no prior: learn the range from the first readings")
    p.add_argument("--no-check", action="store_true", help="skip the uninterrupted reference runs")
    a = p.parse_args()
    cores = a.core or [str(Path(__file__).resolve().parents[1] / "src/spark_anomaly/detectors/cad.py")]
    mods = [load_core(c) for c in cores]
    full = make_series(a.series, max(a.readings, a.prior_readings), a.seed)
    series = [v[: a.readings] for v in full]
    priors = [None if a.learn else prior_of(v[: a.prior_readings]) for v in full]
    config = {} if a.max_contexts is None else {"max_contexts": a.max_contexts}
    results: dict[str, list[dict]] = {c: [] for c in cores}
    rows_of: dict[str, list] = {}
    for _ in range(a.reps):
        for c, mod in zip(cores, mods, strict=True):
            rows, stats = run(mod, series, priors, a.chunk, config, a.restore_every)
            results[c].append(stats)
            rows_of[c] = rows
    ok = True
    if not a.no_check:
        ref, _ = run(mods[0], series, priors, 10**9, config, a.restore_every)  # one chunk: no restore
        for c in cores:
            same = rows_of[c] == ref
            ok &= same
            print(f"rows of {c} {'==' if same else '!='} uninterrupted run of {cores[0]}")
    for c in cores:
        print(c)
        for key in ("step_us", "restore_ms", "dump_ms", "total_us", "contexts_end_mean", "contexts_end_max"):
            vals = [r[key] for r in results[c]]
            print(f"  {key:18s} best {min(vals):9.3f}  median {statistics.median(vals):9.3f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
