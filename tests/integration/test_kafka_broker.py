"""Round trip through the real local broker (scripts/kafka.sh start): generated readings in,
the same records out, offsets as expected.

Uses the broker `make test` starts (KAFKA_BOOTSTRAP); no broker is a failure, never a skip.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest

from spark_anomaly import kafka_admin
from spark_anomaly.loadgen import KafkaSink, LoadConfig, generate, validate_record

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bootstrap(kafka_bootstrap) -> str:
    return kafka_bootstrap


@pytest.fixture
def topic(bootstrap):
    name = f"it-readings-{uuid.uuid4().hex[:8]}"
    assert kafka_admin.create_topic(bootstrap, name, partitions=3)
    assert not kafka_admin.create_topic(bootstrap, name, partitions=3)  # idempotent
    yield name
    kafka_admin.delete_topic(bootstrap, name)


def _consume(bootstrap: str, topic: str, n: int, timeout: float = 30.0) -> list:
    from confluent_kafka import Consumer

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"it-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    out, deadline = [], time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            for m in c.consume(num_messages=500, timeout=0.5):
                assert m.error() is None, m.error()
                out.append(m)
    finally:
        c.close()
    return out


def test_produce_and_consume_generated_readings(bootstrap, topic):
    cfg = LoadConfig(seed=11, sensors=25, anomaly_rate=0.01, bad_rate=0.02)
    values, keys, truth = generate(cfg, 40)
    values, keys = values[:1000], keys[:1000]
    sink = KafkaSink(bootstrap, topic)
    sink.send(keys, values)
    sink.close()

    offsets = kafka_admin.topic_end_offsets(bootstrap, topic)
    assert set(offsets) == {0, 1, 2} and sum(offsets.values()) == 1000

    msgs = _consume(bootstrap, topic, 1000)
    assert len(msgs) == 1000
    assert Counter(m.value() for m in msgs) == Counter(values)
    assert Counter(m.key() for m in msgs) == Counter(keys)
    # keyed by sensor id: one sensor's records live in one partition, in production order
    part_of: dict[bytes, set[int]] = {}
    for m in msgs:
        part_of.setdefault(m.key(), set()).add(m.partition())
    assert all(len(p) == 1 for p in part_of.values())
    sent_order = [v for k, v in zip(keys, values, strict=True) if k == b"sim-003"]
    assert [m.value() for m in sorted(msgs, key=lambda m: m.offset()) if m.key() == b"sim-003"] == sent_order
    bad = sum(validate_record(m.value()) is not None for m in msgs)
    assert bad == sum(1 for t in truth if t["kind"] == "malformed" and t["record"] < 1000) > 0
