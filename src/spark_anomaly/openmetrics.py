"""OpenMetrics / Prometheus text exposition lines (seed 000) -> parsed rows, in Spark SQL functions.

A Kafka record value holds one or more lines ``name{label="v",...} value [timestamp]``; ``#`` lines
(``# HELP``, ``# TYPE``, ``# UNIT``, ``# EOF``) and blank lines are skipped, exemplars
(`` # {trace_id="x"} 1``) are ignored. Each sample line becomes one row; each bad line becomes one
dead-letter row whose ``raw`` is that line (the record's topic/partition/offset say where it came
from), so the good lines of the same record are kept.

Why regex/split/explode and not a Python UDF: the work stays in the JVM (no per-row Python round
trip), and Java's regex handles the quoted label values exactly (escaped quotes, backslashes,
commas and ``}`` inside quotes).

Contract decisions:
- series key (``sensor_id``) = ``name{k1="v1",k2="v2"}``, the ``k="v"`` pairs sorted as strings,
  values kept in their escaped text form, no spaces; ``name{}`` and ``name`` are the same series (``name``);
- the value is reported under metric ``input.metric`` (default ``value``);
- timestamps follow ``input.time_unit``: ``ms`` (default) = Prometheus text format, integer epoch
  milliseconds; ``s`` = OpenMetrics, epoch seconds with an optional fraction (truncated to ms).
  A line without a timestamp takes the Kafka record's timestamp (as seed 000 does);
- NaN and +/-Inf values are dead letters, as in the JSON path (detectors cannot score them).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from .config import ConfigError, InputConfig

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
LABEL_VALUE = r'"(?:[^"\\]|\\.)*"'
_PAIR = rf"{LABEL_NAME}\s*=\s*{LABEL_VALUE}"
LABELS = rf"\{{\s*(?:{_PAIR}\s*(?:,\s*{_PAIR}\s*)*,?\s*)?\}}"
# Whole (trimmed) sample line: 1 = metric name, 2 = label block with braces, 3 = value [ts] text.
LINE = rf"^({NAME})({LABELS})?(?:\s+(.*))?$"
PAIR_CAPTURE = rf'({LABEL_NAME})\s*=\s*"((?:[^"\\]|\\.)*)"'
VALUE = r"^[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:inf|infinity|nan))$"
TS_MS = r"^[0-9]+$"
TS_S = r"^[0-9]+(?:\.[0-9]+)?$"
RESERVED = {"raw", "topic", "partition", "offset", "kafka_timestamp", "sensor_id", "ts", "dead_reason"}


def _strip(s: Column) -> Column:
    return F.btrim(s, F.lit(" \t"))


def _record_lines(raw: Column) -> Column:
    """The record's lines; ``[null]`` for an empty record so it still yields a dead letter."""
    empty = raw.isNull() | raw.rlike(r"^\s*$")
    return F.when(empty, F.array(F.lit(None).cast("string"))).otherwise(F.split(raw, r"\r?\n"))


def _sensor_id(name: Column, labels: Column) -> tuple[Column, Column]:
    """(canonical series key, whether a label name repeats).

    No lambdas (higher-order functions run interpreted, 5x slower here): spaces around ``=`` are
    dropped (each match consumes a whole quoted value, so none starts inside one), the
    ``name="value"`` strings are sorted as strings and joined.
    """
    norm = F.regexp_replace(labels, rf"\s*=\s*({LABEL_VALUE})", "=$1")
    pairs = F.sort_array(F.regexp_extract_all(norm, F.lit(rf"{LABEL_NAME}={LABEL_VALUE}"), 0))
    names = F.regexp_extract_all(norm, F.lit(rf"({LABEL_NAME})={LABEL_VALUE}"), 1)
    key = F.when(F.size(pairs) == 0, name).otherwise(
        F.concat(name, F.lit("{"), F.array_join(pairs, ","), F.lit("}"))
    )
    return key, F.size(F.array_distinct(names)) != F.size(names)


def _ts_ms(tok: Column, unit: str) -> tuple[Column, Column]:
    """(epoch ms or null, reason when the token is present but unusable)."""
    if unit == "s":
        ok, kind = tok.rlike(TS_S), "epoch seconds"
        ms = F.floor(tok.try_cast("decimal(38,9)") * 1000).try_cast("long")
    else:
        ok, kind = tok.rlike(TS_MS), "an integer epoch ms"
        ms = tok.try_cast("long")
    reason = (
        F.when(tok.startswith("-") & tok.substr(2, 1000).rlike(TS_S), F.lit("timestamp is negative"))
        .when(~ok, F.concat(F.lit(f"timestamp is not {kind}: "), F.substring(tok, 1, 64)))
        .when(ms.isNull(), F.concat(F.lit("timestamp out of range: "), F.substring(tok, 1, 64)))
    )
    return ms, reason


def parse(df: DataFrame, ic: InputConfig) -> DataFrame:
    """One row per sample line: the input's columns (``raw`` = the line) + sensor_id, ts, value, dead_reason.

    Built in stages of selects so each regex runs once per line (Spark does not inline a costly
    expression that a later stage uses several times).
    """
    (metric,) = ic.measures
    if metric in RESERVED or metric in df.columns:
        raise ConfigError(f"input.metric {metric!r} clashes with a column name; pick another")
    others = [c for c in df.columns if c != "raw"]
    kafka_ms = (
        F.unix_millis(F.col("kafka_timestamp"))
        if "kafka_timestamp" in df.columns
        else F.lit(None).cast("long")
    )
    lines = df.select(
        *others,
        F.col("raw").alias("_record"),
        kafka_ms.alias("_kafka_ms"),
        F.explode(_record_lines(F.col("raw"))).alias("_line"),
    ).where(F.col("_line").isNull() | ~F.col("_line").rlike(r"^\s*(#.*)?$"))  # blank and # lines
    # One match per line: name, label block and the rest, joined by \u0001 (a line never holds one).
    groups = F.split(F.regexp_replace(_strip(F.col("_line")), LINE, "$1\u0001$2\u0001$3"), "\u0001")
    split = lines.select("*", groups.alias("_g"))
    matched = F.size(F.col("_g")) == 3
    staged = split.select(
        "*",
        F.when(matched, F.col("_g")[0]).alias("_name"),
        F.when(matched, F.col("_g")[1]).alias("_labels"),
        F.when(matched, _strip(F.regexp_replace(F.col("_g")[2], r"\s#\s.*$|^#\s.*$", ""))).alias("_rest"),
    )
    key, duplicate = _sensor_id(F.col("_name"), F.col("_labels"))
    staged = staged.select(
        "*", F.split(F.col("_rest"), r"\s+").alias("_tokens"), key.alias("_key"), duplicate.alias("_dup")
    )
    staged = staged.select(
        "*", F.col("_tokens")[0].alias("_vtok"), F.get(F.col("_tokens"), 1).alias("_tstok")
    )
    ts_given, ts_reason = _ts_ms(F.col("_tstok"), ic.time_unit)
    staged = staged.select(
        "*",
        F.col("_vtok").try_cast("double").alias("_value"),
        F.when(F.col("_tstok").isNull(), F.col("_kafka_ms")).otherwise(ts_given).alias("_ts"),
        ts_reason.alias("_ts_reason"),
    )
    line, value, ts, vtok, rest = (
        F.col("_line"),
        F.col("_value"),
        F.col("_ts"),
        F.col("_vtok"),
        F.col("_rest"),
    )
    reason = (
        F.when(line.isNull(), F.lit("empty payload"))
        .when(
            F.col("_name").isNull(),
            F.when(_strip(line).rlike(rf"^{NAME}\{{"), F.lit("malformed label set")).otherwise(
                F.lit("malformed metric name")
            ),
        )
        .when(F.col("_dup"), F.lit("duplicate label name"))
        .when(rest == "", F.lit("missing value"))
        .when(
            F.size(F.col("_tokens")) > 2,
            F.concat(F.lit("unexpected text after timestamp: "), F.substring(rest, 1, 64)),
        )
        .when(~vtok.rlike(VALUE), F.concat(F.lit("value is not a number: "), F.substring(vtok, 1, 64)))
        .when(F.isnan(value), F.lit("value is NaN"))
        .when(F.abs(value) == F.lit(float("inf")), F.lit("value is infinite"))
        .when(F.col("_tstok").isNotNull() & F.col("_ts_reason").isNotNull(), F.col("_ts_reason"))
        .when(ts.isNull(), F.lit("missing timestamp and no Kafka record timestamp"))
    )
    return staged.select(
        F.coalesce(line, F.col("_record")).alias("raw"),
        *others,
        F.when(F.col("_name").isNotNull(), F.col("_key")).alias("sensor_id"),
        ts.alias("ts"),
        value.alias(metric),
        reason.alias("dead_reason"),
    )
