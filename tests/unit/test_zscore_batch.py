"""One scorer and one melt per query, reused every micro-batch: what they build once must still
follow each batch's own rows, its columns and the model version it is scored against."""

from __future__ import annotations

from pyspark.sql import functions as F

from spark_anomaly import detect, parsing
from spark_anomaly.config import InputConfig
from spark_anomaly.detectors.zscore import ZScoreConfig
from spark_anomaly.results import RESULT_FIELDS
from spark_anomaly.scoring import zscore_model
from spark_anomaly.zscore_batch import ZScoreBatch

READINGS = "sensor_id string, metric string, ts long, value double, source_partition int, source_offset long"


def _model(spark, cfg, mean):
    prior = spark.createDataFrame(
        [("s1", "temp", 100, mean, 99.0), ("s2", "temp", 100, mean, 99.0)],
        "sensor_id string, metric string, n long, mean double, m2 double",
    )
    return zscore_model(prior, cfg)


def _rows(df):
    return sorted(tuple(r) for r in df.collect())


def test_a_reused_scorer_builds_once_per_shape_and_version_and_scores_each_batch_as_a_fresh_one(
    spark, monkeypatch
):
    cfg = ZScoreConfig(k=3.0)
    scorer = ZScoreBatch(cfg)
    builds = []
    real = scorer._columns._build
    monkeypatch.setattr(scorer._columns, "_build", lambda *a: builds.append(a) or real(*a))
    v1, v2 = _model(spark, cfg, 20.0), _model(spark, cfg, 35.0)  # bands 17..23 and 32..38
    a = spark.createDataFrame([("s1", "temp", 1, 20.5, 0, 1), ("s2", "temp", 2, 90.0, 0, 2)], READINGS)
    b = spark.createDataFrame([("s1", "temp", 3, 35.0, 1, 7), ("s9", "temp", 4, 1.0, 1, 8)], READINGS)

    for batch, model, version in ((a, v1, 1), (b, v1, 1), (b, v2, 2)):
        got = _rows(scorer(batch, model, version))
        assert got == _rows(detect.score_stateless(batch, model, version, cfg))
        assert {r[RESULT_FIELDS.index("model_version")] for r in got} == {version}
    assert len(builds) == 2  # (shape, v1) and (shape, v2)
    flags = {
        version: {r.value: r.is_anomaly for r in scorer(b, m, version).collect()}
        for m, version in ((v1, 1), (v2, 2))
    }
    assert flags[1][35.0] is True and flags[2][35.0] is False  # each batch against its own version
    assert len(builds) == 2
    assert scorer(b, v2, 2).where("value = 1.0").first().reason == "unknown source"

    windows = a.select("*", F.lit(60_000).cast("long").alias("window_start"),
                       F.lit(120_000).cast("long").alias("window_end"), F.lit("avg").alias("agg_function"))  # fmt: skip
    got = _rows(scorer(windows, v1, 1))
    assert len(builds) == 3  # another shape
    assert {r[RESULT_FIELDS.index("window_end")] for r in got} == {120_000}
    assert _rows(scorer(a, v1, 1)) == _rows(detect.score_stateless(a, v1, 1, cfg))


def test_an_anomalies_only_scorer_keeps_just_the_anomalies(spark):
    cfg = ZScoreConfig(k=3.0)
    batch = spark.createDataFrame([("s1", "temp", 1, 20.5, 0, 1), ("s2", "temp", 2, 90.0, 0, 2)], READINGS)
    got = ZScoreBatch(cfg, anomalies_only=True)(batch, _model(spark, cfg, 20.0), 1).collect()
    assert [(r.sensor_id, r.value, r.is_anomaly) for r in got] == [("s2", 90.0, True)]


def test_one_melt_serves_batches_with_and_without_kafka_coordinates(spark):
    ic = InputConfig()
    melt = parsing.Readings(ic)
    payloads = ['{"id": "s1", "ts": 1000, "temp": 20.5, "hum": 40.0}', "{not json"]
    with_coords = parsing.parse(
        spark.createDataFrame([(p, "t", 3, 10 + i, None) for i, p in enumerate(payloads)],
                              "raw string, topic string, partition int, offset long, kafka_timestamp timestamp"),
        ic,
    )  # fmt: skip
    bare = parsing.parse(spark.createDataFrame([(p,) for p in payloads], "raw string"), ic)
    for _ in range(2):
        assert _rows(melt(with_coords)) == [
            ("s1", "hum", 1000, 40.0, 3, 10),
            ("s1", "temp", 1000, 20.5, 3, 10),
        ]
        assert _rows(melt(bare)) == [
            ("s1", "hum", 1000, 40.0, None, None),
            ("s1", "temp", 1000, 20.5, None, None),
        ]
