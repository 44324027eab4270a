"""Raw payloads to readings, and the reason for every payload that cannot be one.

Input is a DataFrame with a string ``raw`` column (plus Kafka coordinates when it came from
Kafka). ``parse`` adds the parsed fields and a ``dead_reason`` that is null exactly for usable
records; ``readings`` melts the measures into the long form ``(sensor_id, metric, ts, value)``
every detector consumes; ``dead_letters`` keeps the payload and the reason. The checks are
ordered so the first failing one names the problem; they cost nothing for good rows because
Spark evaluates CASE branches lazily.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from .column_cache import ColumnCache
from .config import InputConfig

READING_COLUMNS = ["sensor_id", "metric", "ts", "value"]
LINEAGE_COLUMNS = ["source_partition", "source_offset"]
DEAD_LETTER_COLUMNS = ["raw", "topic", "partition", "offset", "kafka_timestamp", "reason", "ingested_at"]
_CORRUPT = "_corrupt_record"


def from_kafka(kafka_df: DataFrame) -> DataFrame:
    """Kafka source rows -> ``raw`` string plus coordinates."""
    return kafka_df.select(
        F.col("value").cast("string").alias("raw"),
        "topic",
        "partition",
        "offset",
        F.col("timestamp").alias("kafka_timestamp"),
    )


def json_schema(ic: InputConfig) -> T.StructType:
    fields = [
        T.StructField(ic.key_field, T.StringType()),
        T.StructField(ic.time_field, T.LongType()),
        *[T.StructField(m, T.DoubleType()) for m in ic.measures],
        T.StructField(_CORRUPT, T.StringType()),
    ]
    return T.StructType(fields)


def _raw_field(name: str) -> Column:
    return F.get_json_object(F.col("raw"), f"$.{name}")


def _field_reason(name: str, parsed: Column, kind: str) -> Column:
    raw = _raw_field(name)
    return F.when(raw.isNull(), F.lit(f"missing field {name}")).otherwise(
        F.concat(F.lit(f"field {name} is not {kind}: "), F.substring(raw, 1, 64))
    )


def parse(df: DataFrame, ic: InputConfig) -> DataFrame:
    """Parse ``raw`` per the configured JSON contract; adds sensor_id, ts (ms), measures, dead_reason."""
    return Parser(ic)(df)


class Parser:
    """``parse`` with its expressions built once (JSON; the other formats build theirs per call)."""

    def __init__(self, ic: InputConfig) -> None:
        self._ic = ic
        self._columns = ColumnCache(lambda names: _json_columns(ic, names))

    def __call__(self, df: DataFrame) -> DataFrame:
        if self._ic.format != "json":
            return parse_other(df, self._ic)
        rec, columns = self._columns(df)
        return df.withColumn("_rec", rec).select(*columns)


def _json_columns(ic: InputConfig, names: tuple[str, ...]) -> tuple[Column, list[Column]]:
    """(the parsed record, the output columns: the input's, the fields, dead_reason)."""
    rec = F.from_json(
        F.col("raw"), json_schema(ic), {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT}
    )
    key, tsf = F.col(f"_rec.{ic.key_field}"), F.col(f"_rec.{ic.time_field}")
    ts_ms = tsf * 1000 if ic.time_unit == "s" else tsf
    corrupt = F.col(f"_rec.{_CORRUPT}")
    # Good rows pay only the ``corrupt`` null test here: the string checks run for rejects only.
    unreadable = F.col("_rec").isNull() | corrupt.isNotNull()
    checks = F.when(
        unreadable & (F.col("raw").isNull() | F.col("raw").rlike(r"^\s*$")), F.lit("empty payload")
    ).when(unreadable & F.get_json_object(F.col("raw"), "$").isNull(), F.lit("malformed JSON"))
    checks = checks.when(key.isNull() | (F.trim(key) == ""), _field_reason(ic.key_field, key, "a string"))
    checks = checks.when(tsf.isNull(), _field_reason(ic.time_field, tsf, "an integer epoch time"))
    checks = checks.when(tsf < 0, F.lit(f"field {ic.time_field} is negative"))
    for m in ic.measures:
        v = F.col(f"_rec.{m}")
        checks = checks.when(v.isNull(), _field_reason(m, v, "a number"))
        checks = checks.when(F.isnan(v), F.lit(f"field {m} is NaN"))
        checks = checks.when(F.abs(v) == F.lit(float("inf")), F.lit(f"field {m} is infinite"))
    return rec, [
        *[F.col(name) for name in names],
        key.alias("sensor_id"),
        ts_ms.cast("long").alias("ts"),
        *[F.col(f"_rec.{m}").alias(m) for m in ic.measures],
        checks.alias("dead_reason"),
    ]


def parse_other(df: DataFrame, ic: InputConfig) -> DataFrame:
    """The non-JSON input formats (own modules); same output shape as ``parse``.

    openmetrics yields one row per sample line (``raw`` = that line), so one Kafka record may give
    several readings and dead letters sharing its (partition, offset).
    """
    if ic.format == "openmetrics":
        from .openmetrics import parse as parse_openmetrics

        return parse_openmetrics(df, ic)
    if ic.format == "app_json":
        from .app_json import parse as parse_app_json

        return parse_app_json(df, ic)
    raise ValueError(f"unknown input.format {ic.format!r}")


def readings(parsed: DataFrame, ic: InputConfig) -> DataFrame:
    """Usable records melted to one row per (sensor_id, metric) with lineage columns."""
    return Readings(ic)(parsed)


class Readings:
    """``readings`` with its expressions built once (``ColumnCache``)."""

    def __init__(self, ic: InputConfig) -> None:
        self._columns = ColumnCache(lambda names: _readings_columns(ic, names))

    def __call__(self, parsed: DataFrame) -> DataFrame:
        good, melted, ordered = self._columns(parsed)
        return parsed.where(good).select(*melted).select(*ordered)


def _readings_columns(ic: InputConfig, names: tuple[str, ...]) -> tuple[Column, list[Column], list[Column]]:
    """(filter of the usable records, their melt, the melt's columns in the readings' order)."""
    pairs = F.array(*[F.struct(F.lit(m).alias("metric"), F.col(m).alias("value")) for m in ic.measures])
    lineage = [
        (F.col("partition") if "partition" in names else F.lit(None).cast("int")).alias("source_partition"),
        (F.col("offset") if "offset" in names else F.lit(None).cast("long")).alias("source_offset"),
    ]
    # Good rows always have a sensor_id; saying so (a non-nullable column) keeps an inner join or
    # filter downstream from inferring ``sensor_id IS NOT NULL`` and pushing it below the parse,
    # where it would run ``from_json`` a second time on every record.
    sensor_id = F.coalesce(F.col("sensor_id"), F.lit("")).alias("sensor_id")
    return (
        F.col("dead_reason").isNull(),
        [sensor_id, F.col("ts"), *lineage, F.inline(pairs)],
        [F.col(name) for name in (*READING_COLUMNS, *LINEAGE_COLUMNS)],
    )


def dead_letters(parsed: DataFrame) -> DataFrame:
    bad = parsed.where(F.col("dead_reason").isNotNull())

    def col(name: str, tp: str) -> Column:
        return F.col(name) if name in parsed.columns else F.lit(None).cast(tp)

    return bad.select(
        "raw",
        col("topic", "string").alias("topic"),
        col("partition", "int").alias("partition"),
        col("offset", "long").alias("offset"),
        col("kafka_timestamp", "timestamp").alias("kafka_timestamp"),
        F.col("dead_reason").alias("reason"),
        F.current_timestamp().alias("ingested_at"),
    )
