"""The Spark zscore expressions and the numpy reference core agree row for row."""

import numpy as np
import pytest
from pyspark.sql import functions as F

from spark_anomaly.detectors.zscore import ZScoreConfig, score_arrays
from spark_anomaly.scoring import zscore_columns, zscore_model


@pytest.mark.parametrize("policy", ["report", "anomaly"])
def test_spark_zscore_equals_numpy_core(spark, policy):
    cfg = ZScoreConfig(k=4.0, unknown_policy=policy)
    rows = [
        # value, n, mean, m2  (n None: unknown series; n 1: too short; m2 0: stuck sensor)
        (20.0, 100, 20.0, 99.0),
        (24.5, 100, 20.0, 99.0),
        (17.0, 100, 20.0, 99.0),
        (-3.0, 100, 20.0, 99.0),
        (7.0, None, None, None),
        (7.0, 1, 7.0, 0.0),
        (7.0, 50, 7.0, 0.0),
        (7.5, 50, 7.0, 0.0),
        (1e6, 3, 1.0, 2.0),
    ]
    df = spark.createDataFrame(
        [(f"s{i:02d}", *r) for i, r in enumerate(rows)],
        "sensor_id string, value double, n long, mean double, m2 double",
    )
    # one series per row; the model lacks the series with n None, as the streaming join sees it
    prior = df.where("n IS NOT NULL").select("sensor_id", F.lit("temp").alias("metric"), "n", "mean", "m2")
    got = (
        df.select("sensor_id", F.lit("temp").alias("metric"), "value")
        .join(zscore_model(prior, cfg), ["sensor_id", "metric"], "left")
        .select("sensor_id", *[c.alias(name) for name, c in zscore_columns(cfg).items()])
        .orderBy("sensor_id")
        .toPandas()
    )
    x = np.array([r[0] for r in rows])
    n = np.array([np.nan if r[1] is None else r[1] for r in rows])
    mean = np.array([np.nan if r[2] is None else r[2] for r in rows])
    m2 = np.array([np.nan if r[3] is None else r[3] for r in rows])
    want = score_arrays(x, n, mean, m2, cfg)
    assert list(got["reason"]) == list(want["reason"])
    assert list(got["is_anomaly"]) == list(want["is_anomaly"])
    np.testing.assert_allclose(
        got["probability"].to_numpy(float), want["probability"].to_numpy(float), rtol=1e-12
    )
    known = ~np.isnan(want["lower"].to_numpy(float))
    np.testing.assert_allclose(
        got["lower"].to_numpy(float)[known], want["lower"].to_numpy(float)[known], rtol=1e-12
    )
    assert got["lower"].isna().tolist() == (~known).tolist()
    assert want.loc[1, "is_anomaly"] and want.loc[3, "is_anomaly"] and not want.loc[2, "is_anomaly"]
    assert want.loc[4, "reason"] == "unknown source"
    assert want.loc[5, "reason"] == "insufficient history"
    assert want.loc[7, "reason"].endswith("(std floored)") and want.loc[7, "is_anomaly"]
    assert bool(want.loc[4, "is_anomaly"]) == (policy == "anomaly")
