"""Named configurations as detect.detectors entries: resolved on the driver, tagged by name."""

from __future__ import annotations

import pytest

from spark_anomaly import detect
from spark_anomaly.config import ConfigError, DetectorSpec, load_config
from spark_anomaly.detector_specs import registry_params
from spark_anomaly.detectors.suppression import SuppressionConfig
from spark_anomaly.series_runner import bind


def _write(d, name: str, text: str):
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.yaml").write_text(text)
    return [d]


def test_registry_name_keeps_its_params_and_wins_over_a_file_of_that_name(tmp_path):
    dirs = _write(tmp_path, "ema", "detector: robust\nparams: {window: 5}\n")
    assert registry_params("ema", {"k": 2.0}, dirs) == ("ema", {"k": 2.0})


def test_named_configuration_with_entry_params_replacing_top_level_keys(tmp_path):
    dirs = _write(
        tmp_path,
        "quiet",
        "detector: suppression\nparams: {threshold: 0.5, rows: 10, detector: ema, params: {k: 3.0}}\n",
    )
    assert registry_params("quiet", None, dirs) == (
        "suppression",
        {"threshold": 0.5, "rows": 10, "detector": "ema", "params": {"k": 3.0}},
    )
    name, params = registry_params("quiet", {"rows": 50}, dirs)
    assert name == "suppression" and params["rows"] == 50 and params["threshold"] == 0.5


def test_unknown_name_lists_the_configurations_it_looked_for(tmp_path):
    dirs = _write(tmp_path, "quiet", "detector: ema\n")
    with pytest.raises(ValueError, match=r"'quit'.*\(quiet\).*not one of .*zscore"):
        registry_params("quit", None, dirs)


def test_bad_yaml_is_a_value_error_naming_the_file(tmp_path):
    dirs = _write(tmp_path, "broken", "detector: [ema\n")
    with pytest.raises(ValueError, match="broken.yaml: not valid YAML"):
        registry_params("broken", None, dirs)


def test_bind_tags_rows_with_the_configuration_name():
    """The shipped ``recommended`` binds to its suppression core; a repeat gets ``#2``."""
    bound = bind([DetectorSpec("recommended", {}), DetectorSpec("recommended", {"rows": 100})])
    assert [b.tag for b in bound] == ["recommended", "recommended#2"]
    assert all(b.name == "suppression" and isinstance(b.config, SuppressionConfig) for b in bound)
    assert (bound[0].config.rows, bound[1].config.rows) == (200, 100)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{name: recomended}", r"detect.detectors\[0\] \(recomended\): unknown detector or configuration"),
        (
            "{name: recommended, params: {rowz: 3}}",
            r"\(recommended\): detector 'suppression' has no parameter",
        ),
    ],
)
def test_detect_validates_named_entries_at_start(entry, message):
    cfg = load_config(None, [f"detect.detectors=[{entry}]"])
    with pytest.raises(ConfigError, match=message):
        detect.validate(cfg)


def test_a_yaml_path_in_the_working_directory_is_a_name(tmp_path, monkeypatch):
    """As on a cluster driver that got the file with ``--files``: named by its path."""
    (tmp_path / "mine.yaml").write_text("detector: suppression\nparams: {rows: 7, detector: ema}\n")
    monkeypatch.chdir(tmp_path)
    assert registry_params("mine.yaml") == ("suppression", {"rows": 7, "detector": "ema"})
    (bound,) = bind([DetectorSpec("mine.yaml", {})])
    assert (bound.tag, bound.name, bound.config.rows) == ("mine.yaml", "suppression", 7)
