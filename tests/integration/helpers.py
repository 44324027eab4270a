"""Small helpers for the pipeline tests: produce records, read Delta tables, private configs."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from confluent_kafka import Producer

from spark_anomaly import kafka_admin
from spark_anomaly.config import AppConfig, load_config


def overrides(tmp: Path, bootstrap: str, topic: str, *extra: str) -> list[str]:
    return [
        f"kafka.bootstrap_servers={bootstrap}",
        f"kafka.topic={topic}",
        f"model.table={tmp}/model",
        f"model.json_dir={tmp}/model_json",
        f"train.source_path={tmp}/history",
        f"detect.sink_table={tmp}/scored",
        f"detect.dead_letter_table={tmp}/dead",
        f"detect.checkpoint={tmp}/ckpt",
        "detect.trigger_seconds=1",
        "model.refresh_seconds=0",
        "spark.log_level=ERROR",
        *extra,
    ]


def new_topic(bootstrap: str, partitions: int = 2) -> str:
    name = f"it-{uuid.uuid4().hex[:10]}"
    kafka_admin.create_topic(bootstrap, name, partitions=partitions)
    return name


def config(tmp: Path, bootstrap: str, topic: str, *extra: str) -> tuple[AppConfig, list[str]]:
    ov = overrides(tmp, bootstrap, topic, *extra)
    return load_config(overrides=ov), ov


def reading(sid: str, ts: int, temp: float, hum: float) -> str:
    return json.dumps({"id": sid, "ts": ts, "temp": temp, "hum": hum})


def produce(
    bootstrap: str, topic: str, records: list[tuple[str | None, str]], partition: int | None = None
) -> None:
    """``records`` as (key, value); all into ``partition`` when given, else by key."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    at = {} if partition is None else {"partition": partition}
    for key, value in records:
        p.produce(topic, key=key.encode() if key else None, value=value.encode(), **at)
    assert p.flush(30) == 0


def write_history(path: Path, sensors: int, count: int, start_ts: int = 0, temp: float = 20.0) -> None:
    """Steady history: temp = temp +/- 1 alternating, hum = 40 +/- 2 (mean temp, std ~1)."""
    os.makedirs(path, exist_ok=True)
    with open(path / f"h-{start_ts}-{temp}.json", "w") as fh:
        for i in range(count):
            for s in range(sensors):
                sign = 1 if i % 2 else -1
                fh.write(reading(f"s{s}", start_ts + i * 1000, temp + sign, 40 + 2 * sign) + "\n")


def read_table(spark, path) -> list:
    return spark.read.format("delta").load(str(path)).collect()


def run_available_now(spark, cfg: AppConfig, timeout_s: float = 300) -> dict[str, list[int]]:
    """Run the detect job over what the topic holds, then stop it; each query's batch sizes (its
    batches' input rows, by query name)."""
    from spark_anomaly import detect

    q = detect.start(spark, cfg, available_now=True)
    try:
        q.await_all(timeout_s)
    finally:
        q.stop()
    return {s.name: [p["numInputRows"] for p in s.recentProgress if p["numInputRows"]] for s in q.queries}
