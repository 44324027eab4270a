"""Load generator without Kafka: determinism, ground truth matches the data, malformed records
really are malformed, rate control math."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from spark_anomaly.loadgen import (
    ANOMALY_KINDS,
    MALFORMED_REASONS,
    FileSink,
    Generator,
    LoadConfig,
    TokenBucket,
    generate,
    live_plan,
    run_history,
    run_live,
    truncate_truth,
    validate_record,
)

CFG = LoadConfig(seed=7, sensors=20, anomaly_rate=0.004, bad_rate=0.01)
TICKS = 3000  # 60k readings, several blocks


@pytest.fixture(scope="module")
def run():
    return generate(CFG, TICKS)


@pytest.fixture(scope="module")
def clean():
    """Same seed without anomalies or malformed records: the noise stream is identical."""
    vals, _, truth = generate(LoadConfig(seed=7, sensors=20), TICKS)
    assert truth == []
    return _index(vals)


def _index(values: list[bytes]) -> dict[tuple[str, int], dict]:
    out = {}
    for v in values:
        if validate_record(v) is None:
            d = json.loads(v)
            out[(d["id"], d["ts"])] = d
    return out


def test_deterministic_for_a_seed(run):
    vals, keys, truth = generate(CFG, TICKS)
    assert vals == run[0] and keys == run[1] and truth == run[2]
    other, _, _ = generate(LoadConfig(seed=8, sensors=20, anomaly_rate=0.004, bad_rate=0.01), TICKS)
    assert other != vals


def test_shorter_run_is_a_prefix(run):
    vals, _, _ = generate(CFG, 1234)
    assert vals == run[0][: len(vals)]
    assert sum(validate_record(v) is None for v in vals) == 1234 * CFG.sensors


def test_readings_follow_the_contract(run):
    vals, keys, _ = run
    good = [json.loads(v) for v in vals if validate_record(v) is None]
    assert len(good) == TICKS * CFG.sensors
    assert set(good[0]) == {"id", "ts", "temp", "hum"}
    assert good[0]["id"] == "sim-000" and good[0]["ts"] == CFG.start_ts
    per_sensor = Counter(d["id"] for d in good)
    assert len(per_sensor) == 20 and set(per_sensor.values()) == {TICKS}
    for d, k in zip(
        good[:100], [k for k, v in zip(keys, vals, strict=True) if validate_record(v) is None], strict=False
    ):
        assert k == d["id"].encode()
    # event time advances by step_ms per sensor, and a day of it shows the daily cycle
    s0 = [d for d in good if d["id"] == "sim-000"]
    assert s0[1]["ts"] - s0[0]["ts"] == CFG.step_ms
    day = [d["temp"] for d in s0[:1440]]
    assert max(day) - min(day) > 2.0


def test_every_anomaly_is_in_truth_and_in_data(run, clean):
    vals, _, truth = run
    data = _index(vals)
    anomalies = [t for t in truth if t["kind"] != "malformed"]
    assert {t["kind"] for t in anomalies} == set(ANOMALY_KINDS)
    labelled: set[tuple[str, int, str]] = set()
    for t in anomalies:
        assert (
            t["n"] == len(t["seq"]) == len(t["ts"])
            and t["start_ts"] == t["ts"][0]
            and t["end_ts"] == t["ts"][-1]
        )
        got = [data[(t["sensor_id"], ts)][t["metric"]] for ts in t["ts"]]
        base = [clean[(t["sensor_id"], ts)][t["metric"]] for ts in t["ts"]]
        diff = [g - b for g, b in zip(got, base, strict=True)]
        if t["kind"] == "spike":
            assert t["n"] == 1 and abs(diff[0] - t["magnitude"]) < 0.011
        elif t["kind"] == "level_shift":
            assert all(abs(d - t["magnitude"]) < 0.011 for d in diff)
        elif t["kind"] == "drift":
            assert (
                all(abs(d - t["magnitude"] * (j + 1) / t["n"]) < 0.011 for j, d in enumerate(diff))
                or t["truncated"]
            )
            assert abs(diff[-1]) > abs(diff[0])
        else:
            assert len(set(got)) == 1 and got[0] == base[0]
        labelled.update((t["sensor_id"], ts, t["metric"]) for ts in t["ts"])
    # and nothing else differs from the clean run
    changed = {
        (sid, ts, m)
        for (sid, ts), d in data.items()
        for m in ("temp", "hum")
        if abs(d[m] - clean[(sid, ts)][m]) > 1e-9
    }
    assert changed <= labelled
    # unchanged yet labelled: only stuck readings (the first one, or where the real signal happens
    # to pass through the stuck value)
    stuck = {(t["sensor_id"], ts, t["metric"]) for t in anomalies if t["kind"] == "stuck" for ts in t["ts"]}
    assert labelled - changed <= stuck


def test_anomaly_metrics_and_kinds_are_respected():
    cfg = LoadConfig(
        seed=1, sensors=10, anomaly_rate=0.01, anomaly_kinds=("spike",), anomaly_metrics=("hum",)
    )
    _, _, truth = generate(cfg, 2000)
    assert truth and {(t["kind"], t["metric"]) for t in truth} == {("spike", "hum")}


def test_malformed_records_fail_parse_or_schema(run):
    vals, _, truth = run
    bad = [t for t in truth if t["kind"] == "malformed"]
    assert {t["reason"] for t in bad} == set(MALFORMED_REASONS)
    for t in bad:
        raw = vals[t["record"]]
        assert raw.decode() == t["payload"]
        assert validate_record(raw) is not None, t
    # exactly the labelled records are invalid
    invalid = {i for i, v in enumerate(vals) if validate_record(v) is not None}
    assert invalid == {t["record"] for t in bad}


@pytest.mark.parametrize("reason", MALFORMED_REASONS)
def test_each_malformed_kind_is_really_broken(reason):
    import numpy as np

    from spark_anomaly.loadgen import _malformed

    r = np.random.default_rng(0)
    for _ in range(20):
        payload = _malformed(reason, "sim-001", 1536725530000, 22.34, 41.2, r)
        assert validate_record(payload) is not None, payload
        if reason in ("bad_json", "not_json"):
            with pytest.raises(ValueError):
                json.loads(payload)
        if reason in ("nan_token", "infinity_token"):
            # Python's (and Spark's) default JSON parsers accept these tokens: the schema check must not.
            d = json.loads(payload)
            assert not all(math.isfinite(d[f]) for f in ("temp", "hum"))


def test_validate_record_accepts_contract_and_rejects_types():
    assert validate_record(b'{"id": "sim-614", "ts": 1536725530000, "temp": 22.3, "hum": 41.2}') is None
    assert validate_record('{"id": "x", "ts": 1, "temp": 1, "hum": 2, "extra": 3}') is None
    assert validate_record('{"id": "x", "ts": 1, "temp": true, "hum": 2}')
    assert validate_record('{"id": "x", "ts": 1.5, "temp": 1, "hum": 2}')
    assert validate_record('{"id": "", "ts": 1, "temp": 1, "hum": 2}')
    assert validate_record(b"\xff\xfe")


def test_token_bucket_rate_math():
    now = [0.0]
    b = TokenBucket(rate=100, burst=10, clock=lambda: now[0])
    assert b.take(5) == 0
    now[0] = 0.05
    assert b.take(100) == 5
    assert b.wait_time(1) == pytest.approx(0.01)
    now[0] = 10.0  # long pause: refill capped at the burst
    assert b.take(1000) == 10
    with pytest.raises(ValueError):
        TokenBucket(0, 1)


def test_live_plan():
    assert live_plan(1000, 60, None, 50) == (60000, 1200)
    assert live_plan(1000, 60, 500, 50) == (500, 10)
    assert live_plan(7, 1, None, 5) == (7, 2)
    assert live_plan(0, 10, None, 5) == (0, 0)


class _ListSink:
    def __init__(self):
        self.values: list[bytes] = []

    def send(self, keys, values):
        self.values += values

    def close(self, timeout=0):
        pass


def test_run_live_holds_the_rate_with_a_fake_clock(tmp_path):
    now = [0.0]
    cfg = LoadConfig(seed=3, sensors=10, anomaly_rate=0.01, step_ms=10.0)
    sink = _ListSink()
    s = run_live(
        cfg,
        rate=1000,
        seconds=5,
        sinks=[sink],
        truth_path=str(tmp_path / "t.jsonl"),
        clock=lambda: now[0],
        sleep=lambda d: now.__setitem__(0, now[0] + d),
    )
    assert s["records"] == len(sink.values) == 5000 and not s["cut_by_deadline"]
    assert 4.9 <= s["seconds"] <= 5.1
    assert sink.values == generate(cfg, 500)[0]
    truth = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert truth == generate(cfg, 500)[2]


def test_run_live_deadline_cuts_truth_too(tmp_path):
    now = [0.0]
    cfg = LoadConfig(seed=3, sensors=10, anomaly_rate=0.02, bad_rate=0.02, step_ms=10.0)

    class Slow(_ListSink):  # sending takes 4x real time: the deadline (seconds + 2 s) cuts the run
        def send(self, keys, values):
            super().send(keys, values)
            now[0] += len(values) / 250

    sink = Slow()
    s = run_live(
        cfg,
        rate=1000,
        seconds=5,
        sinks=[sink],
        truth_path=str(tmp_path / "t.jsonl"),
        clock=lambda: now[0],
        sleep=lambda d: now.__setitem__(0, now[0] + d),
    )
    assert s["cut_by_deadline"] and 0 < s["records"] == len(sink.values) < 5000
    truth = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    data = _index(sink.values)
    for t in truth:
        if t["kind"] == "malformed":
            assert sink.values[t["record"]].decode() == t["payload"]
        else:
            assert all((t["sensor_id"], ts) in data for ts in t["ts"])


def test_truncate_truth_keeps_only_sent_readings():
    cfg = LoadConfig(seed=5, sensors=4, anomaly_rate=0.05, bad_rate=0.05)
    b = Generator(cfg, 200).next_batch()
    full = truncate_truth(b, len(b), cfg.sensors)
    assert sorted(map(json.dumps, full)) == sorted(map(json.dumps, b.truth))
    part = truncate_truth(b, 100, cfg.sensors)
    data = _index(b.values[:100])
    assert part
    for t in part:
        if t["kind"] == "malformed":
            assert t["record"] < 100
        else:
            assert all((t["sensor_id"], ts) in data for ts in t["ts"])


def test_history_to_files(tmp_path):
    cfg = LoadConfig(seed=2, sensors=5, bad_rate=0.01)
    sink = FileSink(tmp_path / "out", max_records=300)
    s = run_history(cfg, 200, [sink], str(tmp_path / "out" / "ground_truth.jsonl"))
    lines = b"".join(p.read_bytes() for p in sink.files).splitlines()
    assert len(sink.files) >= 4 and len(lines) == s["records"]
    assert lines == generate(cfg, 200)[0]
    assert s["next_ts"] == cfg.start_ts + 200 * 60_000
