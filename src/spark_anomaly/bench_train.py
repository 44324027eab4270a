"""Training benchmark (issue 5, row 3): train job rows/s over a Delta history, full and incremental.

History is generated inside Spark (``spark.range``), not by the Python load generator, so 100M
readings take a minute rather than an hour: one record per (sensor, tick) in the input contract
(``id``, ``ts``, ``temp``, ``hum``), written in event-time order so Delta's per-file ``ts``
statistics let an incremental run skip the old files. The reference is a single-process pandas
groupby over the same Parquet files (read with pyarrow), where it fits in memory.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .benchmark import Result, TreeCpu, load1

START_TS = 1_536_710_400_000
SETTLE_S = 3.0  # pause after an append before the next measured run
STEP_MS = 60_000


@dataclass(frozen=True)
class HistorySpec:
    records: int
    sensors: int = 10_000
    first_tick: int = 0  # appended data continues where the previous history ended


def write_history(spark, path: str, spec: HistorySpec, mode: str = "overwrite", files: int = 0) -> float:
    """Write ``spec.records`` records (sensor-major within a tick) to a Delta table; returns seconds."""
    from pyspark.sql import functions as F

    files = files or max(2, spec.records // 2_500_000)
    start = spec.first_tick * spec.sensors
    t0 = time.perf_counter()
    i = F.col("id")
    df = spark.range(start, start + spec.records, 1, files).select(
        F.concat(F.lit("sim-"), F.lpad((i % spec.sensors).cast("string"), 6, "0")).alias("id"),
        (F.lit(START_TS) + F.floor(i / spec.sensors) * STEP_MS).cast("long").alias("ts"),
        (F.lit(20.0) + F.rand(7) * 4 + (i % 97) * 0.05).alias("temp"),
        (F.lit(45.0) + F.randn(8) * 5).alias("hum"),
    )
    df.write.format("delta").mode(mode).save(path)
    return time.perf_counter() - t0


def active_files(table: str) -> list[str]:
    """Parquet files of the table's current snapshot, from the Delta log (add minus remove)."""
    log = Path(table) / "_delta_log"
    live: set[str] = set()
    for f in sorted(log.glob("*.json")):
        for line in f.read_text().splitlines():
            a = json.loads(line)
            if "add" in a:
                live.add(a["add"]["path"])
            elif "remove" in a:
                live.discard(a["remove"]["path"])
    return sorted(str(Path(table) / p) for p in live)


def timed_train(spark, cfg, mode: str, name: str, extra: dict[str, Any] | None = None) -> Result:
    """One ``train.run``, with its wall and CPU seconds and the number of Spark jobs it ran."""
    from . import train

    sc = spark.sparkContext
    group = f"bench-train-{time.monotonic_ns()}"
    sc.setJobGroup(group, name)
    lb = load1()
    meter = TreeCpu()
    t0 = time.perf_counter()
    try:
        with meter:
            res = train.run(spark, cfg, mode)
    finally:
        wall = time.perf_counter() - t0
        cpu = meter.seconds
        jobs = len(sc.statusTracker().getJobIdsForGroup(group))
        sc.setLocalProperty("spark.jobGroup.id", None)
        sc.setLocalProperty("spark.job.description", None)
    return Result(
        name,
        res.rows_read,
        wall,
        None,
        0,
        lb,
        load1(),
        cpu,
        {"series": res.series, "rejected": res.rows_rejected, "spark_jobs": jobs, **(extra or {})},
    )


def pandas_train_parquet(files: list[str]) -> Result:
    """The same moments in one process: pyarrow read of the Parquet files, then a pandas groupby."""
    import pandas as pd
    import pyarrow.parquet as pq

    lb, c0 = load1(), time.process_time()
    t0 = time.perf_counter()
    df = pd.concat(
        [pq.read_table(f, columns=["id", "ts", "temp", "hum"]).to_pandas() for f in files], ignore_index=True
    )
    df["id"] = df["id"].astype("category")
    t_read = time.perf_counter() - t0
    g = df.groupby("id", observed=True, sort=False)
    parts = []
    for m in ("temp", "hum"):
        s = g.agg(
            n=(m, "count"), mean=(m, "mean"), var=(m, "var"), min=(m, "min"), max=(m, "max"),
            first_ts=("ts", "min"), last_ts=("ts", "max"),
        )  # fmt: skip
        s["m2"] = s["var"] * (s["n"] - 1)  # pandas var is ddof=1
        parts.append(s.assign(metric=m))
    stats = pd.concat(parts)
    wall = time.perf_counter() - t0
    return Result(
        "pandas (pyarrow read + groupby, 1 process)",
        len(df),
        wall,
        None,
        0,
        lb,
        load1(),
        time.process_time() - c0,
        {"series": len(stats), "read_s": round(t_read, 2), "groupby_s": round(wall - t_read, 2)},
    )


def new_tag(records: float) -> str:
    """How a number of new records is named in keys and rows: 0, 1M, 5M."""
    return f"{records / 1e6:g}M" if records else "0"


def run_all(
    spark,
    base_cfg,
    work: Path,
    sizes: list[int],
    new_records: dict[int, list[int]],
    pandas_max: int,
) -> dict[str, Result]:
    """For each history size: write it, train full (twice), then incremental runs of several sizes.

    ``new_records`` maps a history size to its incremental run sizes. They go in that order on one table, after a first one that warms the
    JVM: append ``k`` later records, train incremental, so each run's new data is exactly the
    ``k`` records (``k = 0``: no new data; a size may repeat, against the noise of a shared
    machine). Their cost against ``k`` is a line, fixed + per row (``bench_report`` fits it).
    """
    import copy
    import shutil

    out: dict[str, Result] = {}
    for n in sizes:
        tag = f"{n // 1_000_000}M"
        cfg = copy.deepcopy(base_cfg)
        cfg.train.source_format = "delta"
        cfg.train.source_path = str(work / f"train-{tag}" / "history")
        cfg.model.table = str(work / f"train-{tag}" / "model")
        cfg.model.json_dir = str(work / f"train-{tag}" / "model-json")
        shutil.rmtree(work / f"train-{tag}", ignore_errors=True)
        spec = HistorySpec(n)
        gen_s = write_history(spark, cfg.train.source_path, spec)
        print(f"train history {tag}: {n:,} records written in {gen_s:.1f} s", flush=True)
        if n <= pandas_max:
            out[f"train-pandas-{tag}"] = pandas_train_parquet(active_files(cfg.train.source_path))
            print(f"train-pandas-{tag}", out[f"train-pandas-{tag}"].as_dict(), flush=True)
        out[f"train-full-{tag}"] = timed_train(
            spark, cfg, "full", f"train.run full, Delta history {tag}", {"history_write_s": round(gen_s, 1)}
        )
        print(f"train-full-{tag}", out[f"train-full-{tag}"].as_dict(), flush=True)
        # the same again in the same JVM: separates one-off costs (JIT, first Delta log replay of the
        # table) from the steady cost a scheduled job on a long-lived cluster would see
        out[f"train-full2-{tag}"] = timed_train(spark, cfg, "full", f"train.run full, Delta {tag}, 2nd run")
        print(f"train-full2-{tag}", out[f"train-full2-{tag}"].as_dict(), flush=True)
        ticks, history = n // spec.sensors, n
        runs = new_records.get(n, [])
        if runs:
            # like the 2nd full run: the first incremental run in a JVM also compiles its plans'
            # code (~0.5 s); shown in its own row and left out of the fit
            out[f"train-inc1st-0-{tag}"] = timed_train(
                spark,
                cfg,
                "incremental",
                f"train.run incremental, +0 on {tag}, 1st incremental run in this JVM",
                {"history_records": history, "new_records": 0},
            )
            print(f"train-inc1st-0-{tag}", out[f"train-inc1st-0-{tag}"].as_dict(), flush=True)
        done: dict[int, int] = {}
        for k in runs:
            if k:
                write_history(spark, cfg.train.source_path, HistorySpec(k, first_tick=ticks), "append")
                ticks += k // spec.sensors
                # the append's own JIT compilation and GC run on in the background: let them end
                # before the measurement, whose CPU-s would otherwise include them
                time.sleep(SETTLE_S)
            done[k] = done.get(k, 0) + 1
            nth = f"#{done[k]}" if done[k] > 1 else ""
            key = f"train-inc-{new_tag(k)}{nth}-{tag}"
            out[key] = timed_train(
                spark,
                cfg,
                "incremental",
                f"train.run incremental, +{new_tag(k)} on {tag}" + (f" (run {done[k]})" if nth else ""),
                {"history_records": history, "new_records": k},
            )
            history += k
            print(key, out[key].as_dict(), flush=True)
    return out
