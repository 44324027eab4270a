"""The selection protocol (evaluation.selection): its splits, and its verdict on hand-made scores.

Expected gains are written out from NAB's definition, not computed by the scorer: a detection at
row i of a window [left, right] of width w is worth s(-(right - i + 1) / w) / s(-1), with
s(y) = 2 / (1 + exp(5 y)) - 1; the normalised score of a part with W windows is
100 * (raw + W) / (2 W).
"""

import math

import numpy as np
import pytest

from spark_anomaly.evaluation import selection as sel

# The tune half's shape: files per category, one category without windows.
SIZES = {
    "artificialNoAnomaly": 2,
    "artificialWithAnomaly": 2,
    "realAWSCloudwatch": 6,
    "realAdExchange": 2,
    "realKnownCause": 3,
    "realTraffic": 3,
    "realTweets": 4,
}
KEYS = [f"{c}/f{i}.csv" for c, n in SIZES.items() for i in range(n)]
WINDOWED = [k for k in KEYS if not k.startswith("artificialNoAnomaly")]


def test_splits_leave_each_windowed_category_out_then_30_halves():
    splits = sel.make_splits(KEYS, WINDOWED)
    assert len(splits) == 36
    loco = [s for s in splits if s.kind == "loco"]
    assert [s.name for s in loco] == sorted(set(SIZES) - {"artificialNoAnomaly"})
    assert splits[:6] == loco  # leave-one-category-out first, as the recorded figures list them
    for s in loco:
        assert sorted(s.held) == [k for k in KEYS if k.startswith(s.name + "/")]
        assert sorted(s.choose) == sorted(set(KEYS) - set(s.held))
    halves = splits[6:]
    assert all(s.kind == "halves" for s in halves)
    for s in halves:
        assert not set(s.choose) & set(s.held)
        assert sorted(s.choose + s.held) == sorted(KEYS)
        for c, n in SIZES.items():
            a = sum(k.startswith(c + "/") for k in s.choose)
            assert a in (n // 2, n - n // 2)  # balanced per category; an odd one out goes either way
    assert len({frozenset(s.choose) for s in halves}) > 20  # really drawn, not one split repeated


def test_splits_deterministic_for_a_seed_and_blind_to_key_order():
    a = sel.make_splits(KEYS, WINDOWED, seed=7)
    assert a == sel.make_splits(list(reversed(KEYS)), WINDOWED, seed=7)
    assert a != sel.make_splits(KEYS, WINDOWED, seed=8)
    # the seed-7 draw the documented figures come from (same algorithm as the round-7 scripts)
    assert a[6].choose == (
        "artificialNoAnomaly/f0.csv",
        "artificialWithAnomaly/f0.csv",
        "realAWSCloudwatch/f0.csv",
        "realAWSCloudwatch/f1.csv",
        "realAWSCloudwatch/f3.csv",
        "realAdExchange/f0.csv",
        "realKnownCause/f2.csv",
        "realKnownCause/f0.csv",
        "realTraffic/f1.csv",
        "realTweets/f0.csv",
        "realTweets/f1.csv",
    )


# -- the protocol on hand-made per-file scores ---------------------------------------------------

N = 1000  # probation 150 rows
WIN = (500, 519)  # width 20


def s(y: float) -> float:
    return 2 / (1 + math.exp(5 * y)) - 1


def alarm_at(row: int | None) -> np.ndarray:
    out = np.zeros(N)
    if row is not None:
        out[row] = 1.0  # an alarm, scored 1 (suppression.alarm_score)
    return out


@pytest.fixture(scope="module")
def rows():
    return sel.scoring_rows({k: N for k in KEYS}, {k: [WIN] if k in WINDOWED else [] for k in KEYS})


@pytest.fixture(scope="module")
def splits():
    return sel.make_splits(KEYS, WINDOWED)


def base_outputs():
    """Every windowed file detected at its window's last row; the others silent."""
    return {k: alarm_at(WIN[1] if k in WINDOWED else None) for k in KEYS}


def test_better_on_every_file_wins_every_split_by_the_right_gain(rows, splits):
    early = {k: alarm_at(WIN[0] if k in WINDOWED else None) for k in KEYS}
    r = sel.evaluate_family({"base": base_outputs(), "early": early}, rows, splits)
    # each held window gains 1 - s(-1/20)/s(-1); a held part of W windows gains W times that / 2W
    expected = 100 * (1 - s(-1 / 20) / s(-1)) / 2
    assert r.gain == pytest.approx(expected, abs=1e-9)
    assert [x.gain for x in r.splits] == pytest.approx([expected] * 36, abs=1e-9)
    assert r.win == 1.0
    assert {x.chosen for x in r.splits} == {"early"}
    assert (r.loco.wins, r.loco.n, r.halves.wins, r.halves.n) == (6, 6, 30, 30)
    assert r.accepted


def test_better_on_one_file_only_does_not_pass(rows, splits):
    one = dict(base_outputs())
    one["realTweets/f2.csv"] = alarm_at(WIN[0])
    r = sel.evaluate_family({"base": base_outputs(), "one": one}, rows, splits)
    # chosen where that file is on the choosing side, then nothing to gain on the held side;
    # where it is held, the choosing side ties and the baseline is kept
    assert r.gain == 0.0
    assert r.win == 0.0
    for x in r.splits:
        assert x.chosen == ("one" if "realTweets/f2.csv" in x.split.choose else "base")
    assert not r.accepted


def test_a_tie_goes_to_the_baseline_whatever_the_order(rows, splits):
    copy = {k: v.copy() for k, v in base_outputs().items()}
    r = sel.evaluate_family({"copy": copy, "base": base_outputs()}, rows, splits)
    assert {x.chosen for x in r.splits} == {"base"}
    assert (r.gain, r.win) == (0.0, 0.0)


def test_worse_variant_is_not_chosen_and_family_needs_its_baseline(rows, splits):
    late = {k: alarm_at(None) for k in KEYS}  # misses every window
    r = sel.evaluate_family({"base": base_outputs(), "late": late}, rows, splits)
    assert {x.chosen for x in r.splits} == {"base"}
    with pytest.raises(ValueError, match="baseline"):
        sel.evaluate_family({"late": late}, rows, splits)


def test_standard_score_optimised_and_at_the_alarms(rows):
    outs = base_outputs()
    score, thr = sel.standard_score(outs, WINDOWED, rows)
    assert thr == 1.0
    assert score == pytest.approx(100 * (s(-1 / 20) / s(-1) + 1) / 2, abs=1e-9)
    assert sel.standard_score(outs, WINDOWED, rows, 1.0)[0] == pytest.approx(score, abs=1e-12)
