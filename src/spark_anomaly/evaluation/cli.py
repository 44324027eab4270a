"""``evaluate``: replay labelled series through detectors and score them the NAB way.

    python jobs/evaluate.py --data <NAB root> --detector <name> --out <dir>
    python -m spark_anomaly.evaluation ...          (same options)

<name> is a registry detector (seed defaults) or a named configuration (conf/detectors/<name>.yaml,
or a path to a YAML file); repeat --detector to compare several. Without it: "recommended".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import sys
import time
from pathlib import Path

from ..detector_specs import DetectorSpec, resolve, with_overrides
from . import nab_scorer, report, runner, thresholds
from .nab_data import load_windows, read_series, resolve_files, split_files

DATA_ENV = "SPARK_ANOMALY_NAB_DATA"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data",
        default=os.environ.get(DATA_ENV),
        help=f"NAB-layout root (data/, labels/); default ${DATA_ENV}",
    )
    p.add_argument(
        "--detector",
        action="append",
        help="detector or named configuration (repeatable); default: recommended",
    )
    p.add_argument("--out", default="var/evaluate", help="output directory (default: var/evaluate)")
    p.add_argument(
        "--files",
        action="append",
        help="series to evaluate: keys or names, comma-separated, or @list-file (repeatable)",
    )
    p.add_argument(
        "--split",
        choices=["tune", "test"],
        help="evaluate only one part of the fixed split (per category, sorted, every --split-modulo-th file from position 0 is 'tune')",
    )
    p.add_argument("--split-modulo", type=int, default=2)
    p.add_argument(
        "--oos",
        action="store_true",
        help="also quote out of sample: thresholds tuned on the 'tune' part, scored on the 'test' part",
    )
    p.add_argument("--thresholds-in", help="apply thresholds saved by --thresholds-out instead of optimising")
    p.add_argument("--thresholds-out", help="save the optimised thresholds (JSON)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter of the (single) detector; dotted keys for nested ones",
    )
    p.add_argument(
        "--label", help="name to file the results under (default: the detector/configuration name)"
    )
    p.add_argument(
        "--conf-dir",
        action="append",
        help="where named configurations live (default: ./conf/detectors, then the checkout's)",
    )
    p.add_argument("--workers", type=int, default=2, help="parallel worker processes (default 2)")
    p.add_argument("--no-report", action="store_true", help="skip the PNGs and the report page")
    p.add_argument("--quiet", action="store_true", help="no per-series progress")
    return p


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", label).strip("_") or "detector"


def _specs(args: argparse.Namespace) -> list[DetectorSpec]:
    conf_dirs = [Path(d) for d in args.conf_dir] if args.conf_dir else None
    names = args.detector or [None]
    specs = [resolve(n, conf_dirs) for n in names]
    if args.set:
        if len(specs) != 1:
            raise SystemExit("--set applies to a single --detector")
        specs = [with_overrides(specs[0], args.set, args.label)]
    elif args.label:
        if len(specs) != 1:
            raise SystemExit("--label applies to a single --detector")
        s = specs[0]
        specs = [DetectorSpec(args.label, s.detector, s.params, s.source, s.description)]
    out = [DetectorSpec(_safe(s.label), s.detector, s.params, s.source, s.description) for s in specs]
    if len({s.label for s in out}) != len(out):
        raise SystemExit("two detectors would be filed under the same name; use distinct names")
    return out


def _result_dict(res: dict[str, nab_scorer.ProfileResult]) -> dict:
    def enc(t: float) -> float | None:
        return None if math.isinf(t) else t

    return {
        name: {
            "score": r.score,
            "raw": r.raw,
            "threshold": enc(r.threshold),
            "detected_windows": r.tp,
            "missed_windows": r.fn,
            "false_detections": r.fp,
            "precision": r.precision,
            "recall": r.recall,
            "f1": r.f1,
            # points of the normalised score lost, adding up to 100 - score (nab_scorer.Loss)
            "points_lost": {"late": r.lost.late, "missed": r.lost.missed, "false": r.lost.false},
            "per_series": [
                {
                    "series": p.key,
                    "raw": p.raw,
                    "windows": p.windows,
                    "detected": p.tp,
                    "missed": p.fn,
                    "false_detections": p.fp,
                    "lost_late": p.late,
                    "false_cost": p.false_cost,
                }
                for p in r.per_series
            ],
        }
        for name, r in res.items()
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.data:
        raise SystemExit(
            f"--data is required (or set ${DATA_ENV}): the NAB-layout root with data/ and labels/"
        )
    t0 = time.perf_counter()
    specs = _specs(args)
    keys = resolve_files(args.data, args.files)
    if args.split:
        keys = split_files(keys, args.split, args.split_modulo)
    if not keys:
        raise SystemExit("no series to evaluate")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python jobs/evaluate.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    if not args.quiet:
        print(
            f"evaluating {len(specs)} detector(s) on {len(keys)} series from {args.data} with {args.workers} worker(s)",
            file=sys.stderr,
        )

    replays = runner.run(specs, args.data, keys, workers=args.workers, progress=not args.quiet)
    windows = load_windows(args.data)
    series = {k: read_series(args.data, k, windows) for k in keys}
    saved = thresholds.load(args.thresholds_in) if args.thresholds_in else None

    summary: dict = {"command": command, "data": str(args.data), "series": keys, "detectors": {}}
    rows: list[tuple[str, dict[str, nab_scorer.ProfileResult]]] = []
    oos_rows: list[tuple[str, dict, dict, dict]] = []
    tuned: dict[str, dict] = {}
    for spec in specs:
        reps = replays[spec.label]
        for k in keys:
            runner.write_results(out, spec.label, series[k], reps[k])
        corpus = [nab_scorer.prepare(k, reps[k].anomaly_score, series[k].windows) for k in keys]
        fixed = thresholds.for_label(saved, spec.label, args.thresholds_in) if saved is not None else None
        res = nab_scorer.evaluate(corpus, fixed)
        rows.append((spec.label, res))
        entry = {
            "spec": spec.to_dict(),
            "tuned_on": keys,
            "thresholds": {p: r.threshold for p, r in res.items()},
        }
        tuned[spec.label] = entry
        thresholds.save(out / spec.label / "thresholds.json", {spec.label: entry})
        summary["detectors"][spec.label] = {
            "spec": spec.to_dict(),
            "thresholds_from": args.thresholds_in or "optimised on these series",
            "seconds": sum(reps[k].seconds for k in keys),
            "results": _result_dict(res),
        }
        if args.oos:
            tune_keys, test_keys = (
                split_files(keys, "tune", args.split_modulo),
                split_files(keys, "test", args.split_modulo),
            )
            by_key = {c.key: c for c in corpus}
            tune_res = nab_scorer.evaluate([by_key[k] for k in tune_keys])
            test_c = [by_key[k] for k in test_keys]
            test_res = nab_scorer.evaluate(test_c, {p: r.threshold for p, r in tune_res.items()})
            test_in = nab_scorer.evaluate(test_c)
            oos_rows.append((spec.label, tune_res, test_res, test_in))
            summary["detectors"][spec.label]["oos"] = {
                "tune_series": tune_keys,
                "test_series": test_keys,
                "tune": _result_dict(tune_res),
                "test_with_tune_thresholds": _result_dict(test_res),
                "test_in_sample": _result_dict(test_in),
            }
    if args.thresholds_out:
        thresholds.save(args.thresholds_out, tuned)

    table = report.score_table_md(rows)
    md = [
        f"# NAB scores\n\nCommand: `{command}`\n\nData: `{args.data}`, {len(keys)} series, "
        f"{sum(c.n_windows for c in [nab_scorer.prepare(k, series[k].values * 0, series[k].windows) for k in keys])} scorable windows. "
        f"Thresholds: {args.thresholds_in or 'optimised over these series'}.\n",
        table,
        "",
    ]
    if oos_rows:
        md += [
            "## Out of sample\n",
            f"Fixed split (per category, sorted names, position % {args.split_modulo} == 0 -> tune). "
            "Thresholds tuned on *tune*, applied to *test*.\n",
            "| detector | tune (in-sample) standard | test (out-of-sample) standard | test low FP | test low FN | test in-sample standard |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for label, tr, te, ti in oos_rows:
            md.append(
                f"| {label} | {tr['standard'].score:.1f} | {te['standard'].score:.1f} | "
                f"{te['reward_low_FP_rate'].score:.1f} | {te['reward_low_FN_rate'].score:.1f} | {ti['standard'].score:.1f} |"
            )
        md.append("")
    (out / "summary.md").write_text("\n".join(md) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")

    if not args.no_report:
        jobs, images = [], {}
        for label, res in rows:
            thr = res["standard"].threshold
            for k in keys:
                path = out / "report" / label / (k[:-4] + ".png")
                images.setdefault(label, {})[k] = path
                jobs.append(report.PlotJob(path, f"{label} — {k}", series[k], replays[label][k], thr))
        if not args.quiet:
            print(f"rendering {len(jobs)} plots", file=sys.stderr)
        report.render_all(jobs, workers=args.workers)
        report.write_page(out, rows, images, command)

    print("\n".join(md))
    if not args.quiet:
        print(f"done in {time.perf_counter() - t0:.1f}s; results in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
