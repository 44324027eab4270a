"""Command line of the package: ``spark-anomaly {train,detect,evaluate}``.

The ``jobs/*.py`` files that ``spark-submit`` runs are thin wrappers over ``main``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from .config import AppConfig, ConfigError, load_config

log = logging.getLogger("spark_anomaly")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="YAML configuration (default conf/local.yaml)")
    p.add_argument(
        "--set",
        "-s",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a configuration key, e.g. --set kafka.topic=metrics (repeatable)",
    )


def _load(args: argparse.Namespace) -> AppConfig:
    cfg = load_config(args.config, args.set)
    log.info("configuration: %s", json.dumps(cfg.redacted(), default=str))
    return cfg


def cmd_train(args: argparse.Namespace) -> int:
    from . import train
    from .session import build_spark

    cfg = _load(args)
    spark = build_spark(cfg, "spark-anomaly-train")
    res = train.run(spark, cfg, args.mode)
    print(json.dumps(res.__dict__))
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    from . import detect
    from .session import build_spark

    cfg = _load(args)
    if args.available_now:
        cfg.detect.trigger_seconds = 0
    spark = build_spark(cfg, "spark-anomaly-detect")
    queries = detect.start(spark, cfg, available_now=args.available_now)
    try:
        queries.await_all(args.run_seconds)
    finally:
        queries.stop()
    return 0


def cmd_evaluate(argv: Sequence[str]) -> int:
    from .evaluation.cli import main as evaluate_main

    return evaluate_main(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if argv and argv[0] == "evaluate":
        return cmd_evaluate(argv[1:])
    parser = argparse.ArgumentParser(prog="spark-anomaly", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a new model version (batch)")
    _common(t)
    t.add_argument("--mode", choices=["full", "incremental"], help="overrides train.mode")
    t.set_defaults(func=cmd_train)
    d = sub.add_parser("detect", help="score the Kafka stream into the Delta sink (streaming)")
    _common(d)
    d.add_argument(
        "--run-seconds", type=float, help="stop after this many seconds (default: run until stopped)"
    )
    d.add_argument("--available-now", action="store_true", help="process what the topic holds, then stop")
    d.set_defaults(func=cmd_detect)
    sub.add_parser(
        "evaluate", help="replay labelled series (NAB layout) through detectors; see evaluate --help"
    )
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
