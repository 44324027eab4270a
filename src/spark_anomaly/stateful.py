"""Stateful detectors in the stream: ``applyInPandasWithState`` over hash buckets of series.

``applyInPandasWithState`` rather than ``transformWithStateInPandas``: the latter was reported
about 2.5x slower on this class of machine (not re-measured here). Each group call costs a fixed
few milliseconds (Arrow round trip, pandas, state store), so grouping by series made that cost
per series per micro-batch: with 10k sensors, ~1-4k events/s. Readings are therefore grouped by
``pmod(xxhash64(sensor_id, metric), detect.state_buckets)``; one call runs all series of its
bucket and its state row holds their detector states. The bucket count is part of the
checkpoint: it is stored in the state and a different value stops the query with a clear error.
Series that stop reporting expire after ``detect.state_timeout`` (per-series last-seen time).
"""

from __future__ import annotations

import functools
import gc
import os
import pickle
import re
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.streaming.state import GroupState, GroupStateTimeout

from . import model_store, parsing, sink
from .bucket_state import BucketState
from .config import AppConfig, ConfigError, DetectorSpec
from .detectors import RESULT_COLUMNS, SeriesPrior
from .model_cache import ModelCache
from .results import RESULT_FIELDS, RESULT_SCHEMA
from .series_runner import PRIOR_VERSION, BoundDetector, bind, needs_prior, run_batch

STATE_SCHEMA = "blob binary"
# Set only by pre-aggregation (readings from ``detect.aggregation.table``); null for raw readings.
_WINDOW = ("window_start", "window_end", "agg_function")
_UNITS = {
    "ms": 1,
    "millisecond": 1,
    "s": 1000,
    "second": 1000,
    "sec": 1000,
    "m": 60_000,
    "min": 60_000,
    "minute": 60_000,
    "h": 3_600_000,
    "hour": 3_600_000,
    "d": 86_400_000,
    "day": 86_400_000,
}


def duration_ms(text: str) -> int:
    """'90 seconds', '1 hour', '15min' -> milliseconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+?)s?\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise ConfigError(f"cannot read duration {text!r} (try '30 minutes', '1 hour')")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _priors(pdf: pd.DataFrame, first: np.ndarray) -> list[SeriesPrior | None]:
    """The model row of each series, from its first reading (the join puts it on every row)."""
    if "n" not in pdf.columns:
        return [None] * len(first)
    cols = [pdf[c].to_numpy()[first].tolist() for c in ("n", "mean", "m2", "min", "max", "model_version")]
    return [
        None
        if n is None or n != n
        else SeriesPrior(
            int(n), float(mu), float(m2), float(lo), float(hi), None if v is None or v != v else int(v)
        )
        for n, mu, m2, lo, hi, v in zip(*cols, strict=True)
    ]


# Live detector cores of the buckets this Python worker processed last, keyed by (query's detectors,
# bucket) with the state token written next to them. Spark reuses workers, so the next batch of a bucket
# often lands here again: when the state it hands over carries that token, the cores are exactly at
# that state and unpickling + ``set_state`` is skipped (for cad, rebuilding its indexes is most of
# the cost). Any other state (another worker's, a retried batch's) misses, is restored from the
# blob (the source of truth, written every batch) and replaces the stale cores. Entries are
# (token, cores, batch time); what is kept is bounded by ``detect.live_cache_mb`` (see
# ``_keep_live``): a dropped set only costs its bucket a restore from the blob, never a number.
_LIVE: OrderedDict[tuple[str, tuple], tuple[bytes, dict[tuple[str, str], dict], int]] = OrderedDict()
_LIVE_MAX = 1024  # buckets; above the buckets one worker sees, so a bucket kept here is found again


def rss_mb() -> float | None:
    """This process's resident memory in MiB (Linux ``/proc``), or None where it cannot be read."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def _memory_limit_bytes() -> int | None:
    """The memory this process may use: its cgroup's limit (containers) or the machine's."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # "max" or a huge number: no limit
            return int(text)
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def live_budget_mb(configured: int | None) -> float:
    """``detect.live_cache_mb`` as a number: null = half the available memory per CPU (each CPU
    can run one Python worker, and each keeps its own cores), at least 256 MiB."""
    return float(configured) if configured is not None else _auto_budget_mb()


@functools.cache
def _auto_budget_mb() -> float:
    """Once per worker process: the machine it runs on does not change."""
    limit = _memory_limit_bytes()
    if limit is None:
        return 2048.0
    return max(256.0, limit / 2 / (os.cpu_count() or 1) / 2**20)


def _take_live(entry: tuple[str, tuple], token: bytes) -> dict:
    """The live cores kept for ``entry``, taken out of this worker's cache; empty unless they are
    at the state carrying ``token`` (else another worker, or a retried batch, moved on from them).

    A module function on purpose: Spark ships the group function with cloudpickle, which copies
    the module globals a closure names, so a closure reading ``_LIVE`` itself would look into a
    fresh, empty copy in every task and never find the cores ``_keep_live`` kept.
    """
    kept, live, _ = _LIVE.pop(entry, (b"", None, 0))
    return live if live and kept == token else {}


def _keep_live(entry: tuple[str, tuple], value: tuple, budget_mb: float) -> None:
    """Keep a bucket's live cores, then drop others while this worker's RSS is over the budget.

    Sets from earlier batches go first, oldest first: by now another worker has most likely
    processed their buckets, so they would miss anyway. Then sets of this batch, newest first,
    the current one last: the buckets of a partition come in the same order every batch, so
    dropping the oldest would evict each set just before it is asked for again (a scan), while
    keeping the oldest ones serves the first buckets of the next batch.
    """
    if budget_mb <= 0:
        return
    _LIVE.pop(entry, None)
    _LIVE[entry] = value
    while len(_LIVE) > _LIVE_MAX:
        _LIVE.popitem(last=False)
    now = value[2]
    used = rss_mb()
    while used is not None and used > budget_mb and len(_LIVE) > 1:
        older = next((k for k, v in _LIVE.items() if v[2] < now), None)
        if older is None:
            keys = list(_LIVE)
            older = keys[-2]  # the newest but the current one
        del _LIVE[older]
        used = rss_mb()


def load_bucket(blob: bytes, buckets: int) -> dict[tuple[str, str], list]:
    """The per-series entries of a bucket's state, checking it was written with ``buckets``."""
    return BucketState.decode(blob, buckets).entries()


def _held_states(saved: BucketState, keys: list, held: list, live: dict) -> list[dict | None]:
    """What ``run_batch`` restores each series from: None for a new series; for a live one (its
    cores kept in this worker) only the model version they follow, kept beside the pickled state
    so it is not unpickled for that (none when the row records no versions); else its unpickled
    state. Only these series' entries leave the row's Arrow buffers."""
    states: list[dict | None] = [None] * len(keys)
    restore: list[int] = []
    kept: list[int] = []
    for i, (k, pos) in enumerate(zip(keys, held, strict=True)):
        if pos is not None:
            (kept if k in live else restore).append(i)
    for i, blob in zip(restore, saved.blobs([held[i] for i in restore]), strict=True):
        states[i] = pickle.loads(blob)
    if saved.has_model:
        for i, version in zip(kept, saved.models([held[i] for i in kept]), strict=True):
            states[i] = {PRIOR_VERSION: version}
    return states


def make_state_fn(
    detectors: list[BoundDetector], timeout_ms: int, buckets: int, live_cache_mb: int | None = None
):
    """The function Spark calls per bucket (many series) per micro-batch.

    The state of a bucket holds per series its last-seen time (processing ms), its pickled
    detector states and, with a model, the version its cores follow (``bucket_state``). Only the
    series present in the batch are unpickled and re-pickled. A series silent for ``timeout_ms``
    is dropped at the next call of its bucket (and starts afresh if it comes back); a bucket with
    no data at all for ``timeout_ms`` times out as a whole. ``live_cache_mb`` bounds the live cores a worker keeps
    between batches (``live_budget_mb``, computed in the worker: on a cluster its machine is not
    the driver's).
    """
    n_det = len(detectors)
    tags = np.array([d.tag for d in detectors], dtype=object)
    follows = needs_prior(detectors)  # each series' state then records the model version it follows
    # live cores are reused only by the same detector configuration of the same query (two queries
    # may share detectors and bucket numbers)
    ident = f"{detectors!r}#{os.urandom(8).hex()}"

    def fn(key: tuple, pdfs: Iterator[pd.DataFrame], state: GroupState) -> Iterator[pd.DataFrame]:
        if state.hasTimedOut:
            state.remove()
            return
        # The cores are many small long-lived objects (cad: dicts, lists, frozensets per series);
        # the cyclic GC would re-scan all of them over and over while a call allocates (measured
        # 4x slower for cad). They hold no reference cycles, so collection waits for the call's end,
        # and then everything alive is frozen (moved out of the collected generations): else each
        # collection after the call still walks every core of the worker (cad, 800 series through
        # this driver: 29% of the CPU in the GC, none with the freeze). Frozen objects are freed by
        # reference counting as before; only cyclic garbage among them would wait (none was found).
        enabled = gc.isenabled()
        gc.disable()
        try:
            parts = [p for p in pdfs if len(p)]
            out = (
                run(pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0], state, key)
                if parts
                else None
            )
        finally:
            if enabled:
                gc.freeze()
                gc.enable()
        if out is not None:
            yield out

    def run(pdf: pd.DataFrame, state: GroupState, key: tuple) -> pd.DataFrame:
        now = state.getCurrentProcessingTimeMs()
        saved = BucketState.decode(state.get[0], buckets) if state.exists else BucketState.empty(buckets)
        live = _take_live((ident, key), saved.token)
        for k in saved.expire(now, timeout_ms):
            live.pop(k, None)
        # One lexsort: series by series, each in arrival (partition, offset) order.
        s_codes, s_uni = pd.factorize(pdf["sensor_id"], use_na_sentinel=False)
        m_codes, m_uni = pd.factorize(pdf["metric"], use_na_sentinel=False)
        code = s_codes.astype(np.int64) * len(m_uni) + m_codes
        part = pdf["source_partition"].to_numpy()
        off = pdf["source_offset"].to_numpy()
        order = np.lexsort((off, part, code))
        code, part, off = code[order], part[order], off[order]
        values = pdf["value"].to_numpy(float)[order]
        ts = pdf["ts"].to_numpy("int64")[order]
        n = len(values)
        first = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
        starts = np.r_[first, n]
        series_codes = code[first]
        keys = list(
            zip(
                np.asarray(s_uni, dtype=object)[series_codes // len(m_uni)].tolist(),
                np.asarray(m_uni, dtype=object)[series_codes % len(m_uni)].tolist(),
                strict=True,
            )
        )
        cores = [live.get(k, {}) for k in keys]
        held = saved.positions(keys)
        states = _held_states(saved, keys, held, live)
        priors = _priors(pdf, order[first])
        cols, new_states, new_cores = run_batch(detectors, values, ts, starts, states, priors, cores)
        blobs = [pickle.dumps(st, protocol=pickle.HIGHEST_PROTOCOL) for st in new_states]
        saved.put(held, keys, now, blobs, [st[PRIOR_VERSION] for st in new_states] if follows else None)
        live.update(zip(keys, new_cores, strict=True))
        token = saved.token = os.urandom(16)
        state.update((saved.encode(),))
        _keep_live((ident, key), (token, live, now), live_budget_mb(live_cache_mb))
        state.setTimeoutDuration(timeout_ms)
        counts = np.diff(starts)
        sid = np.repeat(np.array([k[0] for k in keys], dtype=object), counts)
        met = np.repeat(np.array([k[1] for k in keys], dtype=object), counts)
        mv = np.repeat(np.array([p.model_version if p else None for p in priors], dtype=object), counts)
        out = {
            "sensor_id": np.tile(sid, n_det),
            "metric": np.tile(met, n_det),
            "ts": np.tile(ts, n_det),
            "value": np.tile(values, n_det),
            "detector": np.repeat(tags, n),
            "model_version": np.tile(mv, n_det),
        }
        for c in RESULT_COLUMNS:
            out[c] = np.concatenate([cols[d.tag][c] for d in detectors])
        out["source_partition"] = np.tile(part, n_det)
        out["source_offset"] = np.tile(off, n_det)
        for c in _WINDOW:
            out[c] = (
                np.tile(pdf[c].to_numpy()[order], n_det)
                if c in pdf.columns
                else np.full(n * n_det, None, dtype=object)
            )
        return pd.DataFrame(out, columns=RESULT_FIELDS)

    return fn


def newest_prior(spark: SparkSession, table: str) -> DataFrame:
    """The newest model version's priors with their version, as the stateful join reads them.

    A scalar subquery, not a literal: the static side of a stream-static join is re-planned every
    micro-batch, so a version that lands while the query runs is used from the next batch on (or,
    with ``model_cache.ModelCache`` keeping this frame cached, once it caches the new version). As
    a filter (a join with max(version) read every row of every version) the scan skips the other
    versions' row groups by their statistics: a 20k-reading batch against 40 versions of 20k
    series took 0.6-0.9 s instead of 0.9-1.4 s. Built the same way on every call: the cache
    manager matches the cached copy to the query's plan by the plan."""
    model = spark.read.format("delta").load(table)
    latest = model.where(F.col("version") == model.select(F.max("version")).scalar())
    return latest.select(
        "sensor_id", "metric", *model_store.PRIOR_COLUMNS, F.col("version").alias("model_version")
    )


def with_latest_model(
    spark: SparkSession, readings: DataFrame, table: str, exists: bool | None = None
) -> DataFrame:
    """Stream-static join with the newest model version (``newest_prior``); without a model table
    (``exists``, looked up when not given) the prior columns are null."""
    if not (model_store.table_exists(spark, table) if exists is None else exists):
        nulls = [
            F.lit(None).cast(f.dataType).alias(f.name)
            for f in model_store.PRIOR_SCHEMA.fields
            if f.name in model_store.PRIOR_COLUMNS
        ]
        return readings.select("*", *nulls, F.lit(None).cast("long").alias("model_version"))
    return readings.join(F.broadcast(newest_prior(spark, table)), ["sensor_id", "metric"], "left")


def apply_detectors(
    readings: DataFrame,
    detectors: list[BoundDetector],
    timeout_ms: int,
    buckets: int,
    live_cache_mb: int | None = None,
) -> DataFrame:
    """Group by a hash bucket of the series key, not by series: the fixed cost per group call is
    paid ``buckets`` times per micro-batch instead of once per series."""
    bucket = F.pmod(F.xxhash64("sensor_id", "metric"), F.lit(buckets))
    return (
        readings.withColumn("_bucket", bucket)
        .groupBy("_bucket")
        .applyInPandasWithState(
            make_state_fn(detectors, timeout_ms, buckets, live_cache_mb),
            outputStructType=RESULT_SCHEMA,
            stateStructType=STATE_SCHEMA,
            outputMode="append",
            timeoutConf=GroupStateTimeout.ProcessingTimeTimeout,
        )
    )


def start_query(
    spark: SparkSession, cfg: AppConfig, specs: list[DetectorSpec], parsed: DataFrame, trigger: dict
) -> StreamingQuery:
    """The stateful detectors over raw readings of the Kafka parse."""
    return start_readings_query(spark, cfg, specs, parsing.readings(parsed, cfg.input), trigger)


def start_readings_query(
    spark: SparkSession,
    cfg: AppConfig,
    specs: list[DetectorSpec],
    readings: DataFrame,
    trigger: dict,
    checkpoint: str = "stateful",
) -> StreamingQuery:
    """The stateful detectors over readings already melted (raw, or aggregated with window columns,
    which are carried to the result rows); ``checkpoint`` names its directory under detect's."""
    detectors = bind(specs)
    model: ModelCache | None = None
    if needs_prior(detectors):
        table = cfg.path(cfg.model.table)
        exists = model_store.table_exists(spark, table)
        readings = with_latest_model(spark, readings, table, exists)
        if exists:
            model = ModelCache(spark, table, lambda: newest_prior(spark, table), cfg.model.refresh_seconds)
            model.load()
    scored = apply_detectors(
        readings,
        detectors,
        duration_ms(cfg.detect.state_timeout),
        cfg.detect.state_buckets,
        cfg.detect.live_cache_mb,
    )
    sink_table = cfg.path(cfg.detect.sink_table)
    # idempotent; detect.start does the same: statistics only on the columns queries filter by
    sink.ensure_table(spark, sink_table, RESULT_SCHEMA, sink.RESULT_TABLE_PROPERTIES)
    ckpt = cfg.path(cfg.detect.checkpoint) + "/" + checkpoint
    appender = sink.BatchAppender(sink_table, sink.app_id(ckpt, sink_table))
    only_anomalies = cfg.detect.output == "anomalies"

    def write(batch: DataFrame, batch_id: int) -> None:
        appender.append(batch.where("is_anomaly") if only_anomalies else batch, batch_id)

    try:
        query = (
            scored.writeStream.queryName("spark-anomaly-stateful")
            .foreachBatch(sink.interruptible(write))
            .option("checkpointLocation", ckpt)
            .trigger(**trigger)
            .start()
        )
    except Exception:
        if model is not None:
            model.close()
        raise
    if model is not None:
        model.follow(lambda: query.isActive)
    return query
