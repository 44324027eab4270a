"""spark-anomaly: anomaly detection for sensor and metric streams on Spark, Kafka and Delta Lake."""

__version__ = "0.1.0"
