"""Seed 002's input message ``{"application": "billing", "value": 1.5, "ts": ...}`` -> parsed rows.

sensor_id = ``application``; the value is reported under metric ``input.metric`` (default
``value``). ``ts`` may be an epoch number (unit ``input.time_unit``, ms by default; a fraction is
truncated to ms) or an ISO-8601 string (``2018-07-11T14:27:48Z``, ``...48.354+02:00``, a date, or
a space instead of ``T``); a string without a zone offset is read as UTC so the result does not
depend on the cluster's time zone. Bad records become dead letters with a reason, as in the JSON path.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from .config import ConfigError, InputConfig

KEY, VALUE, TIME = "application", "value", "ts"
_NUMBER = r"^-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$"
_ZONE = r"(?:[Zz]|[+-][0-9]{2}:?[0-9]{2})$"
_CORRUPT = "_corrupt_record"
RESERVED = {"raw", "topic", "partition", "offset", "kafka_timestamp", "sensor_id", "ts", "dead_reason"}

SCHEMA = T.StructType(
    [
        T.StructField(KEY, T.StringType()),
        T.StructField(VALUE, T.DoubleType()),
        # String whatever the JSON token: Spark keeps a number's text, so one field serves both forms.
        T.StructField(TIME, T.StringType()),
        T.StructField(_CORRUPT, T.StringType()),
    ]
)


def _raw(name: str) -> Column:
    return F.get_json_object(F.col("raw"), f"$.{name}")


def _bad(name: str, kind: str) -> Column:
    raw = _raw(name)
    return F.when(raw.isNull(), F.lit(f"missing field {name}")).otherwise(
        F.concat(F.lit(f"field {name} is not {kind}: "), F.substring(raw, 1, 64))
    )


def ts_millis(text: Column, unit: str) -> Column:
    """Epoch number (``unit``) or ISO-8601 string -> epoch ms; null when it is neither."""
    scale = 1000 if unit == "s" else 1
    number = F.floor(text.try_cast("decimal(38,9)") * scale).try_cast("long")
    iso = F.when(text.rlike(_ZONE), text).otherwise(F.concat(text, F.lit("Z")))
    return F.when(text.rlike(_NUMBER), number).otherwise(F.unix_millis(iso.try_cast("timestamp")))


def parse(df: DataFrame, ic: InputConfig) -> DataFrame:
    """The input's columns + sensor_id, ts (ms), the value under ``input.metric``, dead_reason."""
    (metric,) = ic.measures
    if metric in RESERVED or metric in df.columns:
        raise ConfigError(f"input.metric {metric!r} clashes with a column name; pick another")
    rec = F.from_json(F.col("raw"), SCHEMA, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT})
    out = df.withColumn("_rec", rec)
    key, value, tstext = F.col(f"_rec.{KEY}"), F.col(f"_rec.{VALUE}"), F.trim(F.col(f"_rec.{TIME}"))
    ts = ts_millis(tstext, ic.time_unit)
    reason = (
        F.when(F.col("raw").isNull() | F.col("raw").rlike(r"^\s*$"), F.lit("empty payload"))
        .when(
            F.col(f"_rec.{_CORRUPT}").isNotNull() & F.get_json_object(F.col("raw"), "$").isNull(),
            F.lit("malformed JSON"),
        )
        .when(key.isNull() | (F.trim(key) == ""), _bad(KEY, "a string"))
        .when(tstext.isNull() | ts.isNull(), _bad(TIME, "an epoch time or ISO-8601 datetime"))
        .when(ts < 0, F.lit(f"field {TIME} is negative"))
        .when(value.isNull(), _bad(VALUE, "a number"))
        .when(F.isnan(value), F.lit(f"field {VALUE} is NaN"))
        .when(F.abs(value) == F.lit(float("inf")), F.lit(f"field {VALUE} is infinite"))
    )
    return out.select(
        *df.columns,
        key.alias("sensor_id"),
        ts.alias("ts"),
        value.alias(metric),
        reason.alias("dead_reason"),
    )
