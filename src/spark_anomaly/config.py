"""Typed configuration: YAML files plus ``section.key=value`` overrides, validated on load.

Why dataclasses and not free dicts: a typo in a key or a wrong type should stop the job at start
with a message naming the key, not surface as a confusing Spark error twenty minutes in.
Secrets never live in committed files: any string value may be ``${ENV_VAR}`` and is read from
the environment at load time; values of secret-looking keys are masked in ``redacted()``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "conf" / "local.yaml"


class ConfigError(ValueError):
    """A configuration problem, with the offending key in the message."""


def _check_int(name: str, value: object, minimum: int, nullable: bool = False) -> None:
    """A configured count: an int (not a bool) of at least ``minimum``, or null where ``nullable``."""
    if value is None and nullable:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        null = "null or " if nullable else ""
        raise ConfigError(f"{name} must be {null}an int >= {minimum}, got {value!r}")


@dataclass
class SparkConfig:
    master: str | None = "local[2]"  # None: leave it to spark-submit (cluster)
    app_name: str = "spark-anomaly"
    shuffle_partitions: int = 2
    local_ip: str | None = "127.0.0.1"
    jars_dir: str | None = "var/jars/spark"  # local: jars fetched by scripts/fetch_jars.sh
    packages: list[str] = field(default_factory=list)  # cluster: Maven coordinates instead
    log_level: str = "WARN"
    conf: dict[str, str] = field(default_factory=dict)


@dataclass
class KafkaConfig:
    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "sensor-raw"
    starting_offsets: str = "earliest"
    # Caps a catch-up batch of every query (the stateful one also by
    # ``detect.stateful_max_offsets_per_trigger``). Each batch pays a fixed cost (planning, offsets,
    # the model's broadcast, one Delta commit per table): on two cores the zscore path caught up a
    # 15M-record backlog 16 % faster in 5M-record batches than in 1M ones (docs/benchmarks-notes.md).
    max_offsets_per_trigger: int | None = 5_000_000
    fail_on_data_loss: bool = False
    # Passed to the Kafka source as-is (e.g. kafka.security.protocol, kafka.sasl.jaas.config).
    options: dict[str, str] = field(default_factory=dict)


INPUT_FORMATS = ("json", "openmetrics", "app_json")


@dataclass
class InputConfig:
    # json: flat JSON (seed 003), fields named by the keys below;
    # openmetrics: text exposition lines ``name{k="v"} value [ts]`` (seed 000), key = canonical name{labels};
    # app_json: seed 002's {"application", "value", "ts"}, ts epoch number or ISO-8601 string.
    format: str = "json"
    key_field: str = "id"  # json only
    time_field: str = "ts"  # json only
    time_unit: str = (
        "ms"  # ms | s: unit of numeric timestamps (openmetrics: ms = Prometheus, s = OpenMetrics)
    )
    measures: list[str] = field(default_factory=lambda: ["temp", "hum"])  # json only
    metric: str = "value"  # openmetrics/app_json: the metric name their one value is reported under

    def __post_init__(self) -> None:
        if self.format not in INPUT_FORMATS:
            raise ConfigError(f"input.format must be one of {', '.join(INPUT_FORMATS)}, got {self.format!r}")
        if self.time_unit not in ("ms", "s"):
            raise ConfigError(f"input.time_unit must be 'ms' or 's', got {self.time_unit!r}")
        if self.format != "json":
            if not self.metric.strip():
                raise ConfigError("input.metric must be a non-empty name")
            # Everything downstream (readings, train) melts ``measures``: one value, named ``metric``.
            self.measures = [self.metric]
        if self.format == "json" and not self.measures:
            raise ConfigError("input.measures must name at least one numeric field")


@dataclass
class ModelConfig:
    table: str = "var/delta/model"
    json_dir: str = "var/model"
    refresh_seconds: float = 5.0  # how often the detect job looks for a newer version
    # Up to this many series the detect job broadcasts the model to every micro-batch's join; a
    # larger one is kept hash-partitioned by series and each batch is shuffled to it instead (a
    # broadcast is rebuilt every batch: ~0.9 s for 1M series on two cores). null = always broadcast.
    broadcast_max_series: int | None = 250_000
    # Versions the train job keeps in the table (and as JSON exports): once it holds twice as many,
    # a run deletes all but the newest ``keep_versions`` (still readable by Delta time travel until
    # VACUUM). Stateful detectors re-read the table every micro-batch, so what it holds is paid per
    # batch. null = keep every version.
    keep_versions: int | None = 10

    def __post_init__(self) -> None:
        _check_int("model.broadcast_max_series", self.broadcast_max_series, 0, nullable=True)
        _check_int("model.keep_versions", self.keep_versions, 1, nullable=True)


@dataclass
class TrainConfig:
    source_format: str = "json"  # json | parquet | delta | kafka
    source_path: str = "var/history"
    mode: str = "full"  # full | incremental

    def __post_init__(self) -> None:
        if self.source_format not in ("json", "parquet", "delta", "kafka"):
            raise ConfigError(
                f"train.source_format must be json, parquet, delta or kafka, got {self.source_format!r}"
            )
        if self.mode not in ("full", "incremental"):
            raise ConfigError(f"train.mode must be full or incremental, got {self.mode!r}")


@dataclass
class DetectorSpec:
    name: str = "zscore"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class AggregationConfig:
    window: str | None = None  # e.g. "1 minute"; None = score raw readings
    function: str = "avg"  # avg sum count min max p50 p75 p95 p99
    watermark: str = "2 minutes"
    # Delta table of the aggregated readings the stateful detectors read as a stream (only written
    # when stateful detectors are configured: they cannot follow the aggregation in one query)
    table: str = "var/delta/aggregated"


@dataclass
class DetectConfig:
    detectors: list[DetectorSpec] = field(default_factory=lambda: [DetectorSpec("zscore", {"k": 4.0})])
    checkpoint: str = "var/checkpoints/detect"
    sink_table: str = "var/delta/scored"
    dead_letter_table: str = "var/delta/dead_letter"
    output: str = "all"  # all | anomalies
    trigger_seconds: float = 2.0
    state_timeout: str = "1 hour"  # state of series that stop reporting expires after this
    # hash buckets of series the stateful detectors are grouped by; fixed for a checkpoint's life
    state_buckets: int = 32
    # MiB of resident memory up to which a Python worker keeps the stateful detectors' live cores
    # between batches (a kept set skips restoring its bucket from the state); null = half the
    # memory available per CPU, 0 = keep none. Only speed depends on it, never a score.
    live_cache_mb: int | None = None
    # The stateful query's own cap on a catch-up batch (and ``kafka.max_offsets_per_trigger``'s):
    # its batches cost per series in Python (cad: ~90 s per 1M records on two cores), so a larger
    # batch holds more work that a crash would redo, for little gain in speed. null = no own cap.
    stateful_max_offsets_per_trigger: int | None = 1_000_000
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)

    def __post_init__(self) -> None:
        if self.output not in ("all", "anomalies"):
            raise ConfigError(f"detect.output must be 'all' or 'anomalies', got {self.output!r}")
        if not self.detectors:
            raise ConfigError("detect.detectors must name at least one detector")
        _check_int("detect.state_buckets", self.state_buckets, 1)
        _check_int(
            "detect.stateful_max_offsets_per_trigger", self.stateful_max_offsets_per_trigger, 1, nullable=True
        )
        _check_int("detect.live_cache_mb", self.live_cache_mb, 0, nullable=True)


@dataclass
class AppConfig:
    spark: SparkConfig = field(default_factory=SparkConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    input: InputConfig = field(default_factory=InputConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    base_dir: str = "."  # relative paths in this file are resolved against it

    def path(self, p: str) -> str:
        """Resolve a configured path: URIs (s3a://, hdfs://, file:/) and absolute paths stay."""
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", p) or os.path.isabs(p):
            return p
        return str((Path(self.base_dir) / p).resolve())

    def redacted(self) -> dict[str, Any]:
        """The configuration as a dict, safe to log."""
        return _redact(dataclasses.asdict(self))


_SECRET_KEY = re.compile(r"(pass|secret|jaas|token|credential|key\.password|keystore|truststore)", re.I)
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _redact(obj: Any, key: str = "") -> Any:
    if isinstance(obj, dict):
        return {k: _redact(v, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_redact(v, key) for v in obj]
    if isinstance(obj, str) and _SECRET_KEY.search(key):
        return "***"
    return obj


def _expand_env(value: str, where: str) -> str:
    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}: environment variable {name} is not set")

    return _ENV_REF.sub(sub, value)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Turn a YAML value into the declared field type, or raise a ConfigError naming ``where``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, where)
    if isinstance(value, str):
        value = _expand_env(value, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
        return _build(tp, value, where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {type(value).__name__}")
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
        _, vt = typing.get_args(tp)
        return {str(k): _coerce(vt, v, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        try:
            out = tp(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{where} must be {'an integer' if tp is int else 'a number'}, got {value!r}"
            ) from None
        if tp is int and isinstance(value, float) and value != out:
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return out
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where} must be a string, got {type(value).__name__}")
        return str(value)
    return value


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(
            f"{where or 'config'}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
        )
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from None


def _section(data: dict[str, Any], keys: list[str], dotted: str) -> dict[str, Any]:
    node = data
    for k in keys:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {k} is not a section")
    return node


def _set_path(data: dict[str, Any], dotted: str, raw: str) -> None:
    """Split ``dotted`` at its dots down the schema; once it reaches a mapping field (``spark.conf``,
    ``kafka.options``), the rest is one key, dots included (``spark.conf.spark.sql.x=4``)."""
    keys = dotted.split(".")
    tp: Any = AppConfig
    for i in range(len(keys) - 1):
        tp = typing.get_type_hints(tp).get(keys[i]) if dataclasses.is_dataclass(tp) else None
        if typing.get_origin(tp) is dict:
            # string-valued settings stay as written ("false", not YAML's False turned "False")
            value = raw if typing.get_args(tp)[1] is str else yaml.safe_load(raw)
            _section(data, keys[: i + 1], dotted)[".".join(keys[i + 1 :])] = value
            return
    _section(data, keys[:-1], dotted)[keys[-1]] = yaml.safe_load(raw) if raw != "" else ""


def load_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | None = None) -> AppConfig:
    """Load a YAML file (default conf/local.yaml) and apply ``a.b.c=value`` overrides.

    Override values are parsed as YAML scalars/lists (``detect.output=anomalies``,
    ``kafka.max_offsets_per_trigger=100000``, ``input.measures=[temp]``).
    """
    path = Path(path) if path else DEFAULT_CONFIG
    if not path.exists():
        raise ConfigError(f"configuration file {path} does not exist")
    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} must look like section.key=value")
        k, v = ov.split("=", 1)
        _set_path(data, k.strip(), v.strip())
    data.setdefault("base_dir", str(REPO_ROOT))
    cfg = _build(AppConfig, data, "")
    if cfg.detect.aggregation.function not in AGG_FUNCTIONS:
        raise ConfigError(
            f"detect.aggregation.function must be one of {', '.join(AGG_FUNCTIONS)}, "
            f"got {cfg.detect.aggregation.function!r}"
        )
    return cfg


AGG_FUNCTIONS = ("avg", "sum", "count", "min", "max", "p50", "p75", "p95", "p99")
