"""Raw payloads -> readings or a dead letter with the reason (Spark, no Kafka)."""

from spark_anomaly import parsing
from spark_anomaly.config import load_config

GOOD = '{"id": "sim-614", "ts": 1536725530000, "temp": 22.3, "hum": 41.2}'
BAD = {
    "{not json": "malformed JSON",
    '{"ts": 1, "temp": 1, "hum": 1}': "missing field id",
    '{"id": "a", "temp": 1, "hum": 1}': "missing field ts",
    '{"id": "a", "ts": "yesterday", "temp": 1, "hum": 1}': "field ts is not an integer epoch time: yesterday",
    '{"id": "a", "ts": 1, "temp": "warm", "hum": 1}': "field temp is not a number: warm",
    '{"id": "a", "ts": 1, "temp": NaN, "hum": 1}': "field temp is NaN",
    '{"id": "a", "ts": 1, "temp": 1, "hum": -Infinity}': "field hum is infinite",
    '{"id": "a", "ts": 1, "temp": 1}': "missing field hum",
    '{"id": "a", "ts": -5, "temp": 1, "hum": 2}': "field ts is negative",
    "": "empty payload",
    "  \n ": "empty payload",
    "[1, 2]": "missing field id",
}


def test_good_and_bad_payloads(spark):
    ic = load_config().input
    raws = [GOOD, *BAD]
    df = spark.createDataFrame([(r, i) for i, r in enumerate(raws)], "raw string, offset long")
    parsed = parsing.parse(df, ic).cache()
    readings = parsing.readings(parsed, ic).orderBy("metric").collect()
    assert [(r.sensor_id, r.metric, r.ts, r.value) for r in readings] == [
        ("sim-614", "hum", 1536725530000, 41.2),
        ("sim-614", "temp", 1536725530000, 22.3),
    ]
    assert readings[0].source_offset == 0
    dead = {r.raw: r.reason for r in parsing.dead_letters(parsed).collect()}
    assert dead == BAD


def test_null_payload_is_empty(spark):
    """A Kafka tombstone (null value) is a dead letter, not a reading."""
    df = spark.createDataFrame([(None, 0)], "raw string, offset long")
    dead = parsing.dead_letters(parsing.parse(df, load_config().input)).collect()
    assert [(r.raw, r.reason) for r in dead] == [(None, "empty payload")]


def test_configured_fields_and_seconds(spark):
    ic = load_config(
        overrides=[
            "input.key_field=device",
            "input.time_field=time",
            "input.time_unit=s",
            "input.measures=[rpm]",
        ]
    ).input
    df = spark.createDataFrame([('{"device": "m1", "time": 1700000000, "rpm": 1200}',)], "raw string")
    (r,) = parsing.readings(parsing.parse(df, ic), ic).collect()
    assert (r.sensor_id, r.metric, r.ts, r.value) == ("m1", "rpm", 1700000000000, 1200.0)
