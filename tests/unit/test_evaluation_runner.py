"""The evaluate job on tiny synthetic NAB-layout trees."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from spark_anomaly.evaluation import cli, thresholds
from spark_anomaly.evaluation.nab_data import read_series, resolve_files, split_files
from spark_anomaly.evaluation.runner import prior_from_probation

N = 400


def _write_series(root, key, values, start="2020-01-01"):
    path = root / "data" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    ts = pd.date_range(start, periods=len(values), freq="5min")
    pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%d %H:%M:%S"), "value": values}).to_csv(path, index=False)
    return ts


@pytest.fixture()
def tree(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "nab"
    spike = rng.normal(10, 1, N)
    spike[300] = 60.0
    ts = _write_series(root, "catA/spiky.csv", spike)
    _write_series(root, "catA/quiet.csv", rng.normal(5, 1, N))  # labelled, no windows
    _write_series(root, "catB/unlabelled.csv", rng.normal(0, 1, N))  # not in the label file
    fmt = "%Y-%m-%d %H:%M:%S.000000"
    windows = {
        "catA/spiky.csv": [[ts[290].strftime(fmt), ts[320].strftime(fmt)]],
        "catA/quiet.csv": [],
    }
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    return root


def test_windows_are_located_by_row(tree):
    s = read_series(tree, "catA/spiky.csv")
    assert s.windows == [(290, 320)] and s.labelled
    u = read_series(tree, "catB/unlabelled.csv")
    assert u.windows == [] and not u.labelled


def test_prior_uses_only_the_probation_rows():
    values = np.r_[np.ones(60), np.full(340, 100.0)]  # probation of 400 rows = 60
    prior = prior_from_probation(values)
    assert prior.n == 60 and prior.mean == 1.0 and prior.max == 1.0


def test_output_layout_and_files_without_windows(tree, tmp_path):
    out = tmp_path / "out"
    assert (
        cli.main(
            ["--data", str(tree), "--detector", "normal", "--out", str(out), "--quiet", "--workers", "1"]
        )
        == 0
    )
    for key in ("catA/spiky.csv", "catA/quiet.csv", "catB/unlabelled.csv"):
        cat, name = key.split("/")
        frame = pd.read_csv(out / "normal" / cat / f"normal_{name}")
        assert list(frame.columns) == ["timestamp", "value", "anomaly_score", "label"]
        assert len(frame) == N
        assert frame["anomaly_score"].between(0, 1).all()
    spiky = pd.read_csv(out / "normal" / "catA" / "normal_spiky.csv")
    assert spiky["label"].sum() == 31 and spiky["label"].iloc[290] == 1 and spiky["label"].iloc[289] == 0
    summary = json.loads((out / "summary.json").read_text())
    std = summary["detectors"]["normal"]["results"]["standard"]
    assert std["detected_windows"] + std["missed_windows"] == 1
    assert sum(std["points_lost"].values()) == pytest.approx(100 - std["score"])
    # one window: perfect - null = 2 raw units = 100 points, so a raw unit is 50 points
    assert sum(p["false_cost"] for p in std["per_series"]) == pytest.approx(std["points_lost"]["false"] / 50)
    assert {p["series"] for p in std["per_series"]} == {
        "catA/spiky.csv",
        "catA/quiet.csv",
        "catB/unlabelled.csv",
    }
    assert (out / "report.html").exists() and (out / "report.md").exists()
    assert (out / "report" / "normal" / "catA" / "spiky.png").stat().st_size > 1000
    assert "report/normal/catA/spiky.png" in (out / "report.html").read_text()


def test_thresholds_round_trip_and_apply_out_of_sample(tree, tmp_path):
    saved = tmp_path / "thr.json"
    out1, out2 = tmp_path / "o1", tmp_path / "o2"
    base = ["--data", str(tree), "--detector", "normal", "--quiet", "--workers", "2", "--no-report"]
    cli.main(base + ["--out", str(out1), "--files", "spiky", "--thresholds-out", str(saved)])
    table = thresholds.load(saved)
    assert set(table["normal"]) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    tuned = json.loads((out1 / "summary.json").read_text())["detectors"]["normal"]["results"]
    cli.main(
        base + ["--out", str(out2), "--files", "catA/quiet.csv,unlabelled", "--thresholds-in", str(saved)]
    )
    applied = json.loads((out2 / "summary.json").read_text())["detectors"]["normal"]["results"]
    for profile, res in applied.items():
        assert res["threshold"] == tuned[profile]["threshold"]
        assert res["threshold"] == (
            None if math.isinf(table["normal"][profile]) else table["normal"][profile]
        )


def test_saved_infinite_threshold_means_never(tmp_path):
    path = tmp_path / "t.json"
    thresholds.save(path, {"x": {"thresholds": {"standard": math.inf, "reward_low_FN_rate": 0.25}}})
    assert json.loads(path.read_text())["detectors"]["x"]["thresholds"]["standard"] is None
    assert thresholds.load(path) == {"x": {"standard": math.inf, "reward_low_FN_rate": 0.25}}


def test_file_selection_and_fixed_split(tree):
    assert resolve_files(tree, ["spiky"]) == ["catA/spiky.csv"]
    keys = resolve_files(tree)
    assert split_files(keys, "tune") == ["catA/quiet.csv", "catB/unlabelled.csv"]
    assert split_files(keys, "test") == ["catA/spiky.csv"]
    with pytest.raises(ValueError):
        resolve_files(tree, ["nope"])


def test_named_configuration_from_conf_dir(tree, tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "mine.yaml").write_text(
        "detector: suppression\nparams:\n  rows: 50\n  detector: calibrated\n"
        "  params: {detector: normal, min_history: 20}\n"
    )
    out = tmp_path / "o"
    cli.main(
        [
            "--data",
            str(tree),
            "--detector",
            "mine",
            "--conf-dir",
            str(conf),
            "--out",
            str(out),
            "--quiet",
            "--no-report",
            "--workers",
            "1",
        ]
    )
    frame = pd.read_csv(out / "mine" / "catA" / "mine_spiky.csv")
    # one alarm then silence: no two scores >= 0.5 within 50 rows of each other
    hits = np.flatnonzero(frame["anomaly_score"].to_numpy() >= 0.5)
    assert np.all(np.diff(hits) > 50)
