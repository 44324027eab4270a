import pytest

from spark_anomaly.config import ConfigError, load_config


def test_default_local_config_loads_with_local_spark():
    cfg = load_config()
    assert cfg.spark.master == "local[2]"
    assert cfg.spark.shuffle_partitions == 2
    assert cfg.detect.detectors[0].name == "zscore"
    assert cfg.path("var/x").endswith("/var/x") and cfg.path("s3a://b/k") == "s3a://b/k"


def test_overrides_are_typed():
    cfg = load_config(
        overrides=["kafka.max_offsets_per_trigger=1000", "input.measures=[temp]", "detect.output=anomalies"]
    )
    assert cfg.kafka.max_offsets_per_trigger == 1000
    assert cfg.input.measures == ["temp"]
    assert cfg.detect.output == "anomalies"
    assert load_config(overrides=["model.broadcast_max_series=null"]).model.broadcast_max_series is None
    assert load_config(overrides=["model.broadcast_max_series=10"]).model.broadcast_max_series == 10


def test_overrides_reach_one_dotted_key_of_spark_conf_and_kafka_options():
    cfg = load_config(
        overrides=[
            "spark.conf.spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled=false",
            "spark.conf.spark.executor.memory=3g",
            "kafka.options.kafka.security.protocol=SSL",
        ]
    )
    assert cfg.spark.conf["spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled"] == "false"
    assert cfg.spark.conf["spark.executor.memory"] == "3g"
    assert cfg.spark.conf["spark.sql.adaptive.enabled"] == "true"  # the file's other keys stay
    assert cfg.kafka.options == {"kafka.security.protocol": "SSL"}


@pytest.mark.parametrize(
    "override, message",
    [
        ("kafka.topik=x", r"unknown key\(s\) topik"),
        ("kafka.max_offsets_per_trigger=lots", "kafka.max_offsets_per_trigger must be an integer"),
        ("detect.output=some", "detect.output must be 'all' or 'anomalies'"),
        ("train.mode=sometimes", "train.mode must be full or incremental"),
        ("kafka.fail_on_data_loss=maybe", "must be true or false"),
        ("detect.aggregation.function=median", "detect.aggregation.function must be one of"),
        ("model.broadcast_max_series=-1", "model.broadcast_max_series must be null or an int >= 0"),
        (
            "detect.stateful_max_offsets_per_trigger=0",
            "stateful_max_offsets_per_trigger must be null or an int >= 1",
        ),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_the_stateful_query_takes_the_lower_of_its_cap_and_the_kafka_one():
    from spark_anomaly.detect import stateful_batch_cap

    cfg = load_config()
    assert (cfg.kafka.max_offsets_per_trigger, stateful_batch_cap(cfg)) == (5_000_000, 1_000_000)
    low = load_config(overrides=["kafka.max_offsets_per_trigger=1000"])
    assert stateful_batch_cap(low) == 1000
    uncapped = load_config(
        overrides=["kafka.max_offsets_per_trigger=null", "detect.stateful_max_offsets_per_trigger=null"]
    )
    assert stateful_batch_cap(uncapped) is None
    own = load_config(overrides=["kafka.max_offsets_per_trigger=null"])
    assert stateful_batch_cap(own) == 1_000_000


def test_secrets_come_from_env_and_are_redacted(monkeypatch):
    monkeypatch.setenv(
        "KAFKA_JAAS", "org.apache.kafka.common.security.plain.PlainLoginModule required password='s3cr3t';"
    )
    cfg = load_config(
        overrides=[
            "kafka.options={kafka.sasl.jaas.config: '${KAFKA_JAAS}', kafka.security.protocol: SASL_SSL}"
        ]
    )
    assert "s3cr3t" in cfg.kafka.options["kafka.sasl.jaas.config"]
    red = cfg.redacted()
    assert red["kafka"]["options"]["kafka.sasl.jaas.config"] == "***"
    assert red["kafka"]["options"]["kafka.security.protocol"] == "SASL_SSL"
    assert "s3cr3t" not in repr(red)


def test_missing_env_var_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    with pytest.raises(ConfigError, match="NOPE_NOT_SET is not set"):
        load_config(overrides=["kafka.options={kafka.sasl.jaas.config: '${NOPE_NOT_SET}'}"])


def test_cluster_example_loads():
    from spark_anomaly.config import REPO_ROOT

    cfg = load_config(REPO_ROOT / "conf" / "cluster.example.yaml")
    assert cfg.spark.master is None and cfg.spark.packages


def test_detect_rejects_unknown_detector_params_and_bad_aggregation():
    from spark_anomaly import detect

    with pytest.raises(ConfigError, match=r"detect.detectors\[0\] \(ema\).*no parameter\(s\) windw"):
        detect.validate(load_config(overrides=["detect.detectors=[{name: ema, params: {windw: 3}}]"]))
    with pytest.raises(ConfigError, match="unknown detector or configuration 'emma'"):
        detect.validate(load_config(overrides=["detect.detectors=[{name: emma}]"]))
    detect.validate(load_config(overrides=["detect.aggregation.window=1 minute"]))  # zscore: wired
    with pytest.raises(ConfigError, match="detect.aggregation.window must be a positive duration"):
        detect.validate(load_config(overrides=["detect.aggregation.window=a minute"]))


def test_detect_accepts_aggregation_with_stateful_detectors_through_a_distinct_table():
    from spark_anomaly import detect

    agg = ["detect.aggregation.window=1 minute", "detect.detectors=[{name: zscore}, {name: ema}]"]
    cfg = load_config(overrides=agg)
    detect.validate(cfg)  # the stateful detectors read the aggregates from detect.aggregation.table
    assert cfg.path(cfg.detect.aggregation.table).endswith("var/delta/aggregated")
    with pytest.raises(ConfigError, match="detect.aggregation.table must differ from detect.sink_table"):
        detect.validate(load_config(overrides=[*agg, "detect.aggregation.table=var/delta/scored"]))
    with pytest.raises(ConfigError, match=r"detect.aggregation.table must name a Delta table.*\(ema\)"):
        detect.validate(load_config(overrides=[*agg, "detect.aggregation.table=''"]))
    # zscore alone never writes the table, so it is not checked
    zscore_only = ["detect.aggregation.window=1 minute", "detect.aggregation.table=var/delta/scored"]
    detect.validate(load_config(overrides=zscore_only))
