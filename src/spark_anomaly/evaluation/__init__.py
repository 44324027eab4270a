"""Evaluation of detectors on labelled series (NAB layout): replay, scoring, thresholds, reports.

Pure Python/numpy: no Spark. The detectors replayed here are the same cores the streaming job
runs, built by name through ``spark_anomaly.detectors.registry``.
"""
