"""Small Kafka admin helpers (confluent-kafka) for scripts, jobs and integration tests.

Kept deliberately thin: the point is idempotent, *waited-for* operations, because Kafka's admin
API is asynchronous (a created topic may not have leaders yet, a deleted one may linger) and tests
that race it are flaky.
"""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

__all__ = ["create_topic", "delete_topic", "topic_end_offsets", "wait_until_ready", "topic_exists"]


def _admin(bootstrap: str) -> AdminClient:
    # log_level 0 keeps librdkafka from printing connection-refused noise while a broker starts.
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})


def wait_until_ready(bootstrap: str, timeout: float = 60.0) -> None:
    """Block until the broker answers a metadata request; a bare TCP connect is not enough
    (the socket opens before the KRaft controller has elected itself).

    Raises TimeoutError when it does not answer within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    admin = _admin(bootstrap)
    while time.monotonic() < deadline:
        try:
            md = admin.list_topics(timeout=min(3.0, max(0.1, deadline - time.monotonic())))
            if md.brokers:
                return
        except KafkaException as e:
            last = e
        time.sleep(0.2)
    raise TimeoutError(f"Kafka at {bootstrap} not ready after {timeout:.0f}s: {last}")


def topic_exists(bootstrap: str, name: str, timeout: float = 10.0) -> bool:
    """True when the broker's metadata lists the topic without error."""
    md = _admin(bootstrap).list_topics(topic=None, timeout=timeout)
    t = md.topics.get(name)
    return t is not None and t.error is None


def _wait_for_topic(admin: AdminClient, name: str, partitions: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        md = admin.list_topics(timeout=5)
        t = md.topics.get(name)
        if (
            t is not None
            and t.error is None
            and len(t.partitions) >= partitions
            and all(p.leader >= 0 for p in t.partitions.values())
        ):
            return
        time.sleep(0.1)
    raise TimeoutError(f"topic {name!r} has no leaders for all {partitions} partitions yet")


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 2,
    replication: int = 1,
    wait: bool = True,
    timeout: float = 30.0,
    config: dict[str, str] | None = None,
) -> bool:
    """Create ``name`` unless it exists; returns True if this call created it.

    Idempotent so jobs and tests can call it unconditionally. With ``wait`` it returns only once
    every partition has a leader, so a producer right after it does not hit
    UNKNOWN_TOPIC_OR_PARTITION. An existing topic is left as is (its partition count is not changed).
    """
    admin = _admin(bootstrap)
    deadline = time.monotonic() + timeout
    fut = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=replication, config=config or {})],
        operation_timeout=timeout,
        request_timeout=timeout,
    )[name]
    created = True
    try:
        fut.result(timeout=timeout)
    except KafkaException as e:
        if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
        created = False
    if wait:
        md = admin.list_topics(timeout=5).topics.get(name)
        want = partitions if created or md is None else len(md.partitions)
        _wait_for_topic(admin, name, want, deadline)
    return created


def delete_topic(bootstrap: str, name: str, wait: bool = True, timeout: float = 30.0) -> bool:
    """Delete ``name`` if it exists; returns True if this call deleted it.

    With ``wait`` it returns once the topic is gone from metadata, so an immediate re-create with
    the same name does not fail with TOPIC_ALREADY_EXISTS (deletion is asynchronous in Kafka).
    """
    admin = _admin(bootstrap)
    fut = admin.delete_topics([name], operation_timeout=timeout, request_timeout=timeout)[name]
    try:
        fut.result(timeout=timeout)
    except KafkaException as e:
        if e.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return False
        raise
    if wait:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if name not in admin.list_topics(timeout=5).topics:
                break
            time.sleep(0.1)
        else:
            raise TimeoutError(f"topic {name!r} still listed {timeout:.0f}s after deletion")
    return True


def topic_end_offsets(bootstrap: str, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """Latest offset (the next offset to be written) per partition, e.g. to know how many
    records a test produced or when a streaming query has caught up with the topic."""
    admin = _admin(bootstrap)
    md = admin.list_topics(topic=topic, timeout=timeout).topics.get(topic)
    if md is None or md.error is not None:
        raise KafkaException(md.error if md is not None else KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
    req = {TopicPartition(topic, p): OffsetSpec.latest() for p in md.partitions}
    futs = admin.list_offsets(req, request_timeout=timeout)
    return {tp.partition: f.result(timeout=timeout).offset for tp, f in futs.items()}
