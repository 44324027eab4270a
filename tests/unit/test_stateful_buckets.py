"""The bucketed stateful driver without a JVM: its group function over many series equals the
replay and the per-reading cores, silent series expire, and a changed bucket count is refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spark_anomaly import replay, stateful
from spark_anomaly.bucket_state import BucketMismatch
from spark_anomaly.config import ConfigError, DetectorSpec, load_config
from spark_anomaly.detectors import RESULT_COLUMNS, SeriesPrior, registry
from spark_anomaly.series_runner import bind, run_batch

HOUR = 3_600_000


class FakeState:
    """The parts of pyspark's GroupState the state function uses, with a settable clock."""

    def __init__(self) -> None:
        self.blob: bytes | None = None
        self.now = 0
        self.hasTimedOut = False
        self.timeout_ms: int | None = None

    @property
    def exists(self) -> bool:
        return self.blob is not None

    @property
    def get(self) -> tuple:
        return (self.blob,)

    def update(self, row: tuple) -> None:
        self.blob = row[0]

    def remove(self) -> None:
        self.blob = None

    def setTimeoutDuration(self, ms: int) -> None:  # noqa: N802 (pyspark's name)
        self.timeout_ms = ms

    def getCurrentProcessingTimeMs(self) -> int:  # noqa: N802
        return self.now


def _readings(n_sensors: int, per_series: int, seed: int, offset0: int = 0) -> pd.DataFrame:
    """Readings of temp and hum per sensor; sensors split over 2 partitions, offsets increasing."""
    rng = np.random.default_rng(seed)
    rows = []
    off = {0: offset0, 1: offset0}
    for i in range(per_series):
        for s in range(n_sensors):
            part = s % 2
            for metric, base in (("temp", 20.0), ("hum", 40.0)):
                v = base + np.sin(i / 7 + s) + rng.normal(0, 0.3) + (9.0 if rng.random() < 0.01 else 0.0)
                rows.append((f"s{s}", metric, 1000 * (offset0 + i), v, part, off[part]))
                off[part] += 1
    return pd.DataFrame(
        rows, columns=["sensor_id", "metric", "ts", "value", "source_partition", "source_offset"]
    )


def _bucket(df: pd.DataFrame, buckets: int) -> np.ndarray:
    # any stable hash will do here: the function must not depend on which series share a bucket
    return np.array([hash((s, m)) % buckets for s, m in zip(df.sensor_id, df.metric, strict=True)])


def _run(fn, df: pd.DataFrame, states: dict, buckets: int, now: int, rng) -> pd.DataFrame:
    """One micro-batch: rows shuffled (arrival order must be restored), split per bucket."""
    df = df.sample(frac=1.0, random_state=int(rng.integers(1 << 30))).reset_index(drop=True)
    outs = []
    for b, g in df.groupby(_bucket(df, buckets)):
        st = states.setdefault(b, FakeState())
        st.now = now
        # two Arrow chunks, as Spark may hand them
        half = len(g) // 2
        outs.extend(fn((b,), iter([g.iloc[:half], g.iloc[half:]]), st))
    return pd.concat(outs, ignore_index=True)


SPECS = [DetectorSpec("ema", {}), DetectorSpec("robust", {"window": 20}), DetectorSpec("kmeans", {})]


def test_buckets_over_batches_equal_replay():
    buckets = 5
    fn = stateful.make_state_fn(bind(SPECS), HOUR, buckets)
    rng = np.random.default_rng(1)
    states: dict = {}
    batches = [_readings(12, k, seed=k, offset0=10_000 * i) for i, k in enumerate((3, 1, 40, 7))]
    got = pd.concat([_run(fn, b, states, buckets, 1000 * i, rng) for i, b in enumerate(batches)])
    want = replay.replay_pandas(pd.concat(batches, ignore_index=True), SPECS)
    key = ["detector", "sensor_id", "metric", "source_partition", "source_offset"]
    assert len(got) == len(want) == 3 * 2 * 12 * (3 + 1 + 40 + 7)
    m = got.merge(want, on=key, suffixes=("", "_r"), validate="one_to_one")
    assert len(m) == len(got)
    for c in ("lower", "upper", "score", "probability", "ts", "value"):
        np.testing.assert_array_equal(m[c].to_numpy(float), m[f"{c}_r"].to_numpy(float))
    assert (m.reason == m.reason_r).all() and (m.is_anomaly == m.is_anomaly_r).all()
    assert m.is_anomaly.any()  # the injected jumps are seen, so the comparison is not all-"warm-up"
    assert m.model_version.isna().all()


@pytest.mark.parametrize("name", ["cad", "robust"])
def test_live_cores_give_the_numbers_of_restored_state(name):
    """A worker that kept the cores of its last batch (no unpickle/set_state) scores exactly as a
    worker that restores every bucket from its state blob, and the blobs written are the same."""
    spec = [DetectorSpec(name, {})]
    runs = {}
    for keep in (True, False):
        fn = stateful.make_state_fn(bind(spec), HOUR, 3)
        rng = np.random.default_rng(4)
        states: dict = {}
        outs = []
        for i, k in enumerate((5, 30, 2, 40)):
            df = _readings(6, k, seed=k, offset0=10_000 * i)
            df = df.assign(n=100, mean=30.0, m2=9900.0, min=15.0, max=45.0, model_version=3)
            if not keep:
                stateful._LIVE.clear()
            outs.append(_run(fn, df, states, 3, 1000 * i, rng))
        blobs = {b: stateful.load_bucket(st.blob, 3) for b, st in states.items()}
        runs[keep] = (pd.concat(outs, ignore_index=True), blobs)
    (a, blobs_a), (b, blobs_b) = runs[True], runs[False]
    key = ["sensor_id", "metric", "source_partition", "source_offset"]
    a, b = a.sort_values(key, ignore_index=True), b.sort_values(key, ignore_index=True)
    np.testing.assert_array_equal(a.score.to_numpy(float), b.score.to_numpy(float))
    assert (a.reason == b.reason).all() and a.is_anomaly.equals(b.is_anomaly)
    assert {b: {k: v[1] for k, v in s.items()} for b, s in blobs_a.items()} == {
        b: {k: v[1] for k, v in s.items()} for b, s in blobs_b.items()
    }


def test_live_cores_are_found_again_by_the_function_as_spark_ships_it(monkeypatch):
    """Spark sends the group function to its Python workers with cloudpickle, which copies the
    module globals a closure names into the copy. The live cores must be kept where the next call
    of the same (unpickled) function finds them: the second batch of a bucket restores nothing."""
    from collections import OrderedDict

    from pyspark import cloudpickle

    from spark_anomaly.detectors.cad import CadDetector

    monkeypatch.setattr(stateful, "_LIVE", OrderedDict())
    restores = []
    set_state = CadDetector.set_state
    monkeypatch.setattr(CadDetector, "set_state", lambda self, st: restores.append(1) or set_state(self, st))
    # a budget no test process reaches: only where the cores are kept is under test here
    fn = stateful.make_state_fn(bind([DetectorSpec("cad", {})]), HOUR, 3, live_cache_mb=1 << 20)
    shipped = cloudpickle.dumps(fn)
    states: dict = {}
    rng = np.random.default_rng(8)
    for i in range(3):
        df = _readings(4, 10, seed=i, offset0=10_000 * i)
        df = df.assign(n=100, mean=30.0, m2=9900.0, min=15.0, max=45.0, model_version=3)
        _run(cloudpickle.loads(shipped), df, states, 3, 1000 * i, rng)  # a task: a fresh copy
    # one live set per bucket that had readings, in the worker's module
    assert len(stateful._LIVE) == len(set(_bucket(df, 3))) > 0
    assert restores == []  # every batch after the first found its cores live
    stateful._LIVE.clear()  # a worker without them (the other one, or after a drop) restores
    _run(cloudpickle.loads(shipped), df.assign(source_offset=df.source_offset + 500), states, 3, 4000, rng)
    assert len(restores) == 8


def test_prior_reaches_each_series():
    fn = stateful.make_state_fn(bind([DetectorSpec("normal", {})]), HOUR, 3)
    df = _readings(4, 5, seed=3)
    # a different model row per series, as the broadcast join puts it on every reading
    codes = df.sensor_id.str[1:].astype(int) * 2 + (df.metric == "hum")
    df = df.assign(n=100, mean=20.0 + codes, m2=99.0 * (1 + codes), min=0.0, max=50.0, model_version=7)
    got = _run(fn, df, {}, 3, 0, np.random.default_rng(0))
    for (sid, metric), g in df.groupby(["sensor_id", "metric"]):
        c = int(sid[1:]) * 2 + (metric == "hum")
        core = registry.build("normal", {}, SeriesPrior(100, 20.0 + c, 99.0 * (1 + c), 0.0, 50.0, 7))
        g = g.sort_values(["source_partition", "source_offset"])
        want = [core.process_one(v, t) for v, t in zip(g.value, g.ts, strict=True)]
        mine = got[(got.sensor_id == sid) & (got.metric == metric)].sort_values("source_offset")
        assert list(mine.score) == [w.score for w in want]
        assert list(mine.lower) == [w.lower for w in want]
        assert set(mine.model_version) == {7}


def test_silent_series_expires_and_restarts_fresh():
    spec = [DetectorSpec("ema", {"window": 3, "warmup_windows": 1})]
    fn = stateful.make_state_fn(bind(spec), 10_000, 1)
    rng = np.random.default_rng(2)
    states: dict = {}
    a = _readings(2, 30, seed=1)
    _run(fn, a, states, 1, 0, rng)
    b = _readings(2, 5, seed=2, offset0=1000)
    only_s1 = b[b.sensor_id == "s1"]
    _run(fn, only_s1, states, 1, 6_000, rng)  # s0 silent, s1 reports
    got = _run(fn, b[b.sensor_id == "s0"], states, 1, 12_000, rng)  # s0 back after 12 s > 10 s
    # s0 starts from scratch: its scores are those of a replay of the new readings alone
    want = replay.replay_pandas(b[b.sensor_id == "s0"], spec)
    np.testing.assert_array_equal(
        got.sort_values(["metric", "source_offset"]).score.to_numpy(),
        want.sort_values(["metric", "source_offset"]).score.to_numpy(),
    )
    assert (got.reason == "warm-up").sum() == len(got) - 2 * (5 - 4)  # c <= 3 is warm-up, per metric
    # s1 (seen at 6 s) is kept and continued; s0's old state is gone
    series = stateful.load_bucket(states[0].blob, 1)
    assert {k: v[0] for k, v in series.items()} == {
        ("s1", "temp"): 6_000,
        ("s1", "hum"): 6_000,
        ("s0", "temp"): 12_000,
        ("s0", "hum"): 12_000,
    }
    assert stateful.pickle.loads(series[("s1", "temp")][1])["ema"]["c"] == 30 + 5
    assert stateful.pickle.loads(series[("s0", "temp")][1])["ema"]["c"] == 5


def test_bucket_timeout_removes_state():
    fn = stateful.make_state_fn(bind([DetectorSpec("ema", {})]), 10_000, 1)
    st = FakeState()
    list(fn((0,), iter([_readings(1, 3, seed=0)]), st))
    assert st.exists and st.timeout_ms == 10_000
    st.hasTimedOut = True
    assert list(fn((0,), iter([]), st)) == []
    assert not st.exists


def test_changed_bucket_count_is_refused():
    st = FakeState()
    list(
        stateful.make_state_fn(bind([DetectorSpec("ema", {})]), HOUR, 4)((1,), iter([_readings(1, 3, 0)]), st)
    )
    fn = stateful.make_state_fn(bind([DetectorSpec("ema", {})]), HOUR, 3)
    with pytest.raises(BucketMismatch, match="state_buckets is 3 .* written with 4"):
        list(fn((1,), iter([_readings(1, 3, 1)]), st))


def test_state_buckets_config_is_validated():
    assert load_config(overrides=["detect.state_buckets=8"]).detect.state_buckets == 8
    with pytest.raises(ConfigError, match="state_buckets"):
        load_config(overrides=["detect.state_buckets=0"])


@pytest.mark.parametrize("name", ["ema", "robust", "normal", "kmeans", "cad"])
def test_run_batch_equals_process_one_per_series(name):
    """The batched fast path (process_rows, one frame per batch) against process_one."""
    rng = np.random.default_rng(5)
    lengths = [0, 1, 7, 300, 2, 150]
    vals = [20 + np.cumsum(rng.normal(0, 0.5, n)) for n in lengths]
    vals[3][120] = np.nan  # a missing value mid-run
    vals[3][200] += 30.0
    priors = [None, SeriesPrior(50, 20.0, 49.0, 15.0, 25.0, 1)] * 3
    cfg = registry.make_config(name, {})
    det = bind([DetectorSpec(name, {})])
    # run in two halves so set_state/get_state between calls is exercised too
    states: list = [None] * len(lengths)
    got: list[list] = [[] for _ in lengths]
    for half in (0, 1):
        cut = [slice(0, len(v) // 2) if half == 0 else slice(len(v) // 2, None) for v in vals]
        parts = [v[c] for v, c in zip(vals, cut, strict=True)]
        ts = np.concatenate([(np.arange(len(v)) * 1000)[c] for v, c in zip(vals, cut, strict=True)])
        starts = np.r_[0, np.cumsum([len(p) for p in parts])]
        cols, states, _ = run_batch(det, np.concatenate(parts), ts, starts, states, priors)
        for i in range(len(lengths)):
            lo, hi = starts[i], starts[i + 1]
            got[i].extend(zip(*[cols[name][c][lo:hi].tolist() for c in RESULT_COLUMNS], strict=True))
    for i, v in enumerate(vals):
        core = registry.detector_class(name)(cfg, priors[i])
        want = [tuple(core.process_one(x, 1000 * t)) for t, x in enumerate(v)]
        np.testing.assert_array_equal(
            np.array([g[:4] for g in got[i]], float), np.array([w[:4] for w in want], float)
        )
        assert [g[4:] for g in got[i]] == [w[4:] for w in want]


def test_worker_switches_keep_one_live_set_per_bucket_and_freeze_the_cores(monkeypatch):
    """Batches alternating between two workers: each miss restores from the blob and replaces that
    worker's stale cores (one set per bucket, not one per batch seen), the numbers stay those of one
    worker, and after each call the GC is on again with the cores frozen out of its collections."""
    import gc
    from collections import OrderedDict

    spec = [DetectorSpec("cad", {})]
    buckets = 3
    batches = []
    for i, k in enumerate((5, 12, 3, 9, 4)):
        df = _readings(6, k, seed=k, offset0=10_000 * i)
        batches.append(df.assign(n=100, mean=30.0, m2=9900.0, min=15.0, max=45.0, model_version=3))
    outs = {}
    for switch in (False, True):
        workers = [OrderedDict(), OrderedDict()]
        fn = stateful.make_state_fn(bind(spec), HOUR, buckets)
        rng = np.random.default_rng(2)
        states: dict = {}
        got = []
        for i, df in enumerate(batches):
            monkeypatch.setattr(stateful, "_LIVE", workers[i % 2 if switch else 0])
            gc.unfreeze()
            got.append(_run(fn, df, states, buckets, 1000 * i, rng))
            assert gc.isenabled() and gc.get_freeze_count() > 0
        gc.unfreeze()
        for w in workers:
            assert len(w) <= buckets  # stale sets were replaced, not kept
        outs[switch] = pd.concat(got, ignore_index=True)
    key = ["sensor_id", "metric", "source_partition", "source_offset"]
    a = outs[False].sort_values(key, ignore_index=True)
    b = outs[True].sort_values(key, ignore_index=True)
    np.testing.assert_array_equal(a.score.to_numpy(float), b.score.to_numpy(float))
    assert (a.reason == b.reason).all() and a.is_anomaly.equals(b.is_anomaly)


def test_live_cores_are_dropped_over_the_memory_budget(monkeypatch):
    """Over budget, sets of earlier batches go first (oldest first), then this batch's newest
    but the current one; under budget everything is kept; budget 0 keeps nothing."""
    from collections import OrderedDict

    live: OrderedDict = OrderedDict()
    monkeypatch.setattr(stateful, "_LIVE", live)
    rss = {"mb": 100.0}
    monkeypatch.setattr(stateful, "rss_mb", lambda: rss["mb"])
    for b in range(3):  # batch 1: buckets 0, 1, 2, under budget
        stateful._keep_live(("q", (b,)), (b"t", {}, 1), budget_mb=500)
    assert [k[1][0] for k in live] == [0, 1, 2]
    stateful._keep_live(("q", (0,)), (b"t", {}, 2), budget_mb=500)  # batch 2 starts with bucket 0
    drops = iter([600.0, 450.0])  # over budget once; one drop brings it under
    monkeypatch.setattr(stateful, "rss_mb", lambda: next(drops))
    stateful._keep_live(("q", (3,)), (b"t", {}, 2), budget_mb=500)
    assert [k[1][0] for k in live] == [2, 0, 3]  # bucket 1, of batch 1 and the oldest, went
    drops = iter([900.0, 800.0, 700.0, 650.0])
    monkeypatch.setattr(stateful, "rss_mb", lambda: next(drops))
    stateful._keep_live(("q", (4,)), (b"t", {}, 2), budget_mb=500)
    # batch 1's bucket 2 first, then this batch's newest but the current (3, then 0); 4 stays
    assert [k[1][0] for k in live] == [4]
    live.clear()
    stateful._keep_live(("q", (5,)), (b"t", {}, 3), budget_mb=0)
    assert not live


def test_budget_zero_keeps_no_cores_and_gives_the_same_numbers(monkeypatch):
    from collections import OrderedDict

    spec = [DetectorSpec("cad", {})]
    outs = {}
    for mb in (None, 0):
        live: OrderedDict = OrderedDict()
        monkeypatch.setattr(stateful, "_LIVE", live)
        fn = stateful.make_state_fn(bind(spec), HOUR, 3, live_cache_mb=mb)
        rng = np.random.default_rng(5)
        states: dict = {}
        got = []
        for i, k in enumerate((6, 20, 3)):
            df = _readings(6, k, seed=k, offset0=10_000 * i)
            df = df.assign(n=100, mean=30.0, m2=9900.0, min=15.0, max=45.0, model_version=3)
            got.append(_run(fn, df, states, 3, 1000 * i, rng))
        assert (len(live) > 0) == (mb is None)
        outs[mb] = pd.concat(got, ignore_index=True)
    key = ["sensor_id", "metric", "source_partition", "source_offset"]
    a, b = (outs[m].sort_values(key, ignore_index=True) for m in (None, 0))
    np.testing.assert_array_equal(a.score.to_numpy(float), b.score.to_numpy(float))
    assert (a.reason == b.reason).all()


def test_live_budget_default_and_validation(monkeypatch):
    assert stateful.live_budget_mb(0) == 0 and stateful.live_budget_mb(700) == 700
    # null: half the memory limit per CPU, at least 256 MiB, 2 GiB when no limit can be read
    monkeypatch.setattr(stateful.os, "cpu_count", lambda: 4)
    for limit, want in ((8 << 30, 1024.0), (1 << 30, 256.0), (None, 2048.0)):
        monkeypatch.setattr(stateful, "_memory_limit_bytes", lambda limit=limit: limit)
        stateful._auto_budget_mb.cache_clear()
        assert stateful.live_budget_mb(None) == want
    stateful._auto_budget_mb.cache_clear()
    if stateful.rss_mb() is not None:  # Linux: the reading follows what this process touches
        before = stateful.rss_mb()
        block = np.ones(64 << 17)  # 64 MiB, written
        assert stateful.rss_mb() - before > 48
        del block
    assert load_config(overrides=["detect.live_cache_mb=512"]).detect.live_cache_mb == 512
    assert load_config().detect.live_cache_mb is None
    for bad in ("-1", "1.5", "1g", "true"):
        with pytest.raises(ConfigError, match="live_cache_mb"):
            load_config(overrides=[f"detect.live_cache_mb={bad}"])
