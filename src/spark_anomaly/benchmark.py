"""Throughput benchmarks of the detect and train jobs, against their plain references.

Used by ``scripts/bench.py`` (``make bench`` / ``make bench-quick``). Every figure is measured
on the machine it runs on, against a broker the caller started (its own port), with tables and
checkpoints under ``var/bench/``. Measurements:

- catch-up throughput of the detect job (available-now trigger, from earliest to the end):
  zscore path to Delta, read+parse ceiling into the ``noop`` sink, stateful detectors;
- training rows/s of ``train.run`` over JSON files vs a single-process pandas groupby;
- a single Python process (confluent-kafka + orjson + numpy) doing the same zscore scoring.

The machine is shared, so the 1-minute load average is recorded next to every figure.
"""

from __future__ import annotations

import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import kafka_admin, loadgen
from .bench_merge import command_line

# The catch-up rows read ``events`` x ``catchup_repeats`` records: the produced events that many
# times over (``produce(repeats=...)``), so that a run spans several of the job's 5M-record batches and the
# median is not its first, while the model trained on the events fits every batch.
QUICK = {"events": 1_000_000, "stateful_events": 400_000, "catchup_repeats": 1}
FULL = {"events": 5_000_000, "stateful_events": 3_000_000, "catchup_repeats": 3}
SENSORS = 10_000
# the seed detectors with state, and the product's recommended configuration (issue 4's best)
STATEFUL = ("ema", "robust", "normal", "kmeans", "cad", "recommended")


def load1() -> float:
    return os.getloadavg()[0]


def _proc_stat(pid: str) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state, ppid, ...), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            raw = fh.read()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def descendants(root: int | None = None) -> tuple[list[int], dict[int, list[str]]]:
    """The pids below ``root`` (default: this process), and the stat fields of every process seen."""
    root = root or os.getpid()
    stats = {int(d): f for d in os.listdir("/proc") if d.isdigit() and (f := _proc_stat(d)) is not None}
    kids: dict[int, list[int]] = {}
    for pid, f in stats.items():
        kids.setdefault(int(f[1]), []).append(pid)
    out, todo = [], list(kids.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out, stats


class TreeCpu:
    """CPU seconds (user+sys) this process and its descendants (the driver, the Spark JVM, its
    Python workers) spend inside the ``with`` block. Unlike wall time, it hardly depends on what
    else the shared machine runs, so events per CPU-second is the steadier figure.

    Each process is sampled every ``interval`` seconds and counts what it used up to its last
    sample. Summing the tree at the two ends instead loses the whole CPU of a process that ends in
    between and is not reaped inside the tree: the cad run of 2026-12-02 01:00 UTC (1M-event
    batches) counted 349 CPU-s that way and 711 with this meter (the other detectors' runs agreed
    within 0.4 s). A process that lives less than one interval, or the last interval of one that
    ends, is not counted.
    """

    def __init__(self, interval: float = 0.5, root: int | None = None) -> None:
        self.interval = interval
        self.root = root or os.getpid()
        self._tick = os.sysconf("SC_CLK_TCK")
        self.seconds = 0.0
        self._base: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-cpu", daemon=True)

    def _sample(self) -> dict[int, float]:
        pids, stats = descendants(self.root)
        # after the command: state ppid ... utime(14) stime(15), 1-based overall
        return {
            pid: (int(stats[pid][11]) + int(stats[pid][12])) / self._tick
            for pid in [self.root, *pids]
            if pid in stats
        }

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._last.update(self._sample())

    def __enter__(self) -> TreeCpu:
        self._base = self._sample()
        self._last = dict(self._base)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._last.update(self._sample())
        self.seconds = sum(v - self._base.get(pid, 0.0) for pid, v in self._last.items())


@dataclass
class Result:
    name: str
    events: int
    wall_s: float
    median_rps: float | None = None  # median processedRowsPerSecond over non-empty batches
    batches: int = 0
    load_before: float = 0.0
    load_after: float = 0.0
    cpu_s: float | None = None  # CPU seconds of the process tree during the measurement
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def wall_rps(self) -> float:
        return self.events / self.wall_s if self.wall_s else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "wall_rps": self.wall_rps, "cpu_rps": self.cpu_rps}

    @property
    def cpu_rps(self) -> float | None:
        return self.events / self.cpu_s if self.cpu_s else None


def machine_info(root: Path) -> dict[str, Any]:
    import pyspark

    mem_kib = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    try:
        java = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, check=False
        ).stderr.splitlines()[0]
    except (OSError, IndexError):
        java = "?"

    def jar(pattern: str) -> str:
        hits = sorted(glob.glob(str(root / pattern)))
        return os.path.basename(hits[0]).removesuffix(".jar") if hits else "?"

    cpu = "?"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 1024**2, 1),
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "java": java,
        "delta": jar("var/jars/spark/delta-spark_*.jar"),
        "kafka_broker": jar("var/jars/kafka/kafka_2.13-*.jar"),
        "kernel": platform.release(),
    }


# --------------------------------------------------------------------------- data


def produce(
    bootstrap: str, topic: str, events: int, out_dir: str | None = None, seed: int = 42, repeats: int = 1
) -> dict:
    """``events`` seed-003 JSON readings of ``SENSORS`` sensors into a 2-partition topic (and files).

    ``repeats`` > 1 sends the same events that many times over, by the same producer (the files get
    them once): a long catch-up whose every batch fits the model trained on the files. The summary's
    rate is the first pass's."""
    kafka_admin.delete_topic(bootstrap, topic)
    kafka_admin.create_topic(bootstrap, topic, partitions=2)
    cfg = loadgen.LoadConfig(seed=seed, sensors=SENSORS, start_ts=1_536_710_400_000, anomaly_rate=0.0005)
    sinks: list = [loadgen.KafkaSink(bootstrap, topic)]
    if out_dir:
        shutil.rmtree(out_dir, ignore_errors=True)
        sinks.append(loadgen.FileSink(out_dir, max_records=500_000))
    summary = loadgen.run_history(cfg, cfg.ticks_for(events), sinks, None)
    for _ in range(repeats - 1):  # run_history closes its sinks
        loadgen.run_history(cfg, cfg.ticks_for(events), [loadgen.KafkaSink(bootstrap, topic)], None)
    ends = kafka_admin.topic_end_offsets(bootstrap, topic)
    summary["topic_records"] = sum(ends.values())
    return summary


# --------------------------------------------------------------------------- streaming runs


def _progress_stats(queries: list) -> tuple[float | None, int, int]:
    rates, batches, rows = [], 0, 0
    for q in queries:
        for p in q.recentProgress:
            n = p.get("numInputRows", 0) if isinstance(p, dict) else p.numInputRows
            if n:
                r = p.get("processedRowsPerSecond") if isinstance(p, dict) else p.processedRowsPerSecond
                rates.append(float(r))
                batches += 1
                rows += int(n)
    return (statistics.median(rates) if rates else None), batches, rows


def _await(queries: list, timeout_s: float, expect_rows: int | None = None) -> None:
    """Wait until the queries end, or (``expect_rows``) until their completed micro-batches have read
    that many input rows, then stop them. The latter is needed for the stateful query: with a
    processing-time state timeout, Spark keeps running no-data batches (timeouts must be checked)
    and an available-now trigger never ends on its own."""
    deadline = time.monotonic() + timeout_s
    while any(q.isActive for q in queries):
        for q in queries:
            if q.exception() is not None:
                raise RuntimeError(str(q.exception()))
        if expect_rows is not None and _progress_stats(queries)[2] >= expect_rows:
            for q in queries:
                q.stop()
            break
        if time.monotonic() > deadline:
            for q in queries:
                q.stop()
            raise TimeoutError(f"query did not finish within {timeout_s}s")
        time.sleep(0.2)
    for q in queries:
        if q.exception() is not None:
            raise RuntimeError(str(q.exception()))


def timed_stream(
    name: str, events: int, start: Callable[[], list], timeout_s: float = 1800, stop_after_input: bool = False
) -> Result:
    """Start queries (available-now), await them, and collect wall time and per-batch rates."""
    lb = load1()
    with TreeCpu() as cpu_meter:
        t0 = time.perf_counter()
        queries = start()
        _await(queries, timeout_s, events if stop_after_input else None)
        wall = time.perf_counter() - t0
    cpu = cpu_meter.seconds
    med, batches, rows = _progress_stats(queries)
    return Result(name, events, wall, med, batches, lb, load1(), cpu, {"input_rows": rows})


def run_detect_zscore(spark, cfg) -> list:
    from . import detect

    return detect.start(spark, cfg, available_now=True).queries


def run_noop(spark, cfg) -> list:
    """The ceiling: the same Kafka read + parse (all parsed columns and dead_reason), into ``noop``."""
    from . import detect

    parsed = detect.parsed_stream(spark, cfg)
    return [
        parsed.writeStream.queryName("bench-noop")
        .format("noop")
        .option("checkpointLocation", cfg.path(cfg.detect.checkpoint) + "/noop")
        .trigger(availableNow=True)
        .start()
    ]


def run_stateful(spark, cfg, detector: str) -> list:
    """One stateful detector alone (no intake query beside it), to Delta like the real job."""
    from . import detect, stateful
    from .config import DetectorSpec

    specs = [DetectorSpec(detector, {})]
    detect.validate(cfg)
    # as detect.start does for available-now: no empty batches for the state timeout
    spark.conf.set("spark.sql.streaming.noDataMicroBatches.enabled", "false")
    return [
        stateful.start_query(spark, cfg, specs, detect.stateful_stream(spark, cfg), {"availableNow": True})
    ]


# --------------------------------------------------------------------------- training


def run_train(spark, cfg) -> tuple[Result, Any]:
    from . import train

    lb = load1()
    with TreeCpu() as meter:
        t0 = time.perf_counter()
        res = train.run(spark, cfg, "full")
        wall = time.perf_counter() - t0
    cpu = meter.seconds
    return Result(
        "train.run (Spark, JSON files)",
        res.rows_read,
        wall,
        None,
        0,
        lb,
        load1(),
        cpu,
        {"series": res.series, "version": res.version},
    ), res


def pandas_train(files: list[str]) -> Result:
    """The same per-series moments in one process: orjson per line, then a pandas groupby."""
    import orjson
    import pandas as pd

    lb, c0 = load1(), time.process_time()
    t0 = time.perf_counter()
    recs = []
    for f in files:
        with open(f, "rb") as fh:
            recs.extend(orjson.loads(line) for line in fh)
    df = pd.DataFrame.from_records(recs, columns=["id", "ts", "temp", "hum"])
    t_parse = time.perf_counter() - t0
    long = df.melt(id_vars=["id", "ts"], value_vars=["temp", "hum"], var_name="metric", value_name="value")
    g = long.groupby(["id", "metric"], sort=False)
    stats = g.agg(
        n=("value", "count"),
        mean=("value", "mean"),
        var=("value", "var"),
        min=("value", "min"),
        max=("value", "max"),
        first_ts=("ts", "min"),
        last_ts=("ts", "max"),
    )
    # pandas var is the sample variance (ddof=1); M2 = var * (n - 1) = var_pop * n
    stats["m2"] = stats["var"] * (stats["n"] - 1)
    wall = time.perf_counter() - t0
    return Result(
        "pandas (orjson + groupby, 1 process)",
        len(df),
        wall,
        None,
        0,
        lb,
        load1(),
        time.process_time() - c0,
        {"series": len(stats), "parse_s": round(t_parse, 2), "groupby_s": round(wall - t_parse, 2)},
    )


# --------------------------------------------------------------------------- plain alternative


def plain_zscore(bootstrap: str, topic: str, model: dict[str, np.ndarray], k: float = 4.0) -> Result:
    """One Python process: confluent-kafka Consumer + orjson + numpy zscore (no sink).

    ``model`` holds aligned arrays sensor_id, metric, n, mean, m2. Scoring uses
    ``detectors.zscore.score_arrays`` (the reference the Spark columns are tested against).
    Records that are not a JSON object with the four fields are counted as rejected.
    """
    import orjson
    from confluent_kafka import Consumer, TopicPartition

    from .detectors.zscore import ZScoreConfig, score_arrays

    zcfg = ZScoreConfig(k=k)
    idx = {(s, m): i for i, (s, m) in enumerate(zip(model["sensor_id"], model["metric"], strict=True))}
    n_arr = np.append(model["n"].astype(float), 0.0)  # last slot: unknown series
    mean_arr, m2_arr = np.append(model["mean"], np.nan), np.append(model["m2"], np.nan)
    unknown = len(n_arr) - 1
    ends = kafka_admin.topic_end_offsets(bootstrap, topic)
    total = sum(ends.values())
    lb, c0 = load1(), time.process_time()
    t0 = time.perf_counter()
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-plain-{time.time_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": 52428800,
            "max.partition.fetch.bytes": 10485760,
            "log_level": 3,
        }
    )
    c.assign([TopicPartition(topic, p, 0) for p in ends])
    seen = rejected = anomalies = scored = 0
    while seen < total:
        msgs = c.consume(num_messages=20000, timeout=1.0)
        if not msgs:
            continue
        ids, temps, hums = [], [], []
        for m in msgs:
            if m.error():
                continue
            seen += 1
            try:
                r = orjson.loads(m.value())
                sid, tv, hv = r["id"], float(r["temp"]), float(r["hum"])
                int(r["ts"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                rejected += 1
                continue
            ids.append(sid)
            temps.append(tv)
            hums.append(hv)
        for metric, vals in (("temp", temps), ("hum", hums)):
            pos = np.fromiter((idx.get((s, metric), unknown) for s in ids), dtype=np.int64, count=len(ids))
            out = score_arrays(np.asarray(vals, float), n_arr[pos], mean_arr[pos], m2_arr[pos], zcfg)
            anomalies += int(out["is_anomaly"].sum())
            scored += len(out)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    c.close()
    return Result(
        "plain Python (confluent-kafka + orjson + numpy)",
        seen,
        wall,
        None,
        0,
        lb,
        load1(),
        cpu,
        {"scored_rows": scored, "anomalies": anomalies, "rejected": rejected},
    )


def model_arrays(spark, table: str) -> dict[str, np.ndarray]:
    from . import model_store

    _, df = model_store.read_latest(spark, table)
    pdf = df.select("sensor_id", "metric", "n", "mean", "m2").toPandas()
    return {c: pdf[c].to_numpy() for c in pdf.columns}


# --------------------------------------------------------------------------- report


def fmt_rate(x: float | None) -> str:
    if x is None or x != x:
        return "–"
    return f"{x / 1000:,.0f}k" if x >= 10_000 else f"{x:,.0f}"


# (key, reference key, reference text, compare median batch rates instead of wall rates)
TABLE = [
    ("noop", None, "–", False),
    ("zscore", "noop", "noop ceiling (median batch)", True),
    ("zscore-anomalies", "noop", "noop ceiling (median batch)", True),
    # plain writes nothing: the Spark path closest to it writes only the anomalies
    ("plain", "zscore-anomalies", "Spark zscore path, output=anomalies (wall)", False),
    *[(d, "zscore", "zscore path (median batch)", True) for d in STATEFUL],
    # the same configuration once its state is full, against its row above (first 300 readings)
    *[
        (f"steady-{d}", d, "its row above: first 300 readings per series (median batch)", True)
        for d in STATEFUL
    ],
    ("train", "pandas", "pandas, 1 process (wall)", False),
    ("pandas", None, "–", False),
    ("write-0", "noop", "noop ceiling (median batch)", True),
    ("write-1", "noop", "noop ceiling (median batch)", True),
    ("parse-0", None, "–", False),
    *[(f"parse-{i}", "parse-0", "parsing.parse, batch (wall)", False) for i in (1, 2, 3)],
]


def _rate(r: dict, median: bool) -> float | None:
    return r.get("median_rps") if median and r.get("median_rps") else r.get("wall_rps")


def build_rows(results: dict[str, dict]) -> list[dict]:
    rows = []
    for key, ref, text, median in TABLE:
        if key not in results:
            continue
        r = dict(results[key], key=key, ref_text=text, ratio=None)
        if ref and ref in results:
            mine, theirs = _rate(r, median), _rate(results[ref], median)
            r["ratio"] = mine / theirs if mine and theirs else None
        rows.append(r)
    return rows


def render(meta: dict[str, Any], results: dict[str, dict]) -> str:
    """Markdown for the BENCHMARKS-perf section."""
    m = meta["machine"]
    prod = meta["produce"]["main"]
    out = [
        "## Throughput (BENCHMARKS-perf)",
        "",
        command_line(meta),
        "",
        f"Machine{' of the newest run' if len(meta.get('runs') or []) > 1 else ''}: "
        f"{m['nproc']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}; "
        f"Python {m['python']}, PySpark {m['pyspark']} (`local[2]`, driver 2g), {m['java']}, "
        f"{m['delta']}, broker {m['kafka_broker']} (KRaft, one node, loopback). "
        "The machine may be shared with other jobs, so every figure carries the 1-minute load average "
        "before/after it (2 = both cores busy).",
        "",
        f'Data: loadgen seed-003 JSON (`{{"id","ts","temp","hum"}}`), {SENSORS:,} sensors, seed 42, '
        "one topic with 2 partitions, lz4, anomalies at rate 5e-4, no malformed records. One event = one "
        "Kafka record = 2 readings (temp, hum) after the melt. "
        f"`kafka.max_offsets_per_trigger` = {meta['max_offsets_per_trigger']:,} (conf default). "
        f"Producing it (loadgen → Kafka + JSON files, one Python process): {prod['records']:,} records "
        f"at {prod['records_per_s']:,}/s. "
        + (
            f"The topic holds those events {meta['catchup_repeats']} times over (the same producer "
            f"sends them again; the files and the model get them once): "
            f"{meta['catchup_repeats'] * prod['records']:,} events for the catch-up rows (ceiling, zscore, "
            "plain), several of the job's catch-up batches, every one of data the model was trained on."
            if meta.get("catchup_repeats", 1) > 1
            else ""
        ),
        "",
        "Rates: *median batch* = median `processedRowsPerSecond` over the query's non-empty micro-batches "
        "(`recentProgress`); *wall* = events / (query start → available-now end, including planning, "
        "Delta commits and the first Kafka fetch); *events/CPU-s* = events / CPU seconds used by this "
        "benchmark's process tree (driver + Spark JVM + Python workers; for the single-process references, "
        "that process), which depends much less on the other tenants than wall time does.",
        "",
        "| measurement | events | wall s | events/s (wall) | events/s (median batch) | batches | events/CPU-s | "
        "reference | ratio | load1 before→after |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in build_rows(results):
        ratio = r.get("ratio")
        out.append(
            f"| {r['name']} | {r['events']:,} | {r['wall_s']:.1f} | {fmt_rate(r['wall_rps'])} | "
            f"{fmt_rate(r.get('median_rps'))} | {r.get('batches') or '–'} | {fmt_rate(r.get('cpu_rps'))} | "
            f"{r['ref_text']} | {'–' if ratio is None else f'{ratio:.2f}×'} | "
            f"{r['load_before']:.2f}→{r['load_after']:.2f} |"
        )
    out += ["", "Per-measurement details (CPU s = process-tree CPU seconds):", ""]
    for key, r in results.items():
        cpu = "–" if r.get("cpu_s") is None else f"{r['cpu_s']:.1f}"
        out.append(f"- `{key}`: CPU {cpu} s; {r.get('extra')}")
    out += [
        "",
        "How each figure is made: *train* = `train.run(spark, cfg, 'full')` over the same records as JSON-lines "
        "files (500k per file; includes JSON parsing, the one aggregation pass, the Delta model write and the "
        "JSON export; it is the session's first Spark job, so JIT warm-up lands here); *pandas* = orjson per line + "
        "`DataFrame.melt` + `groupby(...).agg(count, mean, var, min, max, ts min/max)`, M2 = var·(n−1); "
        "*noop* = `detect.parsed_stream` → `format('noop')`; *zscore* = `detect.start(spark, cfg, "
        "available_now=True)` with the conf's zscore detector (intake query, one pass per batch: "
        "broadcast join with the 20,000-row model, idempotent Delta append of every scored reading while "
        "`observe` collects the rejects' coordinates; a batch with rejects parses their records again for the "
        "dead-letter table); "
        "*zscore, output=anomalies* = the same with `detect.output=anomalies`, which isolates the cost of "
        "writing every scored row; *stateful* = `stateful.start_query` for one detector alone (default "
        "parameters, no intake query beside it), on its own topic, in the job's catch-up batches for it (`detect.stateful_max_offsets_per_trigger`, 1M) but at least 3 per run (1M in full mode, 133k in quick mode), stopped as soon "
        "as its batches have read all events; one event = 2 readings, so readings/s = 2 × events/s; *state full* = "
        "`bench_stream.steady_state`: the same query for one configuration over the series' later readings, once "
        "its state is full (full mode: 200 sensors = 400 series; 6,000 readings per series go through the query "
        "first, their figures under `warm_up` in the details, then 1,500 more per series in 100k-event batches, "
        "500 readings per series and batch, same checkpoint; the stateful rows above see each series' first 300 "
        "readings, before recommended's knn has a reference to compare with); *plain* = `benchmark.plain_zscore`: one "
        "process, confluent-kafka `consume(20000)`, orjson, dict lookup of the model, "
        "`detectors.zscore.score_arrays`, no sink, no dead-letter table (unparsable records only counted).",
        "",
        "Not measured: malformed-record rates > 0; partition counts other than 2; `maxOffsetsPerTrigger` "
        "other than the values above; the 30-minute soak and 100M-record training only in full mode (`make bench`). "
        "A CPU figure is too low when a process of the tree exits between the two samples (shown as no figure when that makes it negative). The *parse:* rows are a "
        "batch read of the history files into noop (second of two runs each); only `parsing.parse` keeps `raw` "
        "and computes `dead_reason`, so the others are lower bounds of what a cheaper parser would cost, not "
        "drop-in replacements.",
        "",
    ]
    return "\n".join(out)


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))


def parse_variants(spark, path: str, ic) -> list[Result]:
    """Batch parse of the same JSON-lines files into the noop sink: the project's parser vs cheaper ones.

    Only the first one has the project's semantics (dead-letter reasons); the others show what the
    checks and PERMISSIVE mode cost. Each variant is run twice and the second run is kept (warm JIT).
    """
    from pyspark.sql import functions as F

    from . import parsing

    raw = spark.read.text(path).withColumnRenamed("value", "raw")
    fields = [ic.key_field, ic.time_field, *ic.measures]
    schema = parsing.json_schema(ic)
    plain_schema = ", ".join(
        [f"{ic.key_field} string", f"{ic.time_field} long", *[f"{m} double" for m in ic.measures]]
    )
    variants = {
        "parsing.parse (from_json PERMISSIVE + checks)": lambda: parsing.parse(raw, ic),
        "from_json PERMISSIVE, no checks": lambda: raw.select(
            F.from_json(
                "raw", schema, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt_record"}
            ).alias("r")
        ).select("r.*"),
        "from_json (DDL schema), no checks": lambda: raw.select(
            F.from_json("raw", plain_schema).alias("r")
        ).select("r.*"),
        "json_tuple + casts": lambda: raw.select(F.json_tuple("raw", *fields).alias(*fields)).select(
            F.col(ic.key_field),
            F.col(ic.time_field).cast("long"),
            *[F.col(m).cast("double") for m in ic.measures],
        ),
    }
    n = raw.count()
    out = []
    for name, build in variants.items():
        for _ in range(2):
            lb = load1()
            with TreeCpu() as meter:
                t0 = time.perf_counter()
                build().write.format("noop").mode("overwrite").save()
                wall = time.perf_counter() - t0
            cpu = meter.seconds
        out.append(Result(f"parse: {name}", n, wall, None, 0, lb, load1(), cpu))
    return out


def write_ceiling(spark, scored_table: str, work: str, rows: int = 2_000_000) -> list[Result]:
    """What writing the result rows costs by itself: ``rows`` rows of the zscore run's sink table,
    cached in memory, appended to a fresh table as Parquet and as the product's Delta sink (table
    properties included). Each is run twice and the second run kept. ``events`` is rows / 2 (one
    event = 2 readings), so the rates compare with the catch-up rows directly."""
    import shutil

    from . import sink
    from .results import RESULT_SCHEMA

    # two partitions, one per core, as a micro-batch of the catch-up writes them (a bare limit is one)
    src = spark.read.format("delta").load(scored_table).limit(rows).repartition(2).cache()
    n = src.count()

    def parquet(out: str) -> None:
        src.write.mode("overwrite").parquet(out)

    def delta(out: str) -> None:
        sink.ensure_table(spark, out, RESULT_SCHEMA, sink.RESULT_TABLE_PROPERTIES)
        src.write.format("delta").mode("append").save(out)

    results = []
    for name, write in (("Parquet (snappy)", parquet), ("Delta sink append", delta)):
        for _ in range(2):
            out = f"{work}/write-ceiling"
            shutil.rmtree(out, ignore_errors=True)
            lb = load1()
            with TreeCpu() as meter:
                t0 = time.perf_counter()
                write(out)
                wall = time.perf_counter() - t0
            cpu = meter.seconds
        results.append(
            Result(f"write {n:,} result rows from memory: {name}", n // 2, wall, None, 0, lb, load1(), cpu)
        )
    src.unpersist()
    return results
