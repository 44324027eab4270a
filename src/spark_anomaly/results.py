"""The result contract (DESIGN.md "Result out") as one Spark schema every detector path writes."""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

RESULT_SCHEMA = T.StructType(
    [
        T.StructField("sensor_id", T.StringType()),
        T.StructField("metric", T.StringType()),
        T.StructField("ts", T.LongType()),
        T.StructField("value", T.DoubleType()),
        T.StructField("detector", T.StringType()),
        T.StructField("model_version", T.LongType()),
        T.StructField("lower", T.DoubleType()),
        T.StructField("upper", T.DoubleType()),
        T.StructField("score", T.DoubleType()),
        T.StructField("probability", T.DoubleType()),
        T.StructField("is_anomaly", T.BooleanType()),
        T.StructField("reason", T.StringType()),
        T.StructField("window_start", T.LongType()),
        T.StructField("window_end", T.LongType()),
        T.StructField("agg_function", T.StringType()),
        T.StructField("source_partition", T.IntegerType()),
        T.StructField("source_offset", T.LongType()),
    ]
)
RESULT_FIELDS = [f.name for f in RESULT_SCHEMA.fields]


def result_columns(exprs: Mapping[str, Column]) -> list[Column]:
    """The contract's columns in order, each ``exprs[name]`` cast to its type; absent optional ones
    as typed nulls. Plain column expressions: a micro-batch path builds them once and reuses them."""
    return [
        (exprs[f.name] if f.name in exprs else F.lit(None)).cast(f.dataType).alias(f.name)
        for f in RESULT_SCHEMA.fields
    ]
