"""Kafka as a Spark source, streaming (detect) or bounded (train), configured in one place."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from .config import KafkaConfig


def _options(kc: KafkaConfig) -> dict[str, str]:
    opts = {
        "kafka.bootstrap.servers": kc.bootstrap_servers,
        "subscribe": kc.topic,
        "failOnDataLoss": str(kc.fail_on_data_loss).lower(),
    }
    # Security and tuning pass-through (kafka.security.protocol, kafka.sasl.*, kafka.ssl.*, ...).
    opts.update(kc.options)
    return opts


def read_stream(spark: SparkSession, kc: KafkaConfig) -> DataFrame:
    reader = spark.readStream.format("kafka").options(**_options(kc))
    reader = reader.option("startingOffsets", kc.starting_offsets)
    if kc.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(kc.max_offsets_per_trigger))
    return reader.load()


def read_batch(
    spark: SparkSession, kc: KafkaConfig, starting: str = "earliest", ending: str = "latest"
) -> DataFrame:
    """A bounded offset range (JSON offsets as Spark takes them, or earliest/latest)."""
    return (
        spark.read.format("kafka")
        .options(**_options(kc))
        .option("startingOffsets", starting)
        .option("endingOffsets", ending)
        .load()
    )
