"""The intake query's micro-batch (the batch's Kafka records): scores in one pass, dead letters only
when a batch has rejects and parsed from their records alone, and a crash between the two writes
replays into exactly one copy of each."""

from __future__ import annotations

import pytest
from delta.tables import DeltaTable

from spark_anomaly import detect, parsing
from spark_anomaly.detectors import registry

GOOD = [
    '{"id": "s1", "ts": 1000, "temp": 20.5, "hum": 40.0}',
    '{"id": "s2", "ts": 2000, "temp": 21.0, "hum": 41.0}',
]
BAD = ["{not json", '{"id": "s1", "ts": 5, "temp": "hot", "hum": 1}']


def _batch(spark, payloads: list[str], first_offset: int = 0):
    rows = [(p, "t", 0, first_offset + i, None) for i, p in enumerate(payloads)]
    raw = spark.createDataFrame(
        rows, "raw string, topic string, partition int, offset long, kafka_timestamp timestamp"
    )
    return raw


def _process(spark, cfg):
    zcfg = registry.make_config("zscore", {})
    return detect._intake_batch(cfg, detect.latest_zscore_model(spark, cfg, zcfg, refresh_seconds=0), zcfg)


def _table(spark, cfg, key):
    path = cfg.path(getattr(cfg.detect, key))
    return spark.read.format("delta").load(path).collect() if DeltaTable.isDeltaTable(spark, path) else None


def test_batch_without_rejects_writes_scores_and_no_dead_letter_commit(spark, app_config):
    _process(spark, app_config)(_batch(spark, GOOD), 0)
    assert len(_table(spark, app_config, "sink_table")) == 2 * len(GOOD)
    assert _table(spark, app_config, "dead_letter_table") is None  # not even an empty commit


def test_batch_with_rejects_writes_both(spark, app_config):
    _process(spark, app_config)(_batch(spark, GOOD + BAD), 0)
    assert len(_table(spark, app_config, "sink_table")) == 2 * len(GOOD)
    dead = _table(spark, app_config, "dead_letter_table")
    assert sorted(d.raw for d in dead) == sorted(BAD)
    assert sorted(d.offset for d in dead) == [2, 3]


def test_crash_between_scores_and_dead_letters_replays_exactly_once(spark, app_config, monkeypatch):
    batch = _batch(spark, GOOD + BAD)
    real = parsing.dead_letters

    def crash(_parsed):
        raise RuntimeError("killed after the scores were committed")

    monkeypatch.setattr(parsing, "dead_letters", crash)
    with pytest.raises(RuntimeError, match="killed"):
        _process(spark, app_config)(batch, 0)
    assert len(_table(spark, app_config, "sink_table")) == 2 * len(GOOD)
    assert _table(spark, app_config, "dead_letter_table") is None
    monkeypatch.setattr(parsing, "dead_letters", real)
    restarted = _process(spark, app_config)  # a new query run replays batch 0
    restarted(batch, 0)
    restarted(_batch(spark, GOOD, first_offset=10), 1)
    assert len(_table(spark, app_config, "sink_table")) == 4 * len(GOOD)  # batch 0 once, batch 1
    assert sorted(d.raw for d in _table(spark, app_config, "dead_letter_table")) == sorted(BAD)


def test_only_anomalies_and_no_model_yet_still_keeps_the_dead_letters(spark, app_config):
    """With no model the anomalies-only plan is provably empty and Spark drops the reject count
    with it: the batch must then be read again for its dead letters, not fail or skip them."""
    app_config.detect.output = "anomalies"
    _process(spark, app_config)(_batch(spark, GOOD + BAD), 0)
    assert sorted(d.raw for d in _table(spark, app_config, "dead_letter_table")) == sorted(BAD)


def test_the_dead_letters_are_parsed_from_the_rejects_records_alone(spark, app_config, monkeypatch):
    """The scored write marks the rejects' bits; the dead-letter write parses only the records on
    them, here the rejects alone (a batch with one reject used to be parsed twice)."""
    real, seen = parsing.dead_letters, []
    monkeypatch.setattr(parsing, "dead_letters", lambda parsed: seen.append(parsed.count()) or real(parsed))
    payloads = GOOD * 3 + BAD + GOOD
    _process(spark, app_config)(_batch(spark, payloads), 0)
    assert seen == [len(BAD)]
    dead = _table(spark, app_config, "dead_letter_table")
    assert sorted((d.offset, d.raw) for d in dead) == [(6, BAD[0]), (7, BAD[1])]
    assert len(_table(spark, app_config, "sink_table")) == 2 * 4 * len(GOOD)


def test_rejects_of_two_topics_at_the_same_coordinates_are_kept_apart(spark, app_config):
    """``kafka.topic`` may list several topics: a reject is found again by its topic too, so the other
    topic's record at the same (partition, offset) stays out of the dead letters, and in the sink."""
    rows = [
        (GOOD[0], "a", 0, 0, None),
        (BAD[0], "a", 0, 1, None),
        (GOOD[1], "b", 0, 1, None),  # same coordinates as a's reject, good
        (BAD[1], "b", 0, 0, None),  # same coordinates as a's good record
    ]
    batch = spark.createDataFrame(
        rows, "raw string, topic string, partition int, offset long, kafka_timestamp timestamp"
    )
    _process(spark, app_config)(batch, 0)
    dead = _table(spark, app_config, "dead_letter_table")
    assert sorted((d.topic, d.offset, d.raw) for d in dead) == [("a", 1, BAD[0]), ("b", 0, BAD[1])]
    assert len(_table(spark, app_config, "sink_table")) == 2 * 2


def test_set_bits_reads_sparks_bitmap(spark):
    from pyspark.sql import functions as F

    positions = [0, 9, 4095, 4096, detect.BITMAP_BITS - 1]
    df = spark.createDataFrame([(p,) for p in positions + [9]], "p long")
    bitmap = df.agg(F.bitmap_construct_agg("p")).first()[0]
    assert len(bitmap) * 8 == detect.BITMAP_BITS
    assert detect.set_bits(bitmap) == positions


def test_a_good_record_on_a_rejects_bit_is_parsed_again_but_stays_good(spark, app_config, monkeypatch):
    """The rejects are found again by a fixed-size bitmap of their coordinates' hashes: a good record
    whose hash sets the same bit is read with them, and its parse keeps it out of the dead letters
    (and its readings in the sink, once)."""
    from pyspark.sql import functions as F

    bits = (
        spark.range(200_000)
        .select(F.lit("t").alias("topic"), F.lit(0).alias("partition"), F.col("id").alias("offset"))
        .select("offset", F.pmod(F.xxhash64(*detect.RECORD_KEY), F.lit(detect.BITMAP_BITS)).alias("bit"))
        .groupBy("bit")
        .agg(F.min("offset").alias("a"), F.max("offset").alias("b"))
        .where("a < b")
        .orderBy("bit")
        .first()
    )
    reject_at, good_at = bits.a, bits.b  # two offsets of partition 0 on the same bit
    rows = [
        (BAD[0], "t", 0, reject_at, None),
        (GOOD[0], "t", 0, good_at, None),
        (GOOD[1], "t", 0, good_at + 1, None),
    ]
    batch = spark.createDataFrame(
        rows, "raw string, topic string, partition int, offset long, kafka_timestamp timestamp"
    )
    real, seen = parsing.dead_letters, []
    monkeypatch.setattr(parsing, "dead_letters", lambda parsed: seen.append(parsed.count()) or real(parsed))
    _process(spark, app_config)(batch, 0)
    assert seen == [2]  # the reject and the good record on its bit
    dead = _table(spark, app_config, "dead_letter_table")
    assert [(d.offset, d.raw) for d in dead] == [(reject_at, BAD[0])]
    assert len(_table(spark, app_config, "sink_table")) == 2 * len(GOOD)
