"""The demo's matching of flagged readings to injected anomalies (pure pandas, no Spark)."""

import math

import pandas as pd
import pytest

from spark_anomaly.demo_report import alarm_events, dead_letter_summary, match

STEP = 60_000


def _scored(detector: str, sensor: str, metric: str, flags: list[int]) -> pd.DataFrame:
    """One reading per minute from ts=0; ``flags`` lists the flagged reading indexes."""
    n = 20
    return pd.DataFrame(
        {
            "detector": detector,
            "sensor_id": sensor,
            "metric": metric,
            "ts": [i * STEP for i in range(n)],
            "is_anomaly": [i in flags for i in range(n)],
        }
    )


def _truth() -> pd.DataFrame:
    return pd.DataFrame(
        [
            # detected: flagged reading 6 is inside [5, 7]
            {
                "kind": "level_shift",
                "sensor_id": "a",
                "metric": "temp",
                "start_ts": 5 * STEP,
                "end_ts": 7 * STEP,
            },
            # missed: nothing flagged on (b, hum) in [10, 10]
            {"kind": "spike", "sensor_id": "b", "metric": "hum", "start_ts": 10 * STEP, "end_ts": 10 * STEP},
            # malformed records are not anomalies of a series
            {
                "kind": "malformed",
                "sensor_id": "a",
                "metric": None,
                "start_ts": 3 * STEP,
                "end_ts": 3 * STEP,
                "reason": "nan_token",
                "payload": '{"id":"a","ts":1,"temp":NaN,"hum":1}',
            },
        ]
    )


def test_detected_missed_and_false_alarm_give_exact_recall_and_precision():
    scored = pd.concat(
        [
            # a/temp: flags 6,7 (one alarm, inside the span) and 15 (false alarm)
            _scored("z", "a", "temp", [6, 7, 15]),
            # b/hum: flag 10 is on another series' timeline only -> b/hum not flagged at all
            _scored("z", "b", "hum", []),
            # a/hum: flag at 6 is the right time but the wrong metric -> false alarm
            _scored("z", "a", "hum", [6]),
        ],
        ignore_index=True,
    )
    r = match(scored, _truth(), tolerance_ms=0)["z"]
    assert r.by_kind.loc["level_shift", ["injected", "detected"]].tolist() == [1, 1]
    assert r.by_kind.loc["spike", ["injected", "detected"]].tolist() == [1, 0]
    assert r.by_kind.loc["total", ["injected", "detected"]].tolist() == [2, 1]
    assert r.recall == pytest.approx(0.5)
    assert (r.alarms, r.true_alarms) == (3, 1)
    assert r.precision == pytest.approx(1 / 3)
    assert (r.flagged_readings, r.flagged_in_spans) == (4, 2)
    assert r.missed["kind"].tolist() == ["spike"]


def test_tolerance_counts_a_late_flag_and_makes_it_a_true_alarm():
    scored = _scored("z", "b", "hum", [12])  # 2 readings after the spike at 10
    assert match(scored, _truth(), tolerance_ms=0)["z"].by_kind.loc["spike", "detected"] == 0
    r = match(scored, _truth(), tolerance_ms=2 * STEP)["z"]
    assert r.by_kind.loc["spike", "detected"] == 1
    assert (r.alarms, r.true_alarms) == (1, 1)


def test_each_detector_is_scored_separately_and_no_alarms_means_nan_precision():
    scored = pd.concat([_scored("z", "a", "temp", [5]), _scored("e", "a", "temp", [])], ignore_index=True)
    res = match(scored, _truth())
    assert res["z"].recall == pytest.approx(0.5) and res["z"].precision == 1.0
    assert res["e"].recall == 0.0 and math.isnan(res["e"].precision)


def test_alarm_events_merge_consecutive_flags_per_series():
    scored = pd.concat([_scored("z", "a", "temp", [1, 2, 3, 8, 19]), _scored("z", "b", "temp", [0])])
    ev = alarm_events(scored)
    assert ev[["sensor_id", "first_ts", "last_ts", "readings"]].values.tolist() == [
        ["a", 1 * STEP, 3 * STEP, 3],
        ["a", 8 * STEP, 8 * STEP, 1],
        ["a", 19 * STEP, 19 * STEP, 1],  # the last reading of a and the first of b stay separate
        ["b", 0, 0, 1],
    ]


def test_dead_letter_summary_matches_payloads():
    dead = pd.DataFrame(
        {
            "raw": ['{"id":"a","ts":1,"temp":NaN,"hum":1}', "garbage"],
            "reason": ["field temp is not a number: NaN", "not a JSON object"],
        }
    )
    by_reason, st = dead_letter_summary(dead, _truth())
    assert st["malformed_injected"] == 1 and st["injected_found"] == 1 and st["dead_not_injected"] == 1
    assert sorted(by_reason["reason"]) == ["field temp is not a number", "not a JSON object"]


def test_dead_letter_summary_counts_repeated_payloads_once_each():
    truth = pd.DataFrame([{"kind": "malformed", "payload": "null", "reason": "not_object"}] * 2)
    dead = pd.DataFrame({"raw": ["null", "null"], "reason": ["not a JSON object"] * 2})
    _, st = dead_letter_summary(dead, truth)
    assert (st["injected_found"], st["dead_not_injected"]) == (2, 0)
