#!/usr/bin/env python3
"""Throughput benchmarks (issue 5): thin CLI over spark_anomaly.benchmark.

Needs a broker of its own (make bench / bench-quick start one on port 29092). Writes the
markdown section to docs/benchmarks-perf.md, the figures behind it to docs/benchmarks-perf.json
and this run's alone to <work>/results.json. A run with --only re-measures just those rows and
merges them into the recorded figures (the page names the run of each row); a run without it
replaces them all.

  .venv/bin/python scripts/bench.py --quick --bootstrap 127.0.0.1:29092
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))  # works without `pip install -e`

from spark_anomaly import bench_held as BH  # noqa: E402
from spark_anomaly import bench_linear as BL  # noqa: E402
from spark_anomaly import bench_report as R  # noqa: E402
from spark_anomaly import bench_stream as BS  # noqa: E402
from spark_anomaly import bench_train as BT  # noqa: E402
from spark_anomaly import benchmark as B  # noqa: E402
from spark_anomaly.bench_merge import merge  # noqa: E402
from spark_anomaly.config import load_config  # noqa: E402
from spark_anomaly.session import build_spark  # noqa: E402

# Stateful catch-up runs in the job's own catch-up batches for it (`detect.stateful_max_offsets_per_trigger`,
# 1M records by default), cut to a third of the run so the median is a batch that is neither
# the first (JIT, Python worker start-up) nor the last. Each batch pays a cost per bucket and per
# series (state store commit, cad's state dump and, on the other Python worker, its restore), so a
# harness with smaller batches than the job understates it: cad over 2M events ran at 5.8k events/s
# (median batch; 413 s wall) in 250k-event batches and at 8.7k (238 s) in 1M ones.
STATEFUL_MIN_BATCHES = 3


# --only names whose rows are a family of keys: a re-run replaces the whole family
GROUPS = {
    "parse": "parse-",
    "write": "write-",
    "train-delta": "train-",
    "latency": "latency-",
    "scale": "scale-",
    "steady": "steady-",
    "linear": "linear-",
    "held": "held-",
}


def load_json(path: Path) -> dict:
    import json

    return json.loads(path.read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1M events (stateful 300k) instead of 5M (1M)")
    p.add_argument("--bootstrap", default="127.0.0.1:29092")
    p.add_argument("--work", default="var/bench")
    p.add_argument("--out", default="docs/benchmarks-perf.md")
    p.add_argument(
        "--results",
        default="docs/benchmarks-perf.json",
        help="recorded figures: a run with --only merges into them, a run without replaces them",
    )
    p.add_argument(
        "--only",
        default="",
        help="comma list of: pandas,parse,noop,zscore,zscore-anomalies,write,stateful,plain,"
        "train-delta,latency,scale,linear,held,state,steady,soak (train on JSON always runs)",
    )
    p.add_argument(
        "--stateful",
        default="",
        help=f"comma list of stateful detectors to run (default all: {','.join(B.STATEFUL)})",
    )
    p.add_argument("--set", "-s", action="append", default=[], help="extra config override KEY=VALUE")
    p.add_argument(
        "--render-from", metavar="RESULTS_JSON", help="only re-render the markdown from a results.json"
    )
    a = p.parse_args()
    if a.render_from:
        data = load_json(Path(a.render_from))
        (ROOT / a.out).write_text(
            B.render(data["meta"], data["results"]) + R.render(data["meta"], data["results"])
        )
        return 0
    logging.basicConfig(level=logging.WARNING)
    # pandas FutureWarnings from pyspark's own serializer would flood the log (workers inherit this)
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    sizes = B.QUICK if a.quick else B.FULL
    more = R.QUICK if a.quick else R.FULL
    only = set(filter(None, a.only.split(",")))
    recorded = load_json(ROOT / a.results) if only and (ROOT / a.results).exists() else None
    want = lambda k: not only or k in only  # noqa: E731
    stateful_dets = [d for d in B.STATEFUL if not a.stateful or d in a.stateful.split(",")]
    unknown = set(filter(None, a.stateful.split(","))) - set(B.STATEFUL)
    if unknown:
        p.error(f"--stateful: unknown detector(s) {sorted(unknown)}; choose from {list(B.STATEFUL)}")
    work = (ROOT / a.work).resolve()
    t_all = time.perf_counter()
    args = " ".join(f"--{k} {v}" for k, v in (("only", a.only), ("stateful", a.stateful)) if v)
    command = ("make bench-quick" if a.quick else "make bench") + (f' BENCH_ARGS="{args}"' if args else "")

    def cfg_for(run: str, topic: str):
        return load_config(
            None,
            [
                f"kafka.bootstrap_servers={a.bootstrap}",
                f"kafka.topic={topic}",
                "kafka.starting_offsets=earliest",
                f"model.table={work}/model",
                f"model.json_dir={work}/model-json",
                f"train.source_path={work}/history",
                "train.source_format=json",
                f"detect.checkpoint={work}/{run}/ckpt",
                f"detect.sink_table={work}/{run}/scored",
                f"detect.dead_letter_table={work}/{run}/dead",
                "detect.trigger_seconds=0",
                *a.set,
            ],
        )

    for sub in (
        "zscore",
        "zscore-anomalies",
        "noop",
        *[f"stateful-{d}" for d in B.STATEFUL],
        *R.WORK_DIRS,
        "model",
        "model-json",
    ):
        shutil.rmtree(work / sub, ignore_errors=True)
    print("producing data ...", flush=True)
    catchup = any(map(want, ("noop", "zscore", "zscore-anomalies", "write", "plain")))
    prod_main = B.produce(
        a.bootstrap,
        "bench-main",
        sizes["events"],
        str(work / "history"),
        repeats=sizes["catchup_repeats"] if catchup else 1,
    )
    prod_st = B.produce(a.bootstrap, "bench-stateful", sizes["stateful_events"]) if want("stateful") else None
    print(f"produced {prod_main['records']:,} (+files) at {prod_main['records_per_s']:,}/s", flush=True)

    cfg = cfg_for("zscore", "bench-main")
    spark = build_spark(cfg, "spark-anomaly-bench")
    catchup_events = sizes["events"] * sizes["catchup_repeats"]
    res: dict[str, B.Result] = {}
    machine = B.machine_info(ROOT)

    def save(final: bool = False) -> None:
        """Write results.json and the markdown after every measurement, so a cut run keeps its figures."""
        meta = {
            "command": command,
            "mode": "quick" if a.quick else "full",
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "total_s": time.perf_counter() - t_all,
            "complete": final,
            "machine": machine,
            "max_offsets_per_trigger": cfg.kafka.max_offsets_per_trigger,
            "catchup_repeats": sizes["catchup_repeats"],  # what this mode's catch-up rows read
            "produce": {"main": prod_main, "stateful": prod_st},
            "sizes": more,
        }
        results = {k: v.as_dict() for k, v in res.items()}
        B.write_json(work / "results.json", {"meta": meta, "results": results})
        meta, results = merge(recorded, meta, results, tuple(GROUPS[g] for g in only if g in GROUPS))
        B.write_json(ROOT / a.results, {"meta": meta, "results": results})
        (ROOT / a.out).write_text(B.render(meta, results) + R.render(meta, results))
        if final:
            print(f"wrote {ROOT / a.out} in {meta['total_s']:.0f} s", flush=True)

    # -- training (its model is the one the zscore path joins with: 10k series x 2 metrics)
    r, tr = B.run_train(spark, cfg)
    res["train"] = r
    print("train", r.as_dict(), flush=True)
    save()
    if want("pandas"):
        files = sorted(str(f) for f in (work / "history").glob("readings-*.jsonl"))
        res["pandas"] = B.pandas_train(files)
        print("pandas", res["pandas"].as_dict(), flush=True)
        save()
    if want("parse"):
        for i, pr in enumerate(
            B.parse_variants(spark, str(work / "history" / "readings-*.jsonl"), cfg.input)
        ):
            res[f"parse-{i}"] = pr
            print(pr.name, pr.as_dict(), flush=True)
        save()

    # -- detect catch-up
    if want("noop"):
        c = cfg_for("noop", "bench-main")
        res["noop"] = B.timed_stream(
            "read + parse → noop sink (ceiling)", catchup_events, lambda: B.run_noop(spark, c)
        )
        print("noop", res["noop"].as_dict(), flush=True)
        save()
    if want("zscore"):
        c = cfg_for("zscore", "bench-main")
        res["zscore"] = B.timed_stream(
            "detect zscore → Delta (+dead-letter check)",
            catchup_events,
            lambda: B.run_detect_zscore(spark, c),
        )
        print("zscore", res["zscore"].as_dict(), flush=True)
        save()
    if want("zscore-anomalies"):
        # the same job with detect.output=anomalies: isolates the cost of writing every scored row
        c = cfg_for("zscore-anomalies", "bench-main")
        c.detect.output = "anomalies"
        res["zscore-anomalies"] = B.timed_stream(
            "detect zscore, output=anomalies → Delta", catchup_events, lambda: B.run_detect_zscore(spark, c)
        )
        print("zscore-anomalies", res["zscore-anomalies"].as_dict(), flush=True)
        save()
    if want("write"):
        # the write of the result rows alone (from memory, the zscore run's output), against the ceiling
        scored = cfg_for("zscore", "bench-main")
        for i, wr in enumerate(B.write_ceiling(spark, scored.path(scored.detect.sink_table), str(work))):
            res[f"write-{i}"] = wr
            print(wr.name, wr.as_dict(), flush=True)
        save()
    # -- plain single-process alternative
    if want("plain"):
        model = B.model_arrays(spark, cfg.path(cfg.model.table))
        res["plain"] = B.plain_zscore(a.bootstrap, "bench-main", model)
        print("plain", res["plain"].as_dict(), flush=True)
        save()
    if want("stateful"):
        for d in stateful_dets:
            c = cfg_for(f"stateful-{d}", "bench-stateful")
            c.kafka.max_offsets_per_trigger = min(
                c.kafka.max_offsets_per_trigger or sizes["stateful_events"],
                sizes["stateful_events"] // STATEFUL_MIN_BATCHES,
            )
            res[d] = B.timed_stream(
                f"detect stateful {d} → Delta",
                sizes["stateful_events"],
                lambda c=c, d=d: B.run_stateful(spark, c, d),
                stop_after_input=True,
            )
            print(d, res[d].as_dict(), flush=True)
            save()

    # -- issue 5 rows 2-4 and the soak (bench_train / bench_stream; rendered by bench_report)
    if want("train-delta"):
        res.update(BT.run_all(spark, cfg, work, more["train_sizes"], more["train_new"], more["pandas_max"]))
        save()
    if want("state"):
        res["state"] = B.Result("pickled detector state per series", 0, 0.0, extra=BS.state_bytes(B.STATEFUL))
        print("state", res["state"].extra, flush=True)
        save()
    if want("latency"):
        for rate in more["latency_rates"]:
            c = cfg_for(f"latency-{rate}", f"bench-latency-{rate}")
            c.kafka.starting_offsets = "earliest"
            res[f"latency-{rate}"] = BS.latency(spark, c, a.bootstrap, rate, more["latency_s"])
            print(f"latency-{rate}", res[f"latency-{rate}"].extra, flush=True)
            save()
    if want("scale"):
        for series in more["scale_series"]:
            c = cfg_for(f"scale-{series}", f"bench-scale-{series}")
            c.model.table = str(work / f"scale-{series}" / "model")
            res[f"scale-{series}"] = BS.scale(spark, c, a.bootstrap, series, more["scale_events"])
            print(f"scale-{series}", res[f"scale-{series}"].as_dict(), flush=True)
            save()
    if want("linear"):
        res.update(BL.run(spark, cfg_for, a.bootstrap, more["linear_events"], more["linear_batch_events"]))
        for k in (k for k in res if k.startswith("linear-")):
            print(k, res[k].as_dict(), flush=True)
        save()
    if want("held"):
        d = more["held_detector"]
        c = cfg_for("held", "bench-held")
        c.model.table = str(work / "held" / "model")  # none: the detector learns every series online
        res[f"held-{d}"] = BH.run(
            spark, c, a.bootstrap, d, more["held_sensors"], more["held_events"], more["held_batch_events"]
        )
        print(f"held-{d}", res[f"held-{d}"].as_dict(), flush=True)
        save()
    if want("steady"):
        for d in more["steady_detectors"]:
            c = cfg_for(f"steady-{d}", f"bench-steady-{d}")
            res[f"steady-{d}"] = BS.steady_state(
                spark,
                c,
                a.bootstrap,
                d,
                more["steady_sensors"],
                more["steady_warm_ticks"],
                more["steady_ticks"],
                more["steady_batch_events"],
            )
            print(f"steady-{d}", res[f"steady-{d}"].as_dict(), flush=True)
            save()
    if want("soak"):
        c = cfg_for("soak", "bench-soak")
        from spark_anomaly.config import DetectorSpec

        c.detect.detectors = [DetectorSpec("zscore", {"k": 4.0}), DetectorSpec("ema", {})]
        res["soak"] = BS.soak(spark, c, a.bootstrap, more["soak_rate"], more["soak_s"], more["soak_sensors"])
        print("soak", res["soak"].extra, flush=True)
        save()

    spark.stop()

    save(final=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
