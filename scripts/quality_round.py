#!/usr/bin/env python3
"""Detector-selection rounds (docs/benchmarks-quality.md): cache member raws, replay, cross-validate.

  # 1. each member's raw input to calibration, from the real cores, for every file of a NAB root
  python scripts/quality_round.py cache --data ../shared/nab [--config recommended]
  # 2. the numpy replica over the cache: tune / all scores; --check compares it row by row with
  #    the evaluate job's per-series outputs (its --out directory, or that directory/<label>)
  python scripts/quality_round.py replay [--check var/evaluate/benchmark]
  # 3. the selection protocol for a family of variants defined in a Python file
  python scripts/quality_round.py cv scripts/families/round8_knn_mute.py
  # where the alarms fall (tune by default): windows found, the member behind each false alarm,
  # the level and the spacing of first detections against false alarms
  python scripts/quality_round.py alarms [--part tune]

A family file defines ``VARIANTS``: a dict name -> function, or a list of functions (named by
``__name__``); each takes a ``replica.CachedSeries`` (one file's raws, windows, member geometry
and calibrated()/replay() helpers) and returns that file's final score per row (or a
(scores, alarm rows) pair). The baseline is the variant named ``BASELINE`` (default "base"); a
family without one is judged against the replica of the cached configuration. Only the tune
half is scored by cv. The NAB data comes from --data or $SPARK_ANOMALY_NAB_DATA; everything
written goes under var/quality/ unless told otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from spark_anomaly.detector_specs import resolve
from spark_anomaly.evaluation import replica, selection
from spark_anomaly.evaluation.nab_data import load_windows, read_series, resolve_files, split_files
from spark_anomaly.evaluation.nab_scorer import ScoringRows
from spark_anomaly.evaluation.runner import prior_from_probation

DATA_ENV = "SPARK_ANOMALY_NAB_DATA"
OUT = Path("var/quality")


def default_cache(label: str) -> Path:
    return OUT / "raws" / label


# -- cache ----------------------------------------------------------------------------------------


def cmd_cache(args: argparse.Namespace) -> int:
    if not args.data:
        sys.exit(f"cache: give --data or set ${DATA_ENV} (a NAB-layout root)")
    spec = resolve(args.config)
    config = replica.ReplicaConfig.from_spec(spec.detector, spec.params)
    out = Path(args.out or default_cache(spec.label))
    windows = load_windows(args.data)
    files = {}
    t_all = time.perf_counter()
    for key in resolve_files(args.data):
        t0 = time.perf_counter()
        s = read_series(args.data, key, windows)
        raws, info = replica.member_raws(config, s.values, s.ts_ms, prior_from_probation(s.values))
        files[key] = replica.save_series(out, key, s.windows, raws, info)
        print(f"{key:<60} {len(s):>6} rows {time.perf_counter() - t0:5.1f}s", flush=True)
    replica.save_meta(out, spec.label, config, files)
    print(f"{len(files)} files of {spec.label} in {out} ({time.perf_counter() - t_all:.0f}s)")
    return 0


# -- replay ---------------------------------------------------------------------------------------


def _rows(cache: replica.Cache) -> dict:
    return selection.scoring_rows(
        {k: f.n for k, f in cache.files.items()}, {k: f.windows for k, f in cache.files.items()}
    )


def _figures(outs: dict, keys: list[str], rows: dict) -> dict:
    """Standard score at the optimised threshold, with the windows found and the false alarms."""
    score, thr = selection.standard_score(outs, keys, rows)
    pf = selection.per_file(outs, keys, rows, thr).values()
    return {
        "files": len(keys),
        "standard": score,
        "threshold": thr,
        "windows": sum(p.tp for p in pf),
        "of": sum(p.windows for p in pf),
        "false_alarms": sum(p.fp for p in pf),
    }


def _line(name: str, d: dict) -> str:
    return (
        f"{name:<16} {d['files']:>3} files  standard {d['standard']:.2f}  threshold {d['threshold']:.6g}  "
        f"windows {d['windows']}/{d['of']}  false alarms {d['false_alarms']}"
    )


def _check(cache: replica.Cache, outs: dict, alarms: dict, where: Path, label: str) -> dict:
    base = where / label if (where / label).is_dir() else where
    worst, worst_key, bad_alarms, missing = 0.0, "", [], []
    thr = cache.config.threshold
    for key in cache.keys:
        category, file_name = key.split("/", 1)
        path = base / category / f"{label}_{file_name}"  # runner.results_path's layout
        if not path.is_file():
            missing.append(key)
            continue
        job = pd.read_csv(path)["anomaly_score"].to_numpy(dtype=float)
        if len(job) != len(outs[key]):
            sys.exit(f"check: {path} has {len(job)} rows, the cache {len(outs[key])}")
        diff = float(np.max(np.abs(job - outs[key]))) if len(job) else 0.0
        if diff > worst:
            worst, worst_key = diff, key
        if np.flatnonzero(job >= thr).tolist() != alarms[key]:
            bad_alarms.append(key)
    print(
        f"check against {base}: {len(cache.keys) - len(missing)} files, max |score difference| "
        f"{worst:.2g}{f' ({worst_key})' if worst_key else ''}, alarm rows differ in {len(bad_alarms)}"
        + (f": {', '.join(bad_alarms)}" if bad_alarms else "")
        + (f"; no output for {len(missing)}: {', '.join(missing)}" if missing else "")
    )
    return {"max_abs_diff": worst, "worst": worst_key, "alarm_rows_differ": bad_alarms, "missing": missing}


def cmd_replay(args: argparse.Namespace) -> int:
    cache = replica.load_cache(args.cache or default_cache("recommended"))
    rows = _rows(cache)
    t0 = time.perf_counter()
    outs, alarms = {}, {}
    for key, f in cache.files.items():
        outs[key], alarms[key] = f.replay()
    keys = cache.keys
    doc = {"cache": str(cache.root), "label": cache.label}
    for part, part_keys in (("tune", split_files(keys, "tune")), ("all", keys)):
        doc[part] = _figures(outs, part_keys, rows)
        print(_line(part, doc[part]))
    print(f"replayed {len(keys)} files in {time.perf_counter() - t0:.1f}s")
    rc = 0
    if args.check:
        doc["check"] = c = _check(cache, outs, alarms, Path(args.check), args.label or cache.label)
        if c["max_abs_diff"] > args.tolerance or c["alarm_rows_differ"] or c["missing"]:
            print(f"CHECK FAILED (tolerance {args.tolerance:g})")
            rc = 1
    _write(args.json or OUT / f"replay-{cache.label}.json", doc)
    return rc


# -- alarms ---------------------------------------------------------------------------------------

GAPS = (300, 500, 1000, 2000)


def alarm_table(f: replica.CachedSeries, r: ScoringRows) -> list[dict]:
    """Every scored alarm of one file: row, window (-1 outside), first in its window, the member
    with the highest calibrated score there, that score, and the rows since the previous alarm."""
    _, alarms = f.replay()
    ms = f.member_scores()
    names = f.config.member_names
    out, seen, prev = [], set(), None
    for a in alarms:
        gap, prev = (a - prev if prev is not None else None), a
        i = a - r.offset
        if i < 0:
            continue  # probation: not scored
        w = int(r.window[i])
        first = w >= 0 and w not in seen
        seen.add(w)
        top = int(np.argmax(ms[:, a]))
        out.append(
            {
                "row": a,
                "window": w,
                "first": first,
                "member": names[top],
                "level": float(ms[top, a]),
                "gap": gap,
            }
        )
    return out


def cmd_alarms(args: argparse.Namespace) -> int:
    cache = replica.load_cache(args.cache or default_cache("recommended"))
    rows = _rows(cache)
    keys = cache.keys if args.part == "all" else split_files(cache.keys, args.part)
    hits, false = [], []
    print(
        f"{cache.label}, {args.part} ({len(keys)} files): per file, windows found and the member behind each false alarm"
    )
    for k in keys:
        table = alarm_table(cache.files[k], rows[k])
        found = [a for a in table if a["first"]]
        fa = [a for a in table if a["window"] < 0]
        hits += found
        false += fa
        print(
            f"  {k:<55} windows {len(found)}/{rows[k].n_windows}  false {len(fa):>2}  {' '.join(a['member'] for a in fa)}"
        )

    def by_member(alarms: list[dict]) -> str:
        return ", ".join(f"{m} {n}" for m, n in Counter(a["member"] for a in alarms).most_common())

    def levels(alarms: list[dict]) -> str:
        q = np.quantile([a["level"] for a in alarms], [0.25, 0.5, 0.75]) if alarms else [np.nan] * 3
        return " / ".join(f"{v:.2f}" for v in q)

    print(f"first detections {len(hits)}: {by_member(hits)}; top member's level, quartiles {levels(hits)}")
    print(f"false alarms {len(false)}: {by_member(false)}; top member's level, quartiles {levels(false)}")
    for d in GAPS:
        near_h = sum(a["gap"] is not None and a["gap"] <= d for a in hits)
        near_f = sum(a["gap"] is not None and a["gap"] <= d for a in false)
        print(
            f"  within {d:>4} rows of the previous alarm: first detections {near_h}/{len(hits)}, false alarms {near_f}/{len(false)}"
        )
    _write(args.json or OUT / f"alarms-{cache.label}-{args.part}.json", {"hits": hits, "false": false})
    return 0


# -- cv -------------------------------------------------------------------------------------------


def load_family(path: str) -> tuple[dict, str]:
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    if spec is None or spec.loader is None:
        sys.exit(f"cv: cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    found = getattr(mod, "VARIANTS", None)
    if isinstance(found, dict):
        variants = dict(found)
    elif isinstance(found, list | tuple):
        variants = {fn.__name__: fn for fn in found}
    else:
        sys.exit(f"cv: {path} defines no VARIANTS (a dict name -> function, or a list of functions)")
    return variants, getattr(mod, "BASELINE", "base")


def _outputs(fn, files: dict) -> dict:
    outs = {}
    for key, f in files.items():
        o = fn(f)
        outs[key] = np.asarray(o[0] if isinstance(o, tuple) else o, dtype=float)
        if outs[key].shape != (f.n,):
            sys.exit(f"cv: a variant returned shape {outs[key].shape} for {key} ({f.n} rows)")
    return outs


def cmd_cv(args: argparse.Namespace) -> int:
    cache = replica.load_cache(args.cache or default_cache("recommended"))
    fns, baseline = load_family(args.family)
    baseline = args.baseline or baseline
    if baseline not in fns:
        fns = {baseline: lambda f: f.replay()[0], **fns}
    seeds = args.seed or [selection.SEED]
    rows = _rows(cache)
    tune = split_files(cache.keys, "tune")
    files = {k: cache.files[k] for k in tune}
    t0 = time.perf_counter()
    V = {baseline: _outputs(fns[baseline], files)}
    V.update({n: _outputs(fn, files) for n, fn in fns.items() if n != baseline})
    same = all(np.array_equal(V[baseline][k], f.replay()[0]) for k, f in files.items())
    print(f"baseline {baseline!r} {'equals' if same else 'DIFFERS FROM'} the replica of {cache.label}")
    splits = {
        seed: selection.make_splits(tune, [k for k in tune if rows[k].n_windows], seed=seed) for seed in seeds
    }
    first = seeds[0]
    n_loco = sum(s.kind == "loco" for s in splits[first])
    print(
        f"family {Path(args.family).name}: {len(V) - 1} variants + {baseline}, tune {len(tune)} files, "
        f"{len(splits[first])} splits ({n_loco} leave one category out + {len(splits[first]) - n_loco} halves, "
        f"seed {first})"
    )
    doc: dict = {"family": args.family, "cache": str(cache.root), "baseline": baseline, "variants": {}}
    for n, outs in V.items():
        d = _figures(outs, tune, rows)
        print(_line(n, d))
        if n != baseline:
            r = selection.evaluate_family({baseline: V[baseline], n: outs}, rows, splits[first], baseline)
            d["alone"] = _result(r)
            print(f"{'':<17}alone: {r.summary()}")
        doc["variants"][n] = d
    doc["family_cv"] = {}
    for seed, sp in splits.items():
        r = selection.evaluate_family(V, rows, sp, baseline)
        doc["family_cv"][seed] = _result(r)
        verdict = "ACCEPTED" if r.accepted else "rejected"
        print(
            f"family ({len(V) - 1} + {baseline}), seed {seed}: {r.summary()} -> {verdict} "
            f"(bar +{selection.MIN_GAIN:g} points, {100 * selection.MIN_WINS:.0f}% wins)"
        )
    print(f"{time.perf_counter() - t0:.1f}s")
    _write(args.json or OUT / f"cv-{Path(args.family).stem}.json", doc)
    return 0


def _result(r: selection.FamilyResult) -> dict:
    return {
        "gain": r.gain,
        "win": r.win,
        "accepted": r.accepted,
        "loco": vars(r.loco),
        "halves": vars(r.halves),
        "chosen": [[s.split.name, s.chosen, s.gain] for s in r.splits],
    }


def _write(path, doc: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, default=float))
    print(f"wrote {path}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="quality_round", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache", help="member raws from the real cores, for every file of a NAB root")
    c.add_argument("--data", default=os.environ.get(DATA_ENV), help=f"NAB-layout root; default ${DATA_ENV}")
    c.add_argument("--config", default="recommended", help="configuration name or YAML (default recommended)")
    c.add_argument("--out", help="cache directory (default var/quality/raws/<label>)")
    c.set_defaults(fn=cmd_cache)
    r = sub.add_parser("replay", help="the numpy replica over a cache: tune / all scores")
    r.add_argument("--cache", help="cache directory (default var/quality/raws/recommended)")
    r.add_argument("--check", help="the evaluate job's --out (or its <label> directory) to compare with")
    r.add_argument("--label", help="the results' label in --check (default the cached configuration's)")
    r.add_argument("--tolerance", type=float, default=1e-9, help="largest |score difference| accepted")
    r.add_argument("--json", help="summary file (default var/quality/replay-<label>.json)")
    r.set_defaults(fn=cmd_replay)
    a = sub.add_parser("alarms", help="where a cached configuration's alarms fall: windows, members, spacing")
    a.add_argument("--cache", help="cache directory (default var/quality/raws/recommended)")
    a.add_argument(
        "--part",
        choices=("tune", "test", "all"),
        default="tune",
        help="files to look at (default tune: choices are made there; test only to report)",
    )
    a.add_argument("--json", help="the alarms (default var/quality/alarms-<label>-<part>.json)")
    a.set_defaults(fn=cmd_alarms)
    v = sub.add_parser("cv", help="the selection protocol for a family of variants (tune only)")
    v.add_argument("family", help="Python file defining VARIANTS (see above)")
    v.add_argument("--cache", help="cache directory (default var/quality/raws/recommended)")
    v.add_argument("--baseline", help="the baseline variant's name (default the file's BASELINE or 'base')")
    v.add_argument(
        "--seed",
        type=int,
        action="append",
        help=f"seed of the halves (repeatable; default {selection.SEED}); the first is used alone",
    )
    v.add_argument("--json", help="results file (default var/quality/cv-<family>.json)")
    v.set_defaults(fn=cmd_cv)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
