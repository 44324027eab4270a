"""Synthetic sensor traffic with labelled anomalies, for training, live runs, tests and evaluation.

Readings follow the seed-003 JSON contract::

    {"id": "sim-007", "ts": 1536725530000, "temp": 22.31, "hum": 41.27}

``ts`` is the event time in epoch ms. Each sensor has its own baseline, a daily cycle over *event*
time (so compressed history still shows days) and Gaussian noise. Readings come in ticks: every
tick each sensor emits one reading, sensor ``s`` at ``start_ts + k*step_ms + s*step_ms/sensors``.

Injected anomalies (per series = (sensor, metric); never overlapping within a series):

- ``spike``: one reading 6-10 total-sigmas away;
- ``level_shift``: 10-60 readings shifted by 4-7 sigmas;
- ``drift``: 30-120 readings with a linear ramp growing to 5-9 sigmas;
- ``stuck``: 10-60 readings repeating the first one's value exactly.

"sigma" is the series' total spread, sqrt(noise^2 + amp^2/2), which is what a global
mean/std model (zscore) sees. Optionally malformed records (``kind="malformed"``) are *inserted*
between readings (they never replace one, so anomaly labels stay intact).

Ground truth is JSON lines, one object per injected anomaly::

    {"kind": "drift", "sensor_id": "sim-007", "metric": "temp", "start_ts": ..., "end_ts": ...,
     "n": 42, "seq": [...], "ts": [...], "magnitude": 11.3, "truncated": false}
    {"kind": "malformed", "reason": "nan_token", "sensor_id": "sim-007", "metric": null,
     "start_ts": ..., "end_ts": ..., "n": 1, "record": 1234, "payload": "..."}

``seq`` is the reading's index in its sensor's sequence (tick number); ``(sensor_id, ts)``
identifies a reading uniquely. ``record`` is the malformed record's position in the generated
stream (records of all sensors, malformed ones included).

Determinism: the same :class:`LoadConfig` and tick count give byte-identical records and truth;
a longer run has the shorter one as prefix (random draws are made per fixed-size block).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

DAY_MS = 86_400_000
METRICS: tuple[str, ...] = ("temp", "hum")
ANOMALY_KINDS: tuple[str, ...] = ("spike", "level_shift", "drift", "stuck")
MALFORMED_REASONS: tuple[str, ...] = (
    "bad_json",
    "not_json",
    "not_object",
    "missing_field",
    "non_numeric",
    "nan_token",
    "infinity_token",
    "wrong_type",
)
REQUIRED_FIELDS: tuple[str, ...] = ("id", "ts", "temp", "hum")
_MIN_GAP = 20  # normal readings between two anomalies of one series, so each is separable
_BLOCK_RECORDS = 20_000  # records drawn per block (fixed so output does not depend on run length)


@dataclass(frozen=True)
class LoadConfig:
    """Everything that determines the generated stream (apart from the number of ticks)."""

    seed: int = 42
    sensors: int = 50
    start_ts: int = 1_536_710_400_000  # 2018-09-12T00:00Z, near the seed's sample readings
    step_ms: float = 60_000.0  # event time between two readings of one sensor
    anomaly_rate: float = 0.0  # P(an anomaly starts) per reading per anomalous metric
    anomaly_kinds: tuple[str, ...] = ANOMALY_KINDS
    anomaly_metrics: tuple[str, ...] = METRICS
    bad_rate: float = 0.0  # P(a malformed record is inserted after a reading)
    id_prefix: str = "sim-"

    def __post_init__(self) -> None:
        if self.sensors < 1 or self.step_ms <= 0:
            raise ValueError("sensors must be >= 1 and step_ms > 0")
        if not (0 <= self.anomaly_rate <= 1 and 0 <= self.bad_rate <= 1):
            raise ValueError("rates must be in [0, 1]")
        for k in self.anomaly_kinds:
            if k not in ANOMALY_KINDS:
                raise ValueError(f"unknown anomaly kind {k!r}; known: {ANOMALY_KINDS}")
        for m in self.anomaly_metrics:
            if m not in METRICS:
                raise ValueError(f"unknown metric {m!r}; known: {METRICS}")

    def sensor_ids(self) -> list[str]:
        width = max(3, len(str(self.sensors - 1)))
        return [f"{self.id_prefix}{i:0{width}d}" for i in range(self.sensors)]

    def ticks_for(self, records: int) -> int:
        """Ticks needed for at least ``records`` readings."""
        return math.ceil(records / self.sensors)

    def ticks_for_hours(self, hours: float) -> int:
        return max(1, math.ceil(hours * 3_600_000 / self.step_ms))

    def tick_ts(self, tick: int) -> int:
        """Event time of sensor 0's reading at ``tick`` (e.g. where a follow-up run continues)."""
        return int(self.start_ts + round(tick * self.step_ms))


@dataclass
class Profiles:
    """Per-sensor, per-metric shape parameters (arrays of shape (sensors,))."""

    base: dict[str, np.ndarray]
    amp: dict[str, np.ndarray]
    noise: dict[str, np.ndarray]
    peak_ms: dict[str, np.ndarray]  # time of day (ms) of the daily maximum

    def sigma(self, metric: str) -> np.ndarray:
        return np.sqrt(self.noise[metric] ** 2 + self.amp[metric] ** 2 / 2)


def make_profiles(cfg: LoadConfig) -> Profiles:
    """Sensor profiles depend on seed and sensor count only, so a live run with the same seed
    continues the very series a history run trained on."""
    rng = np.random.default_rng([cfg.seed, 0])
    n = cfg.sensors
    temp_peak = rng.uniform(13, 17, n) * 3_600_000  # warmest mid-afternoon
    return Profiles(
        base={"temp": rng.uniform(16, 28, n), "hum": rng.uniform(35, 60, n)},
        amp={"temp": rng.uniform(1.5, 5, n), "hum": rng.uniform(3, 9, n)},
        noise={"temp": rng.uniform(0.15, 0.5, n), "hum": rng.uniform(0.4, 1.5, n)},
        peak_ms={"temp": temp_peak, "hum": (temp_peak + DAY_MS / 2) % DAY_MS},  # humid at night
    )


@dataclass
class _Active:
    """An injected anomaly that may continue into the next block."""

    kind: str
    sensor: int
    metric: str
    start_seq: int
    length: int
    magnitude: float  # signed
    stuck_value: float = math.nan
    seq: list[int] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)

    def truth(self, sensor_ids: Sequence[str], truncated: bool = False) -> dict:
        return {
            "kind": self.kind,
            "sensor_id": sensor_ids[self.sensor],
            "metric": self.metric,
            "start_ts": self.ts[0],
            "end_ts": self.ts[-1],
            "n": len(self.seq),
            "seq": self.seq,
            "ts": self.ts,
            "magnitude": round(self.magnitude, 3),
            "truncated": truncated,
        }


@dataclass
class Batch:
    """A slice of the stream: Kafka keys and values (bytes) plus the ground truth completed in it."""

    keys: list[bytes | None]
    values: list[bytes]
    truth: list[dict]
    first_tick: int
    ticks: int
    first_record: int
    sensor_ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.values)


def _fmt(sid: str, ts: int, temp: float, hum: float) -> str:
    return f'{{"id": "{sid}", "ts": {ts}, "temp": {temp:.2f}, "hum": {hum:.2f}}}'


def _malformed(reason: str, sid: str, ts: int, temp: float, hum: float, r: np.random.Generator) -> str:
    """A record built from a real reading but broken in one specific way (see MALFORMED_REASONS)."""
    good = _fmt(sid, ts, temp, hum)
    v = int(r.integers(0, 3))
    if reason == "bad_json":
        return [good[: int(r.integers(5, len(good) - 2))], good.replace(", ", ", ,", 1), "{" + good][v]
    if reason == "not_json":
        return [f"{sid},{ts},{temp:.2f},{hum:.2f}", f"id={sid} ts={ts} temp={temp:.2f}", "<reading/>"][v]
    if reason == "not_object":
        return [f"[{temp:.2f}, {hum:.2f}]", f'"{sid}"', "null"][v]
    if reason == "missing_field":
        d = {"id": f'"{sid}"', "ts": str(ts), "temp": f"{temp:.2f}", "hum": f"{hum:.2f}"}
        del d[REQUIRED_FIELDS[int(r.integers(0, 4))]]
        return "{" + ", ".join(f'"{k}": {x}' for k, x in d.items()) + "}"
    if reason == "non_numeric":
        bad = ['"n/a"', '"hot"', '"22,5"'][v]
        return (
            good.replace(f'"temp": {temp:.2f}', f'"temp": {bad}')
            if v != 1
            else good.replace(f'"hum": {hum:.2f}', f'"hum": {bad}')
        )
    if reason == "nan_token":
        return (
            good.replace(f'"temp": {temp:.2f}', '"temp": NaN')
            if v
            else good.replace(f'"hum": {hum:.2f}', '"hum": NaN')
        )
    if reason == "infinity_token":
        tok = ["Infinity", "-Infinity", "Infinity"][v]
        return (
            good.replace(f'"hum": {hum:.2f}', f'"hum": {tok}')
            if v != 1
            else good.replace(f'"temp": {temp:.2f}', f'"temp": {tok}')
        )
    if reason == "wrong_type":
        return [
            good.replace(f'"ts": {ts}', '"ts": "2018-09-12T04:12:10Z"'),
            good.replace(f'"temp": {temp:.2f}', '"temp": true'),
            good.replace(f'"hum": {hum:.2f}', f'"hum": [{hum:.2f}]'),
        ][v]
    raise ValueError(reason)


class Generator:
    """Stateful block generator: ``next_batch()`` returns the next ticks of the stream.

    Keeping the state (tick counter, anomalies in progress, RNGs) in one object lets live mode
    pull records just in time while history mode and tests pull everything.
    """

    def __init__(self, cfg: LoadConfig, total_ticks: int | None = None):
        self.cfg = cfg
        self.total_ticks = total_ticks
        self.ids = cfg.sensor_ids()
        self._ids_b = [s.encode() for s in self.ids]
        self.prof = make_profiles(cfg)
        self._rng_noise = np.random.default_rng([cfg.seed, 1])
        self._rng_anom = np.random.default_rng([cfg.seed, 2])
        self._rng_bad = np.random.default_rng([cfg.seed, 3])
        self.block_ticks = max(1, _BLOCK_RECORDS // cfg.sensors)
        self.tick = 0
        self.record = 0
        self._busy = np.zeros((cfg.sensors, len(METRICS)), dtype=np.int64)  # first free seq
        self._active: list[_Active] = []
        self._offsets = np.arange(cfg.sensors) * (cfg.step_ms / cfg.sensors)

    @property
    def done(self) -> bool:
        return self.total_ticks is not None and self.tick >= self.total_ticks

    def _apply(self, a: _Active, vals: np.ndarray, ts: np.ndarray, k0: int, n: int) -> bool:
        """Apply anomaly ``a`` to block-local ticks [k0, n); True when it is complete."""
        m = METRICS.index(a.metric)
        done_before = len(a.seq)
        take = min(a.length - done_before, n - k0)
        ks = np.arange(k0, k0 + take)
        col = vals[m][ks, a.sensor]
        j = np.arange(done_before, done_before + take)
        if a.kind in ("spike", "level_shift"):
            col = col + a.magnitude
        elif a.kind == "drift":
            col = col + a.magnitude * (j + 1) / a.length
        else:  # stuck: the first affected reading's value, repeated exactly
            if math.isnan(a.stuck_value):
                a.stuck_value = round(float(col[0]), 2)
            col = np.full(take, a.stuck_value)
        vals[m][ks, a.sensor] = col
        base_seq = self.tick
        a.seq.extend((base_seq + ks).tolist())
        a.ts.extend(ts[ks, a.sensor].tolist())
        return len(a.seq) >= a.length

    def _new_anomaly(self, kind: str, s: int, metric: str, seq: int) -> _Active:
        r = self._rng_anom
        sigma = float(self.prof.sigma(metric)[s])
        sign = 1.0 if r.random() < 0.5 else -1.0
        if kind == "spike":
            length, mag = 1, r.uniform(6, 10)
        elif kind == "level_shift":
            length, mag = int(r.integers(10, 61)), r.uniform(4, 7)
        elif kind == "drift":
            length, mag = int(r.integers(30, 121)), r.uniform(5, 9)
        else:
            length, mag = int(r.integers(10, 61)), 0.0
        return _Active(kind, s, metric, seq, length, sign * mag * sigma + 0.0)  # no -0.0 for stuck

    def next_batch(self) -> Batch | None:
        """The next block of ticks, or None when ``total_ticks`` have been produced."""
        if self.done:
            return None
        cfg, S, B = self.cfg, self.cfg.sensors, self.block_ticks
        n = B if self.total_ticks is None else min(B, self.total_ticks - self.tick)
        k = np.arange(self.tick, self.tick + B)
        ts = np.rint(cfg.start_ts + k[:, None] * cfg.step_ms + self._offsets[None, :]).astype(np.int64)
        tod = ts % DAY_MS
        vals = []
        for m in METRICS:
            p = self.prof
            daily = p.amp[m] * np.cos(2 * np.pi * (tod - p.peak_ms[m]) / DAY_MS)
            vals.append(p.base[m] + daily + p.noise[m] * self._rng_noise.standard_normal((B, S)))
        # Draws are always for a full block (prefix-stable); only the first n ticks are used.
        starts = self._rng_anom.random((B, S, len(METRICS))) < cfg.anomaly_rate
        bad_mask = self._rng_bad.random(B * S) < cfg.bad_rate
        truth: list[dict] = []

        still: list[_Active] = []
        for a in self._active:  # anomalies carried over from the previous block
            (truth.append(a.truth(self.ids)) if self._apply(a, vals, ts, 0, n) else still.append(a))
        self._active = still
        allowed_m = {METRICS.index(m) for m in cfg.anomaly_metrics}
        for kk, s, mi in zip(*np.nonzero(starts[:n]), strict=True):
            if mi not in allowed_m:
                continue
            seq = self.tick + int(kk)
            if seq < self._busy[s, mi]:
                continue
            kind = cfg.anomaly_kinds[int(self._rng_anom.integers(0, len(cfg.anomaly_kinds)))]
            a = self._new_anomaly(kind, int(s), METRICS[mi], seq)
            self._busy[s, mi] = seq + a.length + _MIN_GAP
            if self._apply(a, vals, ts, int(kk), n):
                truth.append(a.truth(self.ids))
            else:
                self._active.append(a)

        # Format tick-major (all sensors of tick k, then k+1), the order a fleet would report in.
        temp = vals[0][:n].ravel().tolist()
        hum = vals[1][:n].ravel().tolist()
        tsl = ts[:n].ravel().tolist()
        ids = self.ids * n
        values = [
            f'{{"id": "{i}", "ts": {t}, "temp": {a:.2f}, "hum": {b:.2f}}}'.encode()
            for i, t, a, b in zip(ids, tsl, temp, hum, strict=True)
        ]
        keys: list[bytes | None] = self._ids_b * n
        bad_idx = np.nonzero(bad_mask[: n * S])[0]
        if len(bad_idx):
            # Insert from the back so earlier indices stay valid; record numbers computed after.
            inserted: list[tuple[int, dict]] = []
            for j in bad_idx.tolist():
                reason = MALFORMED_REASONS[int(self._rng_bad.integers(0, len(MALFORMED_REASONS)))]
                s = j % S
                payload = _malformed(reason, ids[j], tsl[j], temp[j], hum[j], self._rng_bad)
                inserted.append((j, {"reason": reason, "sensor": s, "ts": tsl[j], "payload": payload}))
            for off, (j, info) in enumerate(inserted):
                pos = j + 1 + off
                values.insert(pos, info["payload"].encode())
                keys.insert(pos, self._ids_b[info["sensor"]])
                truth.append(
                    {
                        "kind": "malformed",
                        "reason": info["reason"],
                        "sensor_id": self.ids[info["sensor"]],
                        "metric": None,
                        "start_ts": info["ts"],
                        "end_ts": info["ts"],
                        "n": 1,
                        "record": self.record + pos,
                        "payload": info["payload"],
                    }
                )
        batch = Batch(keys, values, truth, self.tick, n, self.record, self.ids)
        self.tick += n
        self.record += len(values)
        if self.done:  # anomalies cut by the end of the run are still labelled
            batch.truth.extend(a.truth(self.ids, truncated=True) for a in self._active if a.seq)
            self._active = []
        return batch

    def __iter__(self) -> Iterator[Batch]:
        while (b := self.next_batch()) is not None:
            yield b


def generate(cfg: LoadConfig, ticks: int) -> tuple[list[bytes], list[bytes | None], list[dict]]:
    """Pure, Kafka-free generation of ``ticks`` ticks: (values, keys, ground truth)."""
    values: list[bytes] = []
    keys: list[bytes | None] = []
    truth: list[dict] = []
    for b in Generator(cfg, ticks):
        values += b.values
        keys += b.keys
        truth += b.truth
    return values, keys, truth


# --------------------------------------------------------------------------- validation


def _reject_constant(tok: str) -> float:
    raise ValueError(f"non-finite number token {tok}")


def validate_record(raw: bytes | str) -> str | None:
    """Why a record breaks the reading contract, or None when it is a valid reading.

    The reference the detect job's dead-letter path must agree with: strict JSON (NaN/Infinity
    tokens are not JSON, even though Python's and Spark's parsers accept them by default), an
    object, all of id/ts/temp/hum present, id a non-empty string, ts an integer, temp/hum finite
    numbers (booleans are not numbers).
    """
    try:
        d = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as e:
        return f"not valid JSON: {e}"
    if not isinstance(d, dict):
        return "not a JSON object"
    for f in REQUIRED_FIELDS:
        if f not in d:
            return f"missing field {f}"
    if not isinstance(d["id"], str) or not d["id"]:
        return "id is not a non-empty string"
    if isinstance(d["ts"], bool) or not isinstance(d["ts"], int):
        return "ts is not an integer"
    for f in ("temp", "hum"):
        x = d[f]
        if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
            return f"{f} is not a finite number"
    return None


# --------------------------------------------------------------------------- rate control


class TokenBucket:
    """Token bucket: ``rate`` tokens/s, at most ``burst`` banked. ``clock`` is injectable for tests.

    Live mode asks how many records it may send now, so the achieved rate stays at the target
    even when a send stalls for a moment (the bucket refills, bounded by the burst)."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = 0.0
        self.last = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now

    def take(self, want: int) -> int:
        """Take up to ``want`` whole tokens now; returns how many were granted."""
        self._refill()
        got = min(want, int(self.tokens))
        self.tokens -= got
        return got

    def wait_time(self, want: int = 1) -> float:
        """Seconds until ``want`` tokens are available."""
        self._refill()
        return max(0.0, (min(want, self.burst) - self.tokens) / self.rate)


def live_plan(rate: float, seconds: float, count: int | None, sensors: int) -> tuple[int, int]:
    """(records, ticks) for a live run: rate*seconds records, capped by ``count``, whole ticks."""
    records = int(rate * seconds)
    if count is not None:
        records = min(records, count)
    ticks = math.ceil(records / sensors) if records > 0 else 0
    return records, ticks


# --------------------------------------------------------------------------- sinks


class KafkaSink:
    """Batched confluent-kafka producer. linger + large batches + lz4 keep a Python producer at
    hundreds of thousands of records/s; delivery errors are counted (reported only on error)."""

    def __init__(self, bootstrap: str, topic: str, conf: dict | None = None):
        from confluent_kafka import Producer

        self.topic = topic
        self.errors = 0
        self.first_error: str | None = None
        base = {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.num.messages": 100_000,
            "batch.size": 4 * 1024 * 1024,
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 1024 * 1024,
            "compression.type": "lz4",
            "enable.idempotence": True,  # acks=all, no duplicates or reordering on retry
            "delivery.report.only.error": True,
            "on_delivery": self._on_delivery,  # set once here: a per-produce() callback costs ~20 %
            "log_level": 3,
        }
        base.update(conf or {})
        self.producer = Producer(base)

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self.errors += 1
            self.first_error = self.first_error or str(err)

    def send(self, keys: Sequence[bytes | None], values: Sequence[bytes]) -> None:
        produce, poll, topic = self.producer.produce, self.producer.poll, self.topic
        for i, (k, v) in enumerate(zip(keys, values, strict=True)):
            while True:
                try:
                    produce(topic, v, k)
                    break
                except BufferError:
                    poll(0.05)  # local queue full: let librdkafka drain
            if i % 10_000 == 0:
                poll(0)
        poll(0)

    def close(self, timeout: float = 60.0) -> None:
        left = self.producer.flush(timeout)
        if left:
            raise RuntimeError(f"{left} records not delivered within {timeout}s")
        if self.errors:
            raise RuntimeError(f"{self.errors} delivery errors, first: {self.first_error}")


class FileSink:
    """JSON-lines files (``readings-00000.jsonl`` ...), rolled every ``max_records`` so a Spark
    batch read gets several splits. Malformed records are lines too: none contains a newline."""

    def __init__(self, out_dir: str | os.PathLike, max_records: int = 1_000_000, prefix: str = "readings"):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_records, self.prefix = max_records, prefix
        self.part, self.in_part, self.fh = 0, 0, None
        self.files: list[Path] = []

    def send(self, keys: Sequence[bytes | None], values: Sequence[bytes]) -> None:
        i = 0
        while i < len(values):
            if self.fh is None or self.in_part >= self.max_records:
                self._roll()
            take = min(len(values) - i, self.max_records - self.in_part)
            self.fh.write(b"\n".join(values[i : i + take]) + b"\n")
            self.in_part += take
            i += take

    def _roll(self) -> None:
        if self.fh is not None:
            self.fh.close()
        p = self.dir / f"{self.prefix}-{self.part:05d}.jsonl"
        self.fh, self.in_part = open(p, "wb"), 0  # noqa: SIM115 - closed in _roll/close
        self.files.append(p)
        self.part += 1

    def close(self, timeout: float = 0) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


class FormatSink:
    """Re-renders generated readings in another input format (``render``) before ``inner`` sends them."""

    def __init__(self, inner, fmt: str):
        if fmt not in RECORD_FORMATS:
            raise ValueError(f"unknown record format {fmt!r}; known: {RECORD_FORMATS}")
        self.inner, self.fmt = inner, fmt

    def send(self, keys: Sequence[bytes | None], values: Sequence[bytes]) -> None:
        self.inner.send(keys, [render(v, self.fmt) for v in values])

    def close(self, *args, **kwargs) -> None:
        self.inner.close(*args, **kwargs)


RECORD_FORMATS: tuple[str, ...] = ("json", "openmetrics", "app_json")


def render(raw: bytes, fmt: str) -> bytes:
    """A generated reading in another input format (detect's ``input.format``).

    openmetrics: two sample lines per record, ``temp{sensor="sim-007"} 22.31 <ts ms>`` and the same
    for hum (series key ``temp{sensor="sim-007"}``, metric ``value``); app_json: seed 002's message
    ``{"application": "sim-007", "value": <temp>, "ts": "<ISO-8601 UTC>"}`` (it carries one value).
    Malformed records pass through unchanged: they stay malformed in every format.
    """
    if fmt == "json" or validate_record(raw) is not None:
        return raw
    d = json.loads(raw)
    sid, ts = d["id"], d["ts"]
    if fmt == "openmetrics":
        return f'temp{{sensor="{sid}"}} {d["temp"]} {ts}\nhum{{sensor="{sid}"}} {d["hum"]} {ts}'.encode()
    iso = datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps({"application": sid, "value": d["temp"], "ts": iso}).encode()


# --------------------------------------------------------------------------- runs


def _write_truth(fh, truth: Iterable[dict]) -> None:
    for t in truth:
        fh.write(json.dumps(t, separators=(",", ":")) + "\n")


def run_history(cfg: LoadConfig, ticks: int, sinks: Sequence, truth_path: str | None) -> dict:
    """Produce ``ticks`` ticks as fast as possible; returns a summary with the measured rate."""
    t0 = time.perf_counter()
    n, counts = 0, {}
    with open(truth_path or os.devnull, "w") as tf:
        for b in Generator(cfg, ticks):
            for s in sinks:
                s.send(b.keys, b.values)
            n += len(b)
            _write_truth(tf, b.truth)
            for t in b.truth:
                counts[t["kind"]] = counts.get(t["kind"], 0) + 1
        gen_s = time.perf_counter() - t0
        for s in sinks:
            s.close()
    el = time.perf_counter() - t0
    return {
        "mode": "history",
        "records": n,
        "ticks": ticks,
        "seconds": round(el, 3),
        "records_per_s": round(n / el) if el else None,
        "produce_seconds_before_flush": round(gen_s, 3),
        "start_ts": cfg.start_ts,
        "next_ts": cfg.tick_ts(ticks),
        "truth": truth_path,
        "truth_counts": counts,
    }


def truncate_truth(batch: Batch, sent: int, sensors: int) -> list[dict]:
    """Ground truth of ``batch`` restricted to its first ``sent`` records (a live run cut by its
    deadline must not label readings that never left the generator)."""
    malformed = [
        t for t in batch.truth if t["kind"] == "malformed" and t["record"] < batch.first_record + sent
    ]
    readings_sent = sent - len(malformed)
    out: list[dict] = list(malformed)
    sid_index = {sid: i for i, sid in enumerate(batch.sensor_ids)}
    for t in batch.truth:
        if t["kind"] == "malformed":
            continue
        s = sid_index[t["sensor_id"]]
        keep = [j for j, q in enumerate(t["seq"]) if (q - batch.first_tick) * sensors + s < readings_sent]
        if len(keep) == len(t["seq"]):
            out.append(t)
        elif keep:
            seq = [t["seq"][j] for j in keep]
            ts = [t["ts"][j] for j in keep]
            out.append({**t, "seq": seq, "ts": ts, "n": len(seq), "end_ts": ts[-1], "truncated": True})
    return out


def run_live(
    cfg: LoadConfig,
    rate: float,
    seconds: float,
    sinks: Sequence,
    truth_path: str | None,
    count: int | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Produce about ``rate`` records/s: rate*seconds readings (capped by ``count``), then stop.

    Records go out in small slices as tokens accrue (burst = 50 ms of traffic), so the stream is
    smooth rather than one burst per second. Malformed records are extra records and count against
    the rate. A hard deadline (seconds + 10 %, at least +2 s) bounds the run if the sink cannot keep
    up; ground truth then covers only what was sent.
    """
    _, ticks = live_plan(rate, seconds, count, cfg.sensors)
    bucket = TokenBucket(rate, burst=max(1.0, rate * 0.05), clock=clock)
    gen = Generator(cfg, ticks)
    t0 = clock()
    deadline = t0 + seconds + max(2.0, 0.1 * seconds)
    sent, counts, cut = 0, {}, False
    batch: Batch | None = None
    pos = 0  # records of ``batch`` already sent

    def write(truth: list[dict]) -> None:
        _write_truth(tf, truth)
        for t in truth:
            counts[t["kind"]] = counts.get(t["kind"], 0) + 1

    with open(truth_path or os.devnull, "w") as tf:
        while True:
            if batch is None or pos >= len(batch):
                if batch is not None:
                    write(batch.truth)
                batch, pos = gen.next_batch(), 0
                if batch is None:
                    break
            if clock() >= deadline:
                write(truncate_truth(batch, pos, cfg.sensors))
                cut = True
                break
            got = bucket.take(len(batch) - pos)
            if got == 0:
                sleep(min(0.01, max(0.001, bucket.wait_time(1))))
                continue
            for s in sinks:
                s.send(batch.keys[pos : pos + got], batch.values[pos : pos + got])
            pos += got
            sent += got
        for s in sinks:
            s.close()
    el = clock() - t0
    return {
        "mode": "live",
        "records": sent,
        "target_rate": rate,
        "seconds": round(el, 3),
        "records_per_s": round(sent / el, 1) if el else None,
        "cut_by_deadline": cut,
        "start_ts": cfg.start_ts,
        "next_ts": cfg.tick_ts(ticks),
        "truth": truth_path,
        "truth_counts": counts,
    }


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="produce.py",
        description="Synthetic sensor readings (seed-003 JSON) with labelled anomalies, to Kafka or files.",
    )
    p.add_argument("mode", choices=["history", "live"])
    p.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    p.add_argument(
        "--topic", default=None, help="Kafka topic (default sensor-readings; not used with --out-dir)"
    )
    p.add_argument("--out-dir", help="write JSON-lines files here instead of Kafka (e.g. for the train job)")
    p.add_argument("--kafka", action="store_true", help="with --out-dir: also produce to Kafka")
    p.add_argument(
        "--truth",
        help="ground-truth JSON-lines path (default: <out-dir>/ground_truth.jsonl "
        "or var/loadgen/truth-<mode>-<start_ts>.jsonl)",
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--sensors", type=int, default=50)
    p.add_argument(
        "--start-ts",
        type=int,
        help="event time (epoch ms) of the first tick; history default: "
        "now minus --hours; live default: now (or pass a history run's next_ts to continue it)",
    )
    p.add_argument(
        "--step-ms",
        type=float,
        help="event ms between readings of one sensor; history default "
        "60000; live default sensors/rate s, so event time follows the wall clock",
    )
    p.add_argument("--hours", type=float, default=24.0, help="history: event-time hours to produce")
    p.add_argument("--count", type=int, help="cap on readings (history: overrides --hours)")
    p.add_argument("--rate", type=float, default=1000.0, help="live: records/s")
    p.add_argument("--seconds", type=float, default=60.0, help="live: run time bound")
    p.add_argument(
        "--anomaly-rate",
        type=float,
        help="P(anomaly start) per reading per metric (default: history 0, live 0.002)",
    )
    p.add_argument("--kinds", default=",".join(ANOMALY_KINDS), help="anomaly kinds, comma separated")
    p.add_argument("--metrics", default=",".join(METRICS), help="metrics that get anomalies")
    p.add_argument("--bad-rate", type=float, default=0.0, help="P(malformed record inserted) per reading")
    p.add_argument("--compression", default="lz4", help="Kafka compression.type (lz4, none, zstd, ...)")
    p.add_argument(
        "--create-partitions",
        type=int,
        default=0,
        help="create the topic first with this many partitions (0: rely on auto-create)",
    )
    p.add_argument("--file-records", type=int, default=1_000_000, help="records per output file")
    p.add_argument(
        "--format",
        choices=RECORD_FORMATS,
        default="json",
        help="record format (detect's input.format): openmetrics = temp/hum lines keyed "
        "temp{sensor=...}; app_json = seed 002 message with temp as value. Truth stays in JSON terms",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    now_ms = int(time.time() * 1000)
    if a.mode == "history":
        step = a.step_ms or 60_000.0
        start = a.start_ts if a.start_ts is not None else (now_ms - int(a.hours * 3_600_000)) // step * step
        rate_default = 0.0
    else:
        step = a.step_ms or a.sensors / a.rate * 1000.0
        start = a.start_ts if a.start_ts is not None else now_ms
        rate_default = 0.002
    cfg = LoadConfig(
        seed=a.seed,
        sensors=a.sensors,
        start_ts=int(start),
        step_ms=float(step),
        anomaly_rate=rate_default if a.anomaly_rate is None else a.anomaly_rate,
        anomaly_kinds=tuple(k for k in a.kinds.split(",") if k),
        anomaly_metrics=tuple(m for m in a.metrics.split(",") if m),
        bad_rate=a.bad_rate,
    )
    truth = a.truth
    if truth is None:
        truth = (
            str(Path(a.out_dir) / "ground_truth.jsonl")
            if a.out_dir
            else f"var/loadgen/truth-{a.mode}-{cfg.start_ts}.jsonl"
        )
    Path(truth).parent.mkdir(parents=True, exist_ok=True)
    sinks: list = []
    if a.out_dir:
        sinks.append(FileSink(a.out_dir, a.file_records))
    if not a.out_dir or a.kafka or a.topic:
        topic = a.topic or "sensor-readings"
        if a.create_partitions:
            from spark_anomaly.kafka_admin import create_topic

            create_topic(a.bootstrap, topic, a.create_partitions)
        sinks.append(KafkaSink(a.bootstrap, topic, {"compression.type": a.compression}))
    if a.format != "json":
        sinks = [FormatSink(s, a.format) for s in sinks]
    if a.mode == "history":
        ticks = cfg.ticks_for(a.count) if a.count else cfg.ticks_for_hours(a.hours)
        summary = run_history(cfg, ticks, sinks, truth)
    else:
        summary = run_live(cfg, a.rate, a.seconds, sinks, truth, count=a.count)
    summary["sinks"] = [type(s).__name__ for s in sinks]
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
