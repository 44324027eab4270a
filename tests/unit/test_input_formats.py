"""OpenMetrics text lines and seed 002's {"application","value","ts"} -> readings or dead letters."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from spark_anomaly import parsing
from spark_anomaly.config import ConfigError, load_config

KAFKA_TS = dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
KAFKA_MS = int(KAFKA_TS.timestamp() * 1000)

# One record with comments, a good line with labels, a good line without a timestamp, a bad line.
RECORD = "\n".join(
    [
        "# HELP http_requests_total The total number of HTTP requests.",
        "# TYPE http_requests_total counter",
        'http_requests_total{method="post",code="200"} 1027 1395066363000',
        "",
        "up 1",
        'bad{a="1" 2',
        "# EOF",
    ]
)
# Quoted comma, escaped quote and backslash, "}" inside a value, labels out of order, exponent.
TRICKY = 'm{path="/a,b",q="say \\"hi\\"",z="x}y",b="c\\\\"} -1.5e3 7'
BAD_LINES = {
    "m NaN 5": "value is NaN",
    "m +Inf 5": "value is infinite",
    "m -Inf 5": "value is infinite",
    "m 1 -5": "timestamp is negative",
    "m 1 12.5": "timestamp is not an integer epoch ms: 12.5",
    "m 1 soon": "timestamp is not an integer epoch ms: soon",
    "m abc": "value is not a number: abc",
    "m 1.5d": "value is not a number: 1.5d",
    "m": "missing value",
    "9x 1": "malformed metric name",
    'm{a="1" 1': "malformed label set",
    "m{a=1} 1": "malformed label set",
    'm{a="1",a="2"} 1 1': "duplicate label name",
    "m 1 2 3": "unexpected text after timestamp: 1 2 3",
}


def _frame(spark, raws, kafka_ts=KAFKA_TS):
    rows = [(r, 0, i, kafka_ts) for i, r in enumerate(raws)]
    return spark.createDataFrame(rows, "raw string, partition int, offset long, kafka_timestamp timestamp")


def _om(*extra: str):
    return load_config(overrides=["input.format=openmetrics", *extra]).input


def test_openmetrics_record_keeps_good_lines_of_a_record_with_a_bad_one(spark):
    ic = _om()
    parsed = parsing.parse(_frame(spark, [RECORD, TRICKY, "# only a comment\n# EOF"]), ic).cache()
    got = sorted(
        (r.sensor_id, r.metric, r.ts, r.value, r.source_offset)
        for r in parsing.readings(parsed, ic).collect()
    )
    assert got == [
        ('http_requests_total{code="200",method="post"}', "value", 1395066363000, 1027.0, 0),
        ('m{b="c\\\\",path="/a,b",q="say \\"hi\\"",z="x}y"}', "value", 7, -1500.0, 1),
        ("up", "value", KAFKA_MS, 1.0, 0),  # no timestamp: the Kafka record's
    ]
    dead = [(r.raw, r.reason, r.offset) for r in parsing.dead_letters(parsed).collect()]
    assert dead == [('bad{a="1" 2', "malformed label set", 0)]


def test_openmetrics_bad_lines_each_get_a_reason(spark):
    ic = _om()
    parsed = parsing.parse(_frame(spark, ["\n".join(BAD_LINES)]), ic)
    assert parsing.readings(parsed, ic).count() == 0
    assert {r.raw: r.reason for r in parsing.dead_letters(parsed).collect()} == BAD_LINES


def test_openmetrics_series_key_is_canonical_and_exemplars_are_ignored(spark):
    ic = _om("input.metric=requests")
    raws = [
        'a{y="2", x="1",} 1 10',
        'a{x="1",y="2"} 2 20 # {trace_id="abc"} 0.5 1',
        "a{} 3 30",
        "a 4 40",
        "a 5e-1 50",
    ]
    got = [
        (r.sensor_id, r.metric, r.ts, r.value)
        for r in parsing.readings(parsing.parse(_frame(spark, raws), ic), ic).orderBy("ts").collect()
    ]
    assert got == [
        ('a{x="1",y="2"}', "requests", 10, 1.0),
        ('a{x="1",y="2"}', "requests", 20, 2.0),
        ("a", "requests", 30, 3.0),
        ("a", "requests", 40, 4.0),
        ("a", "requests", 50, 0.5),
    ]


def test_openmetrics_seconds_timestamps_and_missing_kafka_time(spark):
    ic = _om("input.time_unit=s")
    parsed = parsing.parse(_frame(spark, ["m 1 1395066363.5\nm 2 1395066363\nm 3 12e3", "m 4"], None), ic)
    got = sorted((r.ts, r.value) for r in parsing.readings(parsed, ic).collect())
    assert got == [(1395066363000, 2.0), (1395066363500, 1.0)]
    assert {r.raw: r.reason for r in parsing.dead_letters(parsed).collect()} == {
        "m 3 12e3": "timestamp is not epoch seconds: 12e3",
        "m 4": "missing timestamp and no Kafka record timestamp",
    }


def test_openmetrics_empty_records_are_dead_letters(spark):
    ic = _om()
    parsed = parsing.parse(_frame(spark, [None, "  \n "]), ic)
    assert sorted((r.raw or "", r.reason) for r in parsing.dead_letters(parsed).collect()) == [
        ("", "empty payload"),
        ("  \n ", "empty payload"),
    ]


APP_BAD = {
    "{not json": "malformed JSON",
    '{"value": 1, "ts": 5}': "missing field application",
    '{"application": "a", "value": 1}': "missing field ts",
    '{"application": "a", "value": 1, "ts": "yesterday"}': "field ts is not an epoch time or ISO-8601 datetime: yesterday",
    '{"application": "a", "value": 1, "ts": -5}': "field ts is negative",
    '{"application": "a", "value": "x", "ts": 5}': "field value is not a number: x",
    '{"application": "a", "value": NaN, "ts": 5}': "field value is NaN",
    '{"application": "a", "ts": 5}': "missing field value",
    "": "empty payload",
}


def test_app_json_epoch_and_iso_timestamps_and_dead_letters(spark):
    ic = load_config(overrides=["input.format=app_json"]).input
    good = [
        '{"application": "billing", "value": 1.5, "ts": 1531319268354}',
        '{"application": "billing", "value": 2, "ts": "2018-07-11T14:27:48.354Z"}',
        '{"application": "billing", "value": 3, "ts": "2018-07-11T16:27:49.354+02:00"}',
        '{"application": "search", "value": -4, "ts": "2018-07-11 14:27:50"}',
    ]
    parsed = parsing.parse(_frame(spark, [*good, *APP_BAD]), ic).cache()
    got = sorted((r.sensor_id, r.metric, r.ts, r.value) for r in parsing.readings(parsed, ic).collect())
    assert got == [
        ("billing", "value", 1531319268354, 1.5),
        ("billing", "value", 1531319268354, 2.0),
        ("billing", "value", 1531319269354, 3.0),
        ("search", "value", 1531319270000, -4.0),  # no zone: UTC
    ]
    assert {r.raw: r.reason for r in parsing.dead_letters(parsed).collect()} == APP_BAD


def test_app_json_seconds_and_metric_name(spark):
    ic = load_config(overrides=["input.format=app_json", "input.time_unit=s", "input.metric=latency"]).input
    parsed = parsing.parse(_frame(spark, ['{"application": "a", "value": 1, "ts": 1531319268.5}']), ic)
    assert [(r.metric, r.ts) for r in parsing.readings(parsed, ic).collect()] == [("latency", 1531319268500)]


def test_format_config_errors():
    with pytest.raises(ConfigError, match="input.format must be one of json, openmetrics, app_json"):
        load_config(overrides=["input.format=csv"])
    assert load_config(overrides=["input.format=openmetrics"]).input.measures == ["value"]
    assert load_config(overrides=["input.format=json"]).input.measures == ["temp", "hum"]


@pytest.mark.parametrize("fmt", ["openmetrics", "app_json"])
def test_loadgen_records_in_other_formats_parse_to_the_same_readings(spark, fmt):
    from spark_anomaly.loadgen import LoadConfig, generate, render, validate_record

    values, _, _ = generate(LoadConfig(seed=3, sensors=3, bad_rate=0.05), 20)
    good = [json.loads(v) for v in values if validate_record(v) is None]
    bad = [v.decode() for v in values if validate_record(v) is not None]
    assert len(good) >= 55 and bad, "the generator should give good and malformed records"
    ic = load_config(overrides=[f"input.format={fmt}"]).input
    parsed = parsing.parse(_frame(spark, [render(v, fmt).decode() for v in values]), ic).cache()
    got = sorted((r.sensor_id, r.ts, r.value) for r in parsing.readings(parsed, ic).collect())
    if fmt == "openmetrics":
        want = [(f'{m}{{sensor="{d["id"]}"}}', d["ts"], d[m]) for d in good for m in ("temp", "hum")]
    else:
        want = [(d["id"], d["ts"], d["temp"]) for d in good]
    assert got == sorted(want)
    assert sorted(r.offset for r in parsing.dead_letters(parsed).select("offset").distinct().collect()) == [
        i for i, v in enumerate(values) if validate_record(v) is not None
    ]
