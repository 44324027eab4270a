"""NAB scorer against hand-computed cases.

Expected values are written out from NAB's definition here, not computed by the implementation:
scaled sigmoid s(y) = 2 / (1 + exp(5 y)) - 1 (and -1 for y > 3); a detection at row i of a window
[left, right] of width w is worth tp * s(-(right - i + 1) / w) / s(-1); a false detection at row i
after a window costs fp * s((i - right_prev) / (w_prev - 1)); a missed window costs fn.
"""

import math

import numpy as np
import pytest

from spark_anomaly.evaluation import nab_scorer as ns
from spark_anomaly.evaluation.nab_data import probation_length

N = 200  # probation = floor(0.15 * 200) = 30 rows
WIN = (80, 99)  # width 20
S_MINUS_1 = 2 / (1 + math.exp(-5)) - 1  # s(-1) = 0.986614...
STD = ns.PROFILES["standard"]


def scores_with(*rows: int, n: int = N) -> np.ndarray:
    s = np.zeros(n)
    s[list(rows)] = 1.0
    return s


def raw(scores, windows=(WIN,), profile=STD, threshold=0.5) -> float:
    return ns.score_series(ns.prepare("x", scores, list(windows)), profile, threshold).raw


def test_probation_length_is_15_percent_capped_at_750():
    assert probation_length(200) == 30
    assert probation_length(1001) == 150
    assert probation_length(22695) == 750


def test_window_hit_at_its_first_row_scores_the_full_tp_weight():
    assert raw(scores_with(80)) == pytest.approx(1.0)


def test_window_hit_at_its_last_row_scores_nearly_nothing():
    expected = (2 / (1 + math.exp(5 * (-1 / 20))) - 1) / S_MINUS_1  # position -(99-99+1)/20
    assert expected == pytest.approx(0.12614, abs=1e-4)
    assert raw(scores_with(99)) == pytest.approx(expected)


def test_window_hit_in_the_middle():
    expected = (2 / (1 + math.exp(-2.5)) - 1) / S_MINUS_1  # row 90: position -(99-90+1)/20 = -0.5
    assert raw(scores_with(90)) == pytest.approx(expected)
    assert expected == pytest.approx(0.85979, abs=1e-4)


def test_only_the_earliest_detection_in_a_window_counts():
    assert raw(scores_with(90, 95, 99)) == pytest.approx(raw(scores_with(90)))
    assert raw(scores_with(85, 90)) == pytest.approx((2 / (1 + math.exp(-3.75)) - 1) / S_MINUS_1)


def test_missed_window_costs_the_fn_weight_per_profile():
    assert raw(np.zeros(N)) == pytest.approx(-1.0)
    assert raw(np.zeros(N), profile=ns.PROFILES["reward_low_FN_rate"]) == pytest.approx(-2.0)


def test_false_positive_just_after_a_window_costs_little():
    # row 102: distance 3 rows past the window's right end, over width - 1 = 19
    cost = 0.11 * (2 / (1 + math.exp(5 * 3 / 19)) - 1)
    assert cost == pytest.approx(-0.04139, abs=1e-4)
    assert raw(scores_with(80, 102)) == pytest.approx(1.0 + cost)


def test_false_positive_far_after_a_window_costs_the_full_fp_weight():
    # row 157: (157 - 99) / 19 = 3.05 > 3 -> s = -1
    assert raw(scores_with(80, 157)) == pytest.approx(1.0 - 0.11)
    assert raw(scores_with(80, 157), profile=ns.PROFILES["reward_low_FP_rate"]) == pytest.approx(1.0 - 0.22)


def test_false_positive_before_the_first_window_costs_the_full_fp_weight():
    assert raw(scores_with(50, 80)) == pytest.approx(1.0 - 0.11)


def test_detections_in_the_probationary_period_are_ignored():
    assert raw(scores_with(10, 29)) == pytest.approx(-1.0)
    assert raw(scores_with(30)) == pytest.approx(-1.0 - 0.11)


def test_file_without_windows_only_pays_for_false_positives():
    assert raw(scores_with(40, 150), windows=()) == pytest.approx(-0.22)
    assert raw(np.zeros(N), windows=()) == 0.0


def test_normalised_score_against_null_and_perfect():
    corpus = [ns.prepare("a", scores_with(80), [WIN]), ns.prepare("b", np.zeros(N), [WIN])]
    res = ns.evaluate_profile(corpus, "standard", STD, threshold=0.5)
    # raw = 1 - 1 = 0; null = -2, perfect = 2 -> 100 * (0 + 2) / 4 = 50
    assert res.raw == pytest.approx(0.0)
    assert res.score == pytest.approx(50.0)
    assert (res.tp, res.fn, res.fp) == (1, 1, 0)
    assert res.recall == pytest.approx(0.5) and res.precision == pytest.approx(1.0)


def test_threshold_is_optimised_over_the_whole_corpus():
    # Series a: score 0.9 at the window start, 0.6 at a far FP. Series b: 0.6 late in its window.
    a = np.zeros(N)
    a[80], a[170] = 0.9, 0.6
    b = np.zeros(N)
    b[99] = 0.6
    corpus = [ns.prepare("a", a, [WIN]), ns.prepare("b", b, [WIN])]
    late = (2 / (1 + math.exp(-0.25)) - 1) / S_MINUS_1
    # threshold 0.9: 1 - 1 = 0; threshold 0.6: 1 - 0.11 + late = 1.016 > 0 -> 0.6 wins
    threshold, best = ns.optimise_threshold(corpus, STD)
    assert threshold == pytest.approx(0.6)
    assert best == pytest.approx(1 - 0.11 + late)
    # with FP weight 0.22 the late hit still pays: 1 - 0.22 + 0.126 > 0
    threshold_fp, _ = ns.optimise_threshold(corpus, ns.PROFILES["reward_low_FP_rate"])
    assert threshold_fp == pytest.approx(0.6)
    # a sweep agrees with scoring each threshold directly
    sw = ns.sweep(corpus, STD)
    for t, total in zip(sw.thresholds, sw.raw, strict=True):
        assert total == pytest.approx(sum(ns.score_series(c, STD, t).raw for c in corpus))


def test_silence_is_chosen_when_every_detection_loses():
    a = np.zeros(N)
    a[[40, 50, 60]] = 0.8  # three FPs before the window, window missed either way
    threshold, best = ns.optimise_threshold([ns.prepare("a", a, [WIN])], STD)
    assert math.isinf(threshold) and best == pytest.approx(-1.0)


def test_points_lost_split_into_late_missed_and_false_alarms():
    # a: hit in the window's middle (row 90) and a far false alarm (row 170); b: window missed;
    # c: no window, a false alarm just after nothing (full cost, no window precedes it).
    corpus = [
        ns.prepare("a", scores_with(90, 170), [WIN]),
        ns.prepare("b", np.zeros(N), [WIN]),
        ns.prepare("c", scores_with(40), []),
    ]
    res = ns.evaluate_profile(corpus, "standard", STD, threshold=0.5)
    middle = (2 / (1 + math.exp(-2.5)) - 1) / S_MINUS_1
    # perfect - null = 2 windows * (tp + fn) = 4 raw units = 100 points, so 1 raw unit = 25 points
    assert res.lost.late == pytest.approx(25 * (1 - middle))
    assert res.lost.missed == pytest.approx(25 * 2)  # b's window: its tp forgone and its fn paid
    assert res.lost.false == pytest.approx(25 * (0.11 + 0.11))
    assert res.lost.late + res.lost.missed + res.lost.false == pytest.approx(100 - res.score)
    a = res.per_series[0]
    assert a.late == pytest.approx(1 - middle) and a.false_cost == pytest.approx(0.11)


def test_a_false_alarm_just_after_a_window_is_a_small_loss():
    res = ns.evaluate_profile([ns.prepare("a", scores_with(80, 102), [WIN])], "standard", STD, 0.5)
    cost = -0.11 * (2 / (1 + math.exp(5 * 3 / 19)) - 1)  # 3 rows past the end, over width - 1
    assert res.lost.late == pytest.approx(0.0, abs=1e-12)  # hit at the window's first row
    assert res.lost.missed == 0.0
    assert res.lost.false == pytest.approx(100 * cost / 2)


@pytest.mark.parametrize("name", sorted(ns.PROFILES))
def test_points_lost_add_up_to_the_distance_to_100_for_every_profile(name):
    rng = np.random.default_rng(3)
    corpus = [
        ns.prepare(f"s{i}", rng.random(N) ** 8, [(60 + 10 * i, 79 + 10 * i), (150, 169)][: 1 + i % 2])
        for i in range(6)
    ]
    res = ns.evaluate_profile(corpus, name, ns.PROFILES[name])  # optimised threshold
    assert res.fp > 0 and res.tp > 0
    lost = res.lost
    assert min(lost.late, lost.missed, lost.false) >= 0
    assert lost.late + lost.missed + lost.false == pytest.approx(100 - res.score)
