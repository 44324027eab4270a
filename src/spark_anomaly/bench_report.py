"""Markdown for the latency, training, scale, state and soak rows (appended to ``benchmark.render``).

Every row carries its reference and the ratio to it, plus the 1-minute load average, because the
benchmark machine is shared.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .bench_train import new_tag
from .benchmark import fmt_rate

QUICK: dict[str, Any] = {
    "train_sizes": [10_000_000],
    # incremental runs per history size, in this order on one table (bench_train.run_all)
    "train_new": {10_000_000: [0, 1_000_000, 5_000_000] * 2},
    "pandas_max": 10_000_000,
    "latency_rates": [5_000, 20_000, 50_000],
    "latency_s": 20,
    "scale_series": [1_000, 100_000, 1_000_000],
    "scale_events": 200_000,
    "soak_rate": 1_000,
    "soak_s": 120,
    "soak_sensors": 1_000,
    # a stateful configuration once its state is full (bench_stream.steady_state): knn needs
    # 6,000 one-minute readings per series before all of its references exist
    "steady_detectors": ["recommended"],
    "steady_sensors": 20,
    "steady_warm_ticks": 6_000,
    "steady_ticks": 1_500,
    "steady_batch_events": 10_000,
    # cost against events (bench_linear): the zscore path over the last N events of one topic
    "linear_events": [250_000, 500_000, 1_000_000],
    "linear_batch_events": 125_000,
    # cost against series held (bench_held): one stateful detector, the state filling then full
    "held_detector": "range",
    "held_sensors": 100_000,
    "held_events": 200_000,
    "held_batch_events": 10_000,
}
FULL: dict[str, Any] = {
    **QUICK,
    "train_sizes": [10_000_000, 100_000_000],
    "train_new": {10_000_000: [0, 1_000_000, 5_000_000] * 2, 100_000_000: [0, 1_000_000] * 2},
    "latency_s": 120,
    "scale_events": 1_000_000,
    "soak_s": 1_800,
    "steady_sensors": 200,
    "steady_batch_events": 100_000,
    "linear_events": [1_000_000, 4_000_000, 16_000_000],
    "linear_batch_events": 1_000_000,
    "held_sensors": 500_000,
    "held_events": 1_000_000,
    "held_batch_events": 20_000,
}
WORK_DIRS = [
    *[f"latency-{r}" for r in QUICK["latency_rates"]],
    *[f"scale-{s}" for s in QUICK["scale_series"]],
    "soak",
    *[f"steady-{d}" for d in QUICK["steady_detectors"]],
    *[f"linear-{n}" for n in {*QUICK["linear_events"], *FULL["linear_events"]}],
    "held",
]
TRAIN_TARGET = 5_000_000  # rows/s on two cores (issue 5)
P99_TARGET_MS = 2_000  # at 20k events/s (issue 5)


def _load(r: dict) -> str:
    return f"{r['load_before']:.2f}→{r['load_after']:.2f}"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}×" if a and b else "–"


def _train(results: dict[str, dict]) -> list[str]:
    keys = [k for k in results if k.startswith("train-") and k != "train"]
    if not keys:
        return []
    out = [
        "### Training over a Delta history (`train.run`, file source)",
        "",
        "History generated in Spark (`spark.range` → `id`, `ts`, `temp`, `hum`; 10,000 sensors, one record per "
        "sensor per minute, event-time ordered, 2.5M records per file), one record = 2 readings (temp, hum). "
        "*full* = `train.run(..., 'full')` end to end (model lookup, one aggregation pass, Delta model "
        "write, JSON export); *incremental +k* = k later records appended (none for +0), then "
        "`train.run(..., 'incremental')`, the runs of one history in the order shown on the same tables, after "
        "a first +0 run that warms the JVM (its own row, left out of the fit below). "
        f"Reference: pandas (pyarrow read + groupby, 1 process) on the same files, and the issue's target of "
        f"{TRAIN_TARGET / 1e6:g}M rows/s on two cores.",
        "",
        "| measurement | records | wall s | rows/s (wall) | rows/CPU-s | reference | ratio | vs 5M rows/s | load1 |",
        "|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for k in keys:
        r = results[k]
        tag = k.rsplit("-", 1)[-1]
        if k.startswith(("train-full", "train-full2")):
            ref_k = f"train-pandas-{tag}" if f"train-pandas-{tag}" in results else None
            ref_text, ratio = "pandas, same data (wall rows/s)", None
            if ref_k:
                ratio = _ratio(r["wall_rps"], results[ref_k]["wall_rps"])
            else:
                ref_text, ratio = "pandas: not run (does not fit / too slow)", "–"
        elif k.startswith("train-inc"):
            full = results.get(f"train-full-{tag}")
            ref_text = f"full run on {tag} (wall s: inc / full)"
            ratio = _ratio(r["wall_s"], full["wall_s"]) if full else "–"
        else:
            ref_text, ratio = "–", "–"
        out.append(
            f"| {r['name']} | {r['events']:,} | {r['wall_s']:.1f} | {fmt_rate(r['wall_rps'])} | "
            f"{fmt_rate(r.get('cpu_rps'))} | {ref_text} | {ratio} | "
            f"{r['wall_rps'] / TRAIN_TARGET:.2f}× | {_load(r)} |"
        )
    return [*out, "", *_train_fit(results)]


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float] | None:
    """Least-squares (intercept, slope) of ys on xs; None without two distinct xs."""
    if len(xs) < 2 or len(set(xs)) < 2:
        return None
    slope, intercept = np.polyfit(xs, ys, 1)
    return float(intercept), float(slope)


def _train_fit(results: dict[str, dict]) -> list[str]:
    """Incremental cost = fixed + per new row, fitted per history size over its incremental runs."""
    by_tag: dict[str, list[dict]] = {}
    for k, r in results.items():
        if k.startswith("train-inc-"):  # not train-inc1st: the JVM's first incremental run
            by_tag.setdefault(k.rsplit("-", 1)[-1], []).append(r)
    rows = []
    for tag, runs in by_tag.items():
        xs = [float(r["extra"].get("new_records", r["events"])) for r in runs]
        wall = fit_line(xs, [r["wall_s"] for r in runs])
        cpus = [r.get("cpu_s") for r in runs]
        cpu = fit_line(xs, cpus) if all(c is not None for c in cpus) else None
        if wall is None:
            continue
        jobs = sorted({r["extra"].get("spark_jobs") for r in runs} - {None})
        full = results.get(f"train-full2-{tag}") or results.get(f"train-full-{tag}")
        rows.append(
            f"| {tag} | {', '.join('+' + new_tag(x) for x in xs)} | {wall[0]:.2f} | {wall[1] * 1e6:.2f} | "
            f"{fmt_rate(1 / wall[1] if wall[1] > 0 else None)} | "
            + (f"{cpu[0]:.2f} | {cpu[1] * 1e6:.2f} | " if cpu else "– | – | ")
            + f"{_span(jobs)} | "
            f"{_ratio(wall[0], full['wall_s'] if full else None)} | "
            f"{_load_range(runs)} |"
        )
    if not rows:
        return []
    return [
        "Incremental cost against the new records: least-squares line over the incremental runs of "
        "each history (fixed = intercept, the cost of a run with no new data; per 1M = slope). "
        "Reference: the same history's full run (2nd run when there is one; ratio = fixed / full wall s).",
        "",
        "| history | runs | fixed wall s | wall s per 1M new | marginal rows/s (wall) | fixed CPU-s | "
        "CPU-s per 1M new | Spark jobs per run | fixed / full | load1 |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---|",
        *rows,
        "",
    ]


def _span(values: list[int]) -> str:
    if not values:
        return "–"
    return str(values[0]) if values[0] == values[-1] else f"{values[0]}–{values[-1]}"


def _load_range(runs: list[dict]) -> str:
    loads = [v for r in runs for v in (r["load_before"], r["load_after"])]
    return f"{min(loads):.2f}–{max(loads):.2f}"


def _latency(results: dict[str, dict]) -> list[str]:
    keys = [k for k in results if k.startswith("latency-")]
    if not keys:
        return []
    out = [
        "### Latency at fixed input rates (zscore path, produce → committed in the Delta sink)",
        "",
        "A paced `loadgen live` process (10,000 sensors) produces at the target rate while `detect.start` runs "
        "with a processing-time trigger. Produce time = Kafka record timestamp (CreateTime, set by the "
        "producer client, linger 20 ms included); commit time = `commitInfo.timestamp` of the sink commit "
        "whose `add` files hold the event's rows (`_metadata.file_path`). The first seconds (warm-up) are "
        "left out. Events still uncommitted when the run was stopped (the job fell behind) count with the "
        "stop time as commit time, so their latency is a lower bound. "
        f"Reference: the issue's target p99 < {P99_TARGET_MS / 1000:g} s (ratio = p99 / 2 s).",
        "",
        "| target events/s | achieved | trigger s | events measured | p50 ms | p95 ms | p99 ms | max ms | "
        "batches | median batch ms (addBatch) | caught up (not committed) | p99 / 2 s | JVM max MiB | load1 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for k in keys:
        r, e = results[k], results[k]["extra"]
        jvm = e.get("memory", {}).get("jvm_mib", {}).get("max", "–")
        out.append(
            f"| {e['target_rate']:,.0f} | {fmt_rate(e.get('achieved_rate'))} | {e['trigger_s']:g} | "
            f"{e['events_measured']:,} | {e['p50_ms']:,} | {e['p95_ms']:,} | {e['p99_ms']:,} | "
            f"{e['max_ms']:,} | {e['batches']} | {e.get('median_batch_ms')} "
            f"({e.get('median_phase_ms', {}).get('addBatch', '–')}) | {e['caught_up']} ({e.get('not_committed', 0):,}) | "
            f"{e['p99_ms'] / P99_TARGET_MS:.2f}× | {jvm} | {_load(r)} |"
        )
    return [*out, ""]


def _mib(b: int | None) -> str:
    return f"{b / 2**20:.2f}" if b is not None else "–"


def _broadcast_ms(e: dict) -> str:
    ms = e.get("broadcast_ms")
    if not ms:
        return "–"
    return f"{sum(ms.values()):,} ({ms['collectTime']:,} / {ms['buildTime']:,} / {ms['broadcastTime']:,})"


def _scale(results: dict[str, dict]) -> list[str]:
    keys = [k for k in results if k.startswith("scale-")]
    out: list[str] = []
    if keys:
        base = results[keys[0]]
        out += [
            "### Scale: model size (zscore path, available-now catch-up)",
            "",
            "Readings of series/2 sensors (loadgen) against a synthetic model of that many series; memory "
            "sampled every 0.5 s over the run (local mode: driver and executor are one JVM). *est. MiB* = "
            "Spark's plan-size estimate of the model frame (from the Delta files, compressed); *broadcast "
            "MiB* = what the broadcast exchange reported building (the hash relation in memory, "
            "allocated pages included), and *per-batch broadcast ms* its collect / build / broadcast "
            "times (median of two warm runs over a 1,000-record batch, the model cached as the job holds "
            "it): a micro-batch pays them every time, since a plan's broadcast is not shared with the "
            "next one; a model above `model.broadcast_max_series` (250,000 by default) is not broadcast "
            "but kept hash-partitioned by series, and each batch is shuffled to it (–). *join* = the join "
            "in the executed plan of the same scoring. Reference: the "
            f"{int(base['extra']['model_rows']):,}-series run (ratio of events/CPU-s).",
            "",
            "| model series | events | wall s | events/s (wall) | events/s (median batch) | events/CPU-s | "
            "est. MiB | broadcast MiB | per-batch broadcast ms | join | JVM max MiB | Python driver max MiB | "
            "Python workers max MiB | ratio | load1 |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
        ]
        for k in keys:
            r, e = results[k], results[k]["extra"]
            mem = e.get("memory", {})

            def mx(name: str, mem: dict = mem) -> str:
                return str(mem.get(name, {}).get("max", "–"))

            out.append(
                f"| {int(e['model_rows']):,} | {r['events']:,} | {r['wall_s']:.1f} | {fmt_rate(r['wall_rps'])} | "
                f"{fmt_rate(r.get('median_rps'))} | {fmt_rate(r.get('cpu_rps'))} | "
                f"{_mib(e.get('est_broadcast_bytes'))} | {_mib(e.get('broadcast_bytes'))} | {_broadcast_ms(e)} | "
                f"{e['join']} | {mx('jvm_mib')} | {mx('py_driver_mib')} | {mx('py_workers_mib')} | "
                f"{_ratio(r.get('cpu_rps'), base.get('cpu_rps'))} | {_load(r)} |"
            )
        out.append("")
    if "state" in results:
        st = results["state"]["extra"]
        first = next(iter(st.values()))
        marks = first.get("readings", [first["readings_seen"]])
        out += [
            "Stateful detector state per series: pickled `get_state()` of each core after "
            + " and ".join(f"{m:,}" for m in marks)
            + " one-minute readings of one series with two decimals, like the load generator's "
            "(default parameters), per series and detector, before the zstd compression of the "
            "bucket's state row (which takes small states down several-fold, range's 14x, and "
            "recommended's float histories hardly, 1.1x):",
            "",
            "| detector | " + " | ".join(st) + " |",
            "|---|" + "---:|" * len(st),
        ]
        for i, m in enumerate(marks):
            sizes = [v.get("bytes", [v["bytes_per_series"]])[i] for v in st.values()]
            out.append(
                f"| bytes per series after {m:,} readings | " + " | ".join(f"{b:,}" for b in sizes) + " |"
            )
        out.append("")
    return out


def _soak(results: dict[str, dict]) -> list[str]:
    if "soak" not in results:
        return []
    r, e = results["soak"], results["soak"]["extra"]
    mem = e.get("memory", {})
    out = [
        f"### Soak: {r['name']} ({', '.join(e['detectors'])}, {e['sensors']:,} sensors)",
        "",
        f"Achieved {fmt_rate(e.get('achieved_rate'))} events/s, {r['events']:,} events, caught up at the end: "
        f"{e['caught_up']}; {mem.get('samples', 0)} samples; load1 {_load(r)}. Slope = least-squares "
        "fit over the second half of the run (after warm-up); a flat run has slopes near 0 relative to the "
        "level. Reference for each quantity: its own start value (ratio = end / start).",
        "",
        "| quantity | start | end | max | slope per min (2nd half) | end / start |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for k, v in mem.items():
        if isinstance(v, dict):
            out.append(
                f"| {k} | {v['start']:,} | {v['end']:,} | {v['max']:,} | {v['slope_per_min_2nd_half']} | "
                f"{_ratio(v['end'], v['start'])} |"
            )
    return [*out, ""]


def _halves(ms: list[int]) -> str:
    """Median batch ms of the first and second half of a run (its first batch left out: JIT, the
    sink's history read), and the least-squares slope over them."""
    steady = ms[1:]
    if len(steady) < 2:
        return "–"
    half = len(steady) // 2
    line = fit_line(list(range(len(steady))), [float(x) for x in steady])
    slope = f"{line[1]:+,.0f}" if line else "–"
    return f"{np.median(steady[:half]):,.0f} → {np.median(steady[half:]):,.0f} ({slope})"


def _linear(results: dict[str, dict]) -> list[str]:
    keys = sorted((k for k in results if k.startswith("linear-")), key=lambda k: results[k]["events"])
    if not keys:
        return []
    base = results[keys[0]]
    out = [
        "### Cost against events (zscore path, every scored reading to Delta)",
        "",
        "The detect job (available-now, every scored reading and the dead-letter check, as the first "
        "table's zscore row) over the last N events of one topic of the same seed-003 JSON (10,000 "
        "sensors), each run on a fresh sink and checkpoint, smallest first in one JVM, in batches of "
        f"{base['extra']['batch_events']:,} events. *Sink rows* should be 2 per event (temp, hum). "
        "*Batch ms* = median `triggerExecution` of the first and the second half of the run's batches "
        "(its first batch left out), and the least-squares slope in ms per batch: a cost that grew "
        "with what the job had already written would show here. Reference: the smallest run "
        "(ratio of events/CPU-s; ≥ 1 means the cost per event did not grow).",
        "",
        "| events | batches | wall s | events/s (wall) | events/s (median batch) | CPU-s | events/CPU-s | "
        "sink rows | batch ms: 1st half → 2nd half (slope) | ratio | load1 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for k in keys:
        r, e = results[k], results[k]["extra"]
        rows = e.get("sink_rows")
        rows_text = (
            "–" if rows is None else f"{rows:,}" + ("" if rows == 2 * r["events"] else " (≠ 2 per event)")
        )
        out.append(
            f"| {r['events']:,} | {r['batches']} | {r['wall_s']:.1f} | {fmt_rate(r['wall_rps'])} | "
            f"{fmt_rate(r.get('median_rps'))} | {r['cpu_s']:.1f} | {fmt_rate(r.get('cpu_rps'))} | {rows_text} | "
            f"{_halves(e.get('batch_ms', []))} | {_ratio(r.get('cpu_rps'), base.get('cpu_rps'))} | {_load(r)} |"
        )
    cpu = fit_line([float(results[k]["events"]) for k in keys], [results[k]["cpu_s"] for k in keys])
    if cpu:
        out += [
            "",
            f"Least-squares line over these runs: CPU-s = {cpu[0]:.1f} fixed + {cpu[1] * 1e6:.2f} per 1M events "
            f"({fmt_rate(1 / cpu[1] if cpu[1] > 0 else None)} events per marginal CPU-s).",
        ]
    return [*out, ""]


HELD_BINS = ((0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))


def held_bins(
    held: list[int], ms: list[int], rows: list[int]
) -> list[tuple[str, list[int], list[int], list[int]]]:
    """Batches (the first left out: JIT, worker start) grouped by the share of all series held when
    they started: quarters while the state fills, then "all" once every series is held. Each group
    is (name, held, ms, rows), empty groups dropped. ``held`` has one more element than the
    batches: the series held after the last one, i.e. all of them."""
    total = held[-1] if held else 0
    batches = list(zip(held[:-1], ms, rows, strict=True))[1:]
    groups = [
        (f"{lo:.0%}–{hi:.0%}", lambda h, lo=lo, hi=hi: lo * total <= h < hi * total) for lo, hi in HELD_BINS
    ]
    groups.append(("all", lambda h: h >= total))
    out = []
    for name, inside in groups:
        sel = [b for b in batches if total and inside(b[0])]
        if sel:
            out.append((name, [b[0] for b in sel], [b[1] for b in sel], [b[2] for b in sel]))
    return out


def _span(values: list[int]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:,}" if lo == hi else f"{lo:,}–{hi:,}"


def _state_mb(e: dict) -> str:
    """The state a batch wrote once every series was held (median; runs before it was recorded
    have none)."""
    written = [
        b for b, h in zip(e.get("state_bytes") or [], e["held"], strict=False) if b and h >= e["held"][-1]
    ]
    return f", state written a batch with all held {np.median(written) / 1e6:,.1f} MB" if written else ""


def _held(results: dict[str, dict]) -> list[str]:
    keys = [k for k in results if k.startswith("held-")]
    if not keys:
        return []
    out = [
        "### Cost against series held (stateful path)",
        "",
        "One stateful detector alone (available-now, to Delta) over a topic of many sensors (two metrics "
        "each, seed-003 JSON) in small batches, so the series its state holds grow from none to all during "
        "the run. Each micro-batch reads and rewrites the state row of every bucket it touches "
        "(`detect.state_buckets`); a cost that followed the series held rather than the events read would "
        "show as batches slowing down row by row. *Held* = series whose first sink row came from an "
        "earlier batch (counted from the sink); while the state fills, a batch's series are new to it, "
        "after that every series it meets is held. The first batch is left out. Reference: the first row "
        "(ratio of median batch ms; ≤ 1.2× means the held state costs little).",
        "",
        "| detector | series held before the batch | share of all | batches | median batch ms | "
        "events/s (median batch) | ratio | load1 |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for k in keys:
        r, e = results[k], results[k]["extra"]
        bins = held_bins(e["held"], e["batch_ms"], e["batch_rows"])
        base = float(np.median(bins[0][2])) if bins else None
        for name, held, ms, rows in bins:
            med = float(np.median(ms))
            rate = float(np.median([n / (t / 1000) for n, t in zip(rows, ms, strict=True) if t]))
            out.append(
                f"| {e['detector']} | {_span(held)} | {name} | {len(ms)} | {med:,.0f} | "
                f"{fmt_rate(rate)} | {_ratio(med, base)} | {_load(r)} |"
            )
        line = fit_line([float(h) for h in e["held"][1:-1]], [float(t) for t in e["batch_ms"][1:]])
        if line:
            out += [
                "",
                f"{e['detector']}: {e['sensors']:,} sensors, {e['held'][-1]:,} series held at the end, "
                f"{len(e['batch_ms'])} batches of {e['batch_events']:,} events, {e['state_buckets']} "
                f"buckets, {r['cpu_s']:.1f} CPU-s, sink rows {e['sink_rows']:,}{_state_mb(e)}. Least-squares line: "
                f"batch ms = {line[0]:,.0f} {line[1] * 1e5:+,.1f} per 100k series held.",
            ]
    return [*out, ""]


def render(meta: dict[str, Any], results: dict[str, dict]) -> str:
    parts = (
        _train(results)
        + _latency(results)
        + _scale(results)
        + _linear(results)
        + _held(results)
        + _soak(results)
    )
    return ("\n".join(parts) + "\n") if parts else ""
