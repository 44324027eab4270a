"""Latency, soak and scale benchmarks of the detect job (issue 5, rows 2 and 4, and the soak).

- Latency: a paced producer (``loadgen live`` in its own process, so it does not share the
  driver's GIL) writes at a fixed rate while the detect job runs with a processing-time trigger.
  Produce time = the Kafka record timestamp (CreateTime, set by the producer client); commit
  time = ``commitInfo.timestamp`` of the Delta sink commit whose ``add`` files hold the row
  (rows are mapped to files with ``_metadata.file_path``). Latency = commit - produce, per event.
- Soak: the same steady-rate run, longer, sampling JVM / Python RSS and state-store size.
- Scale: the zscore path over a synthetic model of 1k / 100k / 1M series: throughput, memory,
  the model's estimated broadcast size and the join Spark planned; plus the pickled detector
  state per series of every stateful core.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import kafka_admin
from .benchmark import Result, TreeCpu, _progress_stats, descendants, load1, timed_stream

SRC = str(Path(__file__).resolve().parent.parent)

# --------------------------------------------------------------------------- memory sampling


def _rss_kib(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def rss_tree(root: int | None = None) -> dict[str, float]:
    """RSS in MiB of this process tree: JVM(s) (driver = executor in local mode), this Python
    driver, and Spark's Python workers (``pyspark.daemon``/``worker``)."""
    root = root or os.getpid()
    pids, _ = descendants(root)
    out = {"jvm_mib": 0.0, "py_driver_mib": _rss_kib(str(root)) / 1024, "py_workers_mib": 0.0}
    for pid in pids:
        c = _cmdline(pid)
        if "spark_anomaly.loadgen" in c:
            continue  # the benchmark's own paced producer, not part of the job
        if "java" in c.split(" ")[0]:
            out["jvm_mib"] += _rss_kib(str(pid)) / 1024
        elif "pyspark" in c or "python" in c.split(" ")[0]:
            out["py_workers_mib"] += _rss_kib(str(pid)) / 1024
    return out


def dir_bytes(path: str | Path) -> int:
    total = 0
    for dp, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(dp, f))
    return total


class Sampler:
    """Samples ``rss_tree`` (and optional extra probes) every ``every`` seconds in a thread."""

    def __init__(self, every: float = 1.0, probes: dict[str, Any] | None = None) -> None:
        self.every, self.probes = every, probes or {}
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            s = {"t": time.monotonic() - self._t0, **rss_tree()}
            for k, f in self.probes.items():
                try:
                    s[k] = float(f())
                except Exception:  # noqa: BLE001 - a probe must never kill the measurement
                    s[k] = float("nan")
            self.samples.append(s)
            self._stop.wait(self.every)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, Any]:
        """start / end / max and least-squares slope per minute (over the second half, after warm-up)."""
        out: dict[str, Any] = {"samples": len(self.samples)}
        if not self.samples:
            return out
        keys = [k for k in self.samples[0] if k != "t"]
        t = np.array([s["t"] for s in self.samples])
        half = t >= t[-1] / 2
        for k in keys:
            v = np.array([s.get(k, np.nan) for s in self.samples], float)
            ok = half & np.isfinite(v)
            slope = float(np.polyfit(t[ok] / 60, v[ok], 1)[0]) if ok.sum() >= 3 else float("nan")
            out[k] = {
                "start": round(float(v[0]), 1),
                "end": round(float(v[-1]), 1),
                "max": round(float(np.nanmax(v)), 1),
                "slope_per_min_2nd_half": round(slope, 2),
            }
        return out


# --------------------------------------------------------------------------- paced runs


def start_producer(bootstrap: str, topic: str, rate: float, seconds: float, sensors: int) -> subprocess.Popen:
    """``loadgen live`` in a child process: ``rate`` records/s for ``seconds``."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "spark_anomaly.loadgen", "live", "--bootstrap", bootstrap]
    cmd += ["--topic", topic, "--rate", str(rate), "--seconds", str(seconds), "--sensors", str(sensors)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_caught_up(queries: list, bootstrap: str, topic: str, timeout_s: float) -> bool:
    """True once every query's last committed batch ends at the topic's end offsets."""
    ends = {str(p): o for p, o in kafka_admin.topic_end_offsets(bootstrap, topic).items()}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = True
        for q in queries:
            if q.exception() is not None:
                raise RuntimeError(str(q.exception()))
            lp = q.lastProgress
            end = (
                json.loads(lp["sources"][0]["endOffset"]) if lp and lp["sources"][0].get("endOffset") else {}
            )
            if isinstance(end, str):
                end = json.loads(end)
            got = end.get(topic, {}) if isinstance(end, dict) else {}
            if any(int(got.get(p, -1)) < o for p, o in ends.items()):
                done = False
        if done:
            return True
        time.sleep(0.5)
    return False


def steady_run(
    spark, cfg, bootstrap: str, rate: float, seconds: float, sensors: int, sample_every: float = 1.0,
    warmup_s: float = 5.0,
):  # fmt: skip
    """Run the detect job (processing-time trigger) while producing at ``rate`` (after ``warmup_s``
    of warm-up traffic); returns (producer summary, sampler, queries' recentProgress since the
    warm-up, caught_up, wall_s, cpu_s, epoch ms at which the measured traffic started)."""
    from . import detect

    topic = cfg.kafka.topic
    kafka_admin.delete_topic(bootstrap, topic)
    kafka_admin.create_topic(bootstrap, topic, partitions=2)
    jobs = detect.start(spark, cfg)
    ckpt = cfg.path(cfg.detect.checkpoint)
    probes = {"checkpoint_mib": lambda: dir_bytes(ckpt) / 2**20}
    if len(jobs.queries) > 1:
        sq = jobs.queries[1]

        def state_mem() -> float:
            lp = sq.lastProgress
            return sum(o.get("memoryUsedBytes", 0) for o in (lp or {}).get("stateOperators", [])) / 2**20

        def state_rows() -> float:
            lp = sq.lastProgress
            return sum(o.get("numRowsTotal", 0) for o in (lp or {}).get("stateOperators", []))

        probes |= {"state_mem_mib": state_mem, "state_rows": state_rows}
    try:
        t_ready = time.monotonic() + 120
        while any(q.lastProgress is None for q in jobs.queries) and time.monotonic() < t_ready:
            time.sleep(0.2)
        # warm-up traffic: the first batches with data pay for JIT, the first Kafka fetch and the
        # sink's first commits; they are not part of the measurement
        warm = start_producer(bootstrap, topic, rate, warmup_s, sensors)
        warm.communicate(timeout=warmup_s * 1.5 + 60)
        _wait_caught_up(jobs.queries, bootstrap, topic, timeout_s=120)
        since_ms = time.time() * 1000
        t0 = time.perf_counter()
        with TreeCpu() as cpu_meter, Sampler(sample_every, probes) as sampler:
            prod = start_producer(bootstrap, topic, rate, seconds, sensors)
            out, err = prod.communicate(timeout=seconds * 1.5 + 60)
            if prod.returncode != 0:
                raise RuntimeError(f"producer failed: {err.strip()[-500:]}")
            caught_up = _wait_caught_up(jobs.queries, bootstrap, topic, timeout_s=max(60.0, seconds * 2))
        wall, cpu = time.perf_counter() - t0, cpu_meter.seconds
        progress = [[p for p in q.recentProgress if p["timestamp"] >= _iso(since_ms)] for q in jobs.queries]
    finally:
        jobs.stop()
    summary = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    return summary, sampler, progress, caught_up, wall, cpu, since_ms


def _iso(ms: float) -> str:
    """Epoch ms as the UTC ISO string Spark's progress ``timestamp`` uses (sortable as text)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{int(ms % 1000):03d}Z"


def commit_times(table: str) -> dict[str, int]:
    """File name -> commit time (epoch ms) of the Delta commit that added it."""
    out: dict[str, int] = {}
    for f in sorted((Path(table) / "_delta_log").glob("*.json")):
        ts, adds = None, []
        for line in f.read_text().splitlines():
            a = json.loads(line)
            if "commitInfo" in a:
                ts = int(a["commitInfo"]["timestamp"])
            elif "add" in a:
                adds.append(os.path.basename(a["add"]["path"]))
        for p in adds:
            out[p] = ts if ts is not None else int(f.stat().st_mtime * 1000)
    return out


def latencies_ms(spark, cfg, since_ms: float, stopped_ms: float) -> tuple[np.ndarray, int]:
    """Per event: sink commit time - Kafka CreateTime, for events produced at or after ``since_ms``.

    Events the job had not committed when it was stopped (it fell behind) get ``stopped_ms`` as
    their commit time, a lower bound; their count is returned too. The join runs in Spark and
    only two numbers per event reach Python (a full run has millions of events)."""
    from pyspark.sql import functions as F

    from . import kafka_source

    sink_table = cfg.path(cfg.detect.sink_table)
    commits = spark.createDataFrame(
        [(f, float(ms)) for f, ms in commit_times(sink_table).items()], "f string, commit_ms double"
    )
    committed = (
        spark.read.format("delta")
        .load(sink_table)
        .select(
            F.col("source_partition").alias("p"),
            F.col("source_offset").alias("o"),
            F.regexp_extract(F.col("_metadata.file_path"), r"([^/]+)$", 1).alias("f"),
        )
        .dropDuplicates(["p", "o"])
        .join(F.broadcast(commits), "f", "left")
    )
    produced = (
        kafka_source.read_batch(spark, cfg.kafka)
        .select(
            F.col("partition").alias("p"),
            F.col("offset").alias("o"),
            F.round(F.col("timestamp").cast("double") * 1000).alias("produce_ms"),
        )
        .where(F.col("produce_ms") >= F.lit(float(since_ms)))
    )
    m = produced.join(committed, ["p", "o"], "left").select("produce_ms", "commit_ms").toPandas()
    missing = int(m["commit_ms"].isna().sum())
    return (m["commit_ms"].fillna(stopped_ms) - m["produce_ms"]).to_numpy(float), missing


def latency(spark, cfg, bootstrap: str, rate: float, seconds: float, sensors: int = 10_000) -> Result:
    """p50/p95/p99 produce→commit latency of the zscore path at a fixed input rate."""
    lb = load1()
    run = steady_run(spark, cfg, bootstrap, rate, seconds, sensors)
    summary, sampler, progress, caught_up, wall, cpu, since_ms = run
    lat, missing = latencies_ms(spark, cfg, since_ms, since_ms + wall * 1000)  # ~ when the job stopped
    durations = [p["durationMs"].get("triggerExecution", 0) for p in progress[0] if p["numInputRows"]]
    p50, p95, p99 = (float(np.percentile(lat, q)) for q in (50, 95, 99))
    extra = {
        "target_rate": rate,
        "achieved_rate": summary.get("records_per_s"),
        "trigger_s": cfg.detect.trigger_seconds,
        "events_measured": int(lat.size),
        "not_committed": missing,
        "warmup_s": 5.0,
        "p50_ms": round(p50),
        "p95_ms": round(p95),
        "p99_ms": round(p99),
        "max_ms": round(float(lat.max())),
        "batches": len(durations),
        "median_batch_ms": round(float(np.median(durations))) if durations else None,
        "median_phase_ms": {
            k: round(float(np.median([p["durationMs"].get(k, 0) for p in progress[0] if p["numInputRows"]])))
            for k in ("addBatch", "latestOffset", "queryPlanning", "walCommit", "commitOffsets")
        }
        if durations
        else {},
        "median_batch_events": round(
            float(np.median([p["numInputRows"] for p in progress[0] if p["numInputRows"]]))
        )
        if durations
        else None,
        "caught_up": caught_up,
        "memory": sampler.summary(),
    }
    return Result(f"latency at {rate:,.0f} events/s", int(summary.get("records", 0)), wall, None,
                  len(durations), lb, load1(), cpu, extra)  # fmt: skip


def soak(spark, cfg, bootstrap: str, rate: float, seconds: float, sensors: int) -> Result:
    """Memory and state over a steady run: start / end / max / slope per sampled quantity."""
    lb = load1()
    summary, sampler, progress, caught_up, wall, cpu, _ = steady_run(
        spark, cfg, bootstrap, rate, seconds, sensors, sample_every=max(1.0, seconds / 120)
    )
    _, batches, rows = _progress_stats([_P(p) for p in progress])
    extra = {
        "target_rate": rate,
        "achieved_rate": summary.get("records_per_s"),
        "detectors": [d.name for d in cfg.detect.detectors],
        "sensors": sensors,
        "caught_up": caught_up,
        "memory": sampler.summary(),
    }
    return Result(f"soak {seconds / 60:g} min at {rate:,.0f} events/s", int(summary.get("records", 0)), wall,
                  None, batches, lb, load1(), cpu, extra)  # fmt: skip


class _P:
    """recentProgress list wrapped so ``_progress_stats`` can read it after the query stopped."""

    def __init__(self, progress: list) -> None:
        self.recentProgress = progress


# --------------------------------------------------------------------------- scale


def write_model(spark, table: str, series: int, version: int = 1) -> None:
    """A synthetic model of ``series`` (sensor, metric) rows, ids in loadgen's format."""
    from pyspark.sql import functions as F

    from . import model_store

    sensors = series // 2
    width = max(3, len(str(sensors - 1)))
    i = F.col("id")
    stats = spark.range(sensors).select(
        F.concat(F.lit("sim-"), F.lpad(i.cast("string"), width, "0")).alias("sensor_id"),
        F.explode(F.array(F.lit("temp"), F.lit("hum"))).alias("metric"),
    ).select(
        "sensor_id", "metric", F.lit(10_000).cast("long").alias("n"),
        F.when(F.col("metric") == "temp", 22.0).otherwise(45.0).alias("mean"),
        F.lit(25.0 * 9_999).alias("m2"), F.lit(0.0).alias("min"), F.lit(100.0).alias("max"),
        F.lit(0).cast("long").alias("first_ts"), F.lit(1).cast("long").alias("last_ts"),
    )  # fmt: skip
    model_store.write_version(
        spark, stats, table, None, version=version, mode="full", source="bench:synthetic"
    )


def _plan_nodes(plan) -> list:
    """Every node of an executed physical plan (JVM objects), through adaptive query stages."""
    nodes, stack = [], [plan]
    while stack:
        node = stack.pop()
        nodes.append(node)
        kind = node.getClass().getSimpleName()
        if kind == "AdaptiveSparkPlanExec":
            stack.append(node.executedPlan())
        elif kind.endswith("QueryStageExec"):
            stack.append(node.plan())
        else:
            kids = node.children()
            stack.extend(kids.apply(i) for i in range(kids.size()))
    return nodes


def broadcast_metrics(df) -> dict[str, int]:
    """Collect ``df`` and read its broadcast exchange's metrics: the bytes of rows broadcast and
    the milliseconds spent collecting them, building the hash relation and broadcasting it. A
    micro-batch pays these again every time: a plan's broadcast is not shared with the next one."""
    df.collect()
    out: dict[str, int] = {}
    for node in _plan_nodes(df._jdf.queryExecution().executedPlan()):
        if node.getClass().getSimpleName() == "BroadcastExchangeExec":
            metrics = node.metrics()
            for name in ("dataSize", "numOutputRows", "collectTime", "buildTime", "broadcastTime"):
                value = metrics.get(name)
                if value.isDefined():
                    out[name] = out.get(name, 0) + int(value.get().value())
    return out


def join_info(spark, cfg, model_table: str) -> dict[str, Any]:
    """The model's size (Spark's estimate from the files; the bytes actually broadcast), the
    per-batch broadcast cost, and the join Spark plans for scoring a batch, with the model held
    as the detect job holds it (``detect.latest_zscore_model``)."""
    from . import detect, model_store, parsing, scoring
    from .detectors import registry

    zcfg = registry.make_config("zscore")
    _, stored = model_store.read_latest(spark, model_table)
    stored = scoring.zscore_model(stored.select(*model_store.PRIOR_SCHEMA.fieldNames()), zcfg)
    size = int(str(stored._jdf.queryExecution().optimizedPlan().stats().sizeInBytes()))
    holder = detect.latest_zscore_model(spark, cfg, zcfg, refresh_seconds=0)
    version, frame = holder.get()
    parsed = parsing.parse(parsing.from_kafka(spark.read.format("kafka").options(
        **{"kafka.bootstrap.servers": cfg.kafka.bootstrap_servers, "subscribe": cfg.kafka.topic}).load().limit(1000)),
        cfg.input)  # fmt: skip
    batch = parsing.readings(parsed, cfg.input).cache()
    batch.count()
    runs = [broadcast_metrics(detect.score_stateless(batch, frame, version, zcfg)) for _ in range(3)]
    out = detect.score_stateless(batch, frame, version, zcfg)
    plan = out._jdf.queryExecution().executedPlan().toString()
    joins = [j for j in ("BroadcastHashJoin", "SortMergeJoin", "ShuffledHashJoin", "BroadcastNestedLoopJoin")
             if j in plan]  # fmt: skip
    batch.unpersist()
    holder.close()
    warm = [r for r in runs[1:] if r]  # the first run also compiles; none: no broadcast
    return {
        "model_rows": holder.series,
        "est_broadcast_bytes": size,
        "broadcast_bytes": runs[-1].get("dataSize"),
        "broadcast_ms": {
            phase: int(np.median([r.get(phase, 0) for r in warm]))
            for phase in ("collectTime", "buildTime", "broadcastTime")
        }
        if warm
        else None,
        "join": ",".join(joins),
    }


def scale(spark, cfg, bootstrap: str, series: int, events: int) -> Result:
    """zscore path (available-now) over ``events`` readings of series/2 sensors against a model of
    ``series`` rows, with memory sampled throughout."""
    from . import detect, loadgen

    topic = cfg.kafka.topic
    kafka_admin.delete_topic(bootstrap, topic)
    kafka_admin.create_topic(bootstrap, topic, partitions=2)
    lcfg = loadgen.LoadConfig(seed=1, sensors=series // 2, anomaly_rate=0.0)
    prod = loadgen.run_history(lcfg, lcfg.ticks_for(events), [loadgen.KafkaSink(bootstrap, topic)], None)
    write_model(spark, cfg.path(cfg.model.table), series)
    info = join_info(spark, cfg, cfg.path(cfg.model.table))
    with Sampler(0.5) as sampler:
        r = timed_stream(
            f"zscore path, model of {series:,} series", prod["records"],
            lambda: detect.start(spark, cfg, available_now=True).queries,
        )  # fmt: skip
    r.extra.update(info, memory=sampler.summary())
    return r


def state_bytes(
    names: Sequence[str], readings: Sequence[int] = (2_000, 8_000), seed: int = 3
) -> dict[str, dict[str, Any]]:
    """Pickled ``get_state()`` size of each stateful core (a registry name or a named
    configuration) after each of ``readings`` readings of one one-minute series (two decimals,
    like the load generator's): early on, and
    once every bounded history is full (knn's ring, on one-minute readings, after about 6,000).
    ``bytes_per_series`` / ``readings_seen``: the first of them."""
    from .detector_specs import registry_params
    from .detectors import registry
    from .detectors.base import SeriesPrior

    marks = sorted(readings)
    rng = np.random.default_rng(seed)
    # two decimals, as the load generator's JSON readings are ("temp": 21.03): knn's ring saves
    # such readings as int16 (detectors/state_arrays.py); full-precision values stay float64
    x = np.round(20 + rng.normal(0, 2, marks[-1]), 2)
    ts = 1_536_710_400_000 + np.arange(marks[-1], dtype=np.int64) * 60_000
    prior = SeriesPrior(n=10_000, mean=20.0, m2=4.0 * 9_999, min=10.0, max=30.0)
    out = {}
    for name in names:
        core = registry.build(*registry_params(name), prior)
        sizes, done = [], 0
        for mark in marks:
            core.process(x[done:mark], ts[done:mark])
            done = mark
            sizes.append(len(pickle.dumps(core.get_state(), protocol=pickle.HIGHEST_PROTOCOL)))
        out[name] = {
            "bytes_per_series": sizes[0],
            "readings_seen": marks[0],
            "readings": marks,
            "bytes": sizes,
        }
    return out


def steady_state(
    spark, cfg, bootstrap: str, detector: str, sensors: int, warm_ticks: int, ticks: int, batch_events: int
) -> Result:
    """A stateful detector once its state is full, in catch-up batches.

    The stateful rows of the main table see each series' first 300 readings, where a detector with
    a long memory is still filling it: knn (in ``recommended``) needs about 2,000 one-minute
    readings before it compares anything and 6,000 before all of its 500 references exist. Here
    ``warm_ticks`` readings per series go through the query first (timed, reported as the
    warm-up), then ``ticks`` more through the same query and checkpoint: the measured figures.
    """
    from . import loadgen
    from .benchmark import run_stateful

    topic = cfg.kafka.topic
    kafka_admin.delete_topic(bootstrap, topic)
    kafka_admin.create_topic(bootstrap, topic, partitions=2)
    cfg.kafka.max_offsets_per_trigger = batch_events
    first = loadgen.LoadConfig(seed=5, sensors=sensors, anomaly_rate=0.0005)
    later = loadgen.LoadConfig(
        seed=6,
        sensors=sensors,
        anomaly_rate=0.0005,
        start_ts=int(first.start_ts + warm_ticks * first.step_ms),
    )

    def segment(load: loadgen.LoadConfig, n_ticks: int, name: str) -> Result:
        """Produce ``n_ticks`` more readings per sensor, then run the query over them."""
        loadgen.run_history(load, n_ticks, [loadgen.KafkaSink(bootstrap, topic)], None)
        return timed_stream(
            name, sensors * n_ticks, lambda: run_stateful(spark, cfg, detector), stop_after_input=True
        )

    warm = segment(first, warm_ticks, f"{detector} warm-up")
    r = segment(
        later,
        ticks,
        f"detect stateful {detector} → Delta, state full ({warm_ticks:,} readings per series before)",
    )
    r.extra.update(
        sensors=sensors,
        series=2 * sensors,
        readings_per_series_per_batch=batch_events // sensors,
        warm_up={
            "events": warm.events,
            "wall_s": round(warm.wall_s, 1),
            "cpu_s": None if warm.cpu_s is None else round(warm.cpu_s, 1),
            "median_rps": warm.median_rps,
        },
        state_bytes_per_series=state_bytes([detector], readings=[warm_ticks + ticks])[detector][
            "bytes_per_series"
        ],
    )
    return r
