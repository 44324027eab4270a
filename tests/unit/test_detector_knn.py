"""knn detector (distance of the last day's shape to the nearest recent day-shapes)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from spark_anomaly.detectors import RESULT_COLUMNS, SeriesPrior, build
from spark_anomaly.detectors.knn import KnnConfig, KnnDetector, _blocks, pairwise_sum, shared_sums
from spark_anomaly.detectors.state_arrays import unpack_decimals

from .resume_check import assert_resumes_identically

PRIOR = SeriesPrior(n=100, mean=5.0, m2=50.0, min=0.0, max=10.0)
FIVE_MIN = 300_000


def run(det, xs, step_ms=FIVE_MIN):
    return [det.process_one(x, i * step_ms) for i, x in enumerate(xs)]


def test_registry_builds_it_and_the_spacing_spans_one_day():
    det = build("knn", {"window": 32}, PRIOR)
    assert isinstance(det, KnnDetector) and det.config.window == 32
    v = run(det, [5.0] * 21)
    assert v[0].reason == "estimating the reading interval" and math.isnan(v[0].lower)
    assert det.get_state()["spacing"] == 9  # 288 five-minute readings a day / 32
    hourly = KnnDetector(KnnConfig(window=32), PRIOR)
    run(hourly, [5.0] * 21, step_ms=3_600_000)
    assert hourly.get_state()["spacing"] == 1  # 24 readings a day: never below 1
    seconds = KnnDetector(KnnConfig(window=32, max_spacing=32), PRIOR)
    run(seconds, [5.0] * 21, step_ms=1000)
    assert seconds.get_state()["spacing"] == 32  # 86400 / 32 would be 2700: capped


def test_distances_by_hand():
    # window 2, spacing 1: the pattern at t is (x_t, x_t-1); references end 2 and 3 rows back
    cfg = KnnConfig(window=2, spacing=1, references=2, stride=1, k=1, distance_cap=1.0)
    det = KnnDetector(cfg, PRIOR)  # trained range [0, 10]: distances in tenths
    v = run(det, [0.0, 2.0, 0.0, 4.0, 2.0])
    assert all(x.score == 0.0 and x.reason.startswith("collecting") for x in v[:3])
    # t=3: (4, 0) against (2, 0): rms sqrt(4 / 2) / 10
    assert v[3].score == pytest.approx(math.sqrt(2.0) / 10.0)
    # t=4: (2, 4) against (0, 2) -> sqrt(8 / 2) / 10 = 0.2 and (2, 0) -> sqrt(16 / 2) / 10; k=1: nearest
    assert v[4].score == pytest.approx(0.2) and v[4].probability == v[4].score
    two = KnnDetector(KnnConfig(window=2, spacing=1, references=2, stride=1, k=2, distance_cap=1.0), PRIOR)
    assert run(two, [0.0, 2.0, 0.0, 4.0, 2.0])[4].score == pytest.approx((0.2 + math.sqrt(8.0) / 10.0) / 2)
    assert not v[4].is_anomaly and KnnDetector(cfg, PRIOR).config.anomaly_distance == 0.5


def test_a_day_without_its_daily_peak_stands_out_although_every_reading_is_in_range():
    # half-hourly readings (48 a day), a peak of 8 in the afternoon, 2 otherwise; day 11 has no peak
    rng = np.random.default_rng(3)
    day = np.where((np.arange(48) >= 24) & (np.arange(48) < 31), 8.0, 2.0)
    xs = np.concatenate([np.tile(day, 10), np.full(48, 2.0)]) + rng.normal(0.0, 0.05, 11 * 48)
    prior = SeriesPrior(n=96, mean=3.0, m2=1.0, min=float(xs[:96].min()), max=float(xs[:96].max()))
    det = KnnDetector(KnnConfig(window=8, references=100, stride=2, k=3, anomaly_distance=0.25), prior)
    v = run(det, xs, step_ms=1_800_000)
    assert det.get_state()["spacing"] == 6  # 48 readings a day / 8
    score = np.array([x.score for x in v])
    assert xs[-48:].max() < prior.max  # nothing new in the values themselves
    assert score[-48:].max() > 5 * score[6 * 48 : 10 * 48].max()
    assert any(x.is_anomaly for x in v[-48:]) and not any(x.is_anomaly for x in v[: 10 * 48])


def test_invalid_value_is_reported_not_stored():
    det = KnnDetector(KnnConfig(window=2, spacing=1, references=2, stride=1, k=1), PRIOR)
    run(det, [1.0, 2.0, 3.0])
    v = det.process_one(float("nan"), 3)
    assert v.reason == "invalid value" and not v.is_anomaly and v.score == 0.0
    assert list(unpack_decimals(det.get_state()["recent"])) == [1.0, 2.0, 3.0]


def test_without_a_prior_the_warm_up_learns_the_range_first():
    det = KnnDetector(KnnConfig(window=2, spacing=1, references=2, stride=1, k=1, warmup=4, distance_cap=1.0))
    v = run(det, [0.0, 10.0, 0.0, 10.0, 10.0])
    assert all(x.reason.startswith("warm-up") for x in v[:4])
    assert det.get_state()["hi"] == 10.0
    # t=4: (10, 10) against (0, 10) and (10, 0): rms sqrt(100 / 2) / 10
    assert v[4].score == pytest.approx(math.sqrt(50.0) / 10.0)


def test_process_equals_process_one_and_state_round_trips():
    rng = np.random.default_rng(5)
    n = 900
    xs = np.sin(2 * np.pi * np.arange(n) / 96.0) + rng.normal(0.0, 0.1, n)  # 96 readings a day
    xs[[500, 650]] = [5.0, np.nan]
    ts = np.arange(n) * 900_000  # 15 minutes
    cfg = KnnConfig(window=12, references=40, stride=3, k=2, warmup=60)
    whole = KnnDetector(cfg).process(xs, ts)
    single = KnnDetector(cfg)
    rows = [single.process_one(x, t) for x, t in zip(xs, ts, strict=True)]
    one = pd.DataFrame.from_records(rows, columns=RESULT_COLUMNS)
    pd.testing.assert_frame_equal(whole, one, check_exact=True)
    # cuts while estimating the interval, warming up, collecting patterns, scoring
    assert_resumes_identically(lambda: KnnDetector(cfg), xs, ts, (10, 40, 150, 600))
    assert whole["score"].between(0, 1).all() and (whole["score"] > 0).sum() > 500
    assert whole["score"].iloc[500] > whole["score"].iloc[300:500].max()
    state = KnnDetector(cfg)
    state.process(xs, ts)
    # bounded: the ring never holds more than gap + (references - 1) * stride + span readings;
    # spacing 96 / 12 = 8, span 89, gap 90 (the next multiple of the stride)
    assert state.get_state()["spacing"] == 8
    assert len(state.get_state()["recent"]) == 90 + 39 * 3 + 89


def test_it_runs_calibrated_in_an_ensemble():
    det = build(
        "calibrated", {"detector": "knn", "raw": "score", "params": {"window": 8, "references": 50}}, PRIOR
    )
    xs = np.sin(np.arange(400) / 5.0) * 4 + 5
    out = det.process(xs, np.arange(400) * FIVE_MIN)
    assert len(out) == 400 and out["score"].between(0, 1).all()


@pytest.mark.parametrize(
    "params",
    [
        {"window": 0},
        {"spacing": -1},
        {"references": 0},
        {"stride": 0},
        {"k": 0},
        {"k": 5, "references": 4},
        {"max_spacing": 0},
        {"interval_samples": 0},
        {"distance_cap": 0.0},
        {"min_width": 0.0},
        {"anomaly_distance": 0.0},
        {"window": 2.5},
    ],
)
def test_bad_configuration_is_rejected(params):
    with pytest.raises(ValueError):
        build("knn", params)


@pytest.mark.parametrize("prior", [PRIOR, None], ids=["prior", "warm-up"])
def test_bulk_scoring_of_a_full_ring_equals_one_by_one_bit_for_bit(prior):
    """The defaults (a day of 5-minute readings: a ring of 4,552), long enough that most readings
    go through the bulk path, with gaps after the ring is full; also in uneven chunks with a
    state round trip between them."""
    rng = np.random.default_rng(11)
    n = 6_000
    xs = 5 + 3 * np.sin(2 * np.pi * np.arange(n) / 288.0) + rng.normal(0.0, 0.3, n)
    xs[[4_700, 4_701, 5_000, 5_999]] = np.nan
    xs[5_500:5_520] += 4.0
    ts = np.arange(n) * FIVE_MIN
    one = KnnDetector(prior=prior)
    rows = [one.process_one(float(x), int(t)) for x, t in zip(xs, ts, strict=True)]
    whole = KnnDetector(prior=prior).process(xs, ts)
    chunks, core, at = [], KnnDetector(prior=prior), 0
    for size in (4_551, 3, 64, 65, 1, 700, 616):
        chunks.append(core.process(xs[at : at + size], ts[at : at + size]))
        state, core = core.get_state(), KnnDetector(prior=prior)
        core.set_state(state)
        at += size
    chunked = pd.concat(chunks, ignore_index=True)
    for col in RESULT_COLUMNS:
        want = np.array([getattr(r, col) for r in rows])
        np.testing.assert_array_equal(whole[col].to_numpy(), want, err_msg=col)
        np.testing.assert_array_equal(chunked[col].to_numpy(), want, err_msg=col)
    scored = whole["reason"].str.startswith("nearest")
    assert scored.sum() > 1_000 and whole["score"][scored].gt(0).all()
    assert whole["score"].iloc[5_500:5_540].max() > whole["score"].iloc[5_000:5_500].max()


@pytest.mark.parametrize("window", [1, 5, 12, 32])
def test_block_sums_shared_between_patterns_give_the_same_bits_as_one_pattern_at_a_time(window):
    """``shared_sums`` (a batch) and ``pairwise_sum`` (one pattern) add the same terms in the same
    order, for windows that are and are not powers of two; both are the plain sum to rounding."""
    rng = np.random.default_rng(window)
    spacing, b, refs = 3, 40, 7
    top = (window - 1) * spacing
    table = rng.random((top + b, refs)) * 10.0 ** rng.integers(-3, 4, (top + b, refs))
    blocks = _blocks(window)
    assert sum(1 << level for _, level in blocks) == window
    shared = shared_sums(table, b, spacing, blocks)
    for s in range(b):
        terms = table[top + s - np.arange(window) * spacing]  # pattern readings x references
        np.testing.assert_array_equal(shared[s], pairwise_sum(terms, blocks))
        np.testing.assert_allclose(shared[s], terms.sum(axis=0), rtol=1e-13)


def test_batched_distances_equal_a_brute_force_nearest_neighbour_search():
    """Independent of the core's own arithmetic: every score equals the mean RMS distance to the
    k nearest of the references, computed pattern by pattern from the readings."""
    rng = np.random.default_rng(3)
    cfg = KnnConfig(window=6, spacing=2, references=25, stride=3, k=2, distance_cap=1e9)
    n = 700
    xs = np.cumsum(rng.normal(0.0, 1.0, n))
    out = KnnDetector(cfg, SeriesPrior(n=10, mean=0.0, m2=1.0, min=-5.0, max=5.0)).process(
        xs, np.arange(n) * FIVE_MIN
    )
    span = (cfg.window - 1) * cfg.spacing + 1
    gap = -(-span // cfg.stride) * cfg.stride
    checked = 0
    for t in range(n):
        ages = np.arange(cfg.window) * cfg.spacing
        ref_ends = [t - gap - j * cfg.stride for j in range(cfg.references)]
        ref_ends = [e for e in ref_ends if e - ages[-1] >= 0]
        if len(ref_ends) < cfg.k:
            continue
        pattern = xs[t - ages]
        d = np.sort([np.sqrt(np.mean((xs[e - ages] - pattern) ** 2)) for e in ref_ends])[: cfg.k]
        assert out["score"].iloc[t] == pytest.approx(d.mean() / 10.0 / cfg.distance_cap, rel=1e-10)
        checked += 1
    assert checked > 500


def test_a_batch_longer_than_the_ring_equals_one_by_one():
    """A tiny ring (17 readings) and batches of hundreds: the ring keeps only the last ones."""
    cfg = KnnConfig(window=3, spacing=2, references=4, stride=2, k=1, warmup=5)
    rng = np.random.default_rng(8)
    n = 1_500
    xs = rng.normal(0.0, 1.0, n)
    ts = np.arange(n) * FIVE_MIN
    batched = KnnDetector(cfg, PRIOR)
    whole = batched.process(xs, ts)
    single = KnnDetector(cfg, PRIOR)
    one = pd.DataFrame.from_records([single.process_one(x, t) for x, t in zip(xs, ts, strict=True)])
    one.columns = RESULT_COLUMNS
    pd.testing.assert_frame_equal(whole, one, check_exact=True)
    np.testing.assert_array_equal(batched.get_state()["recent"], xs[-17:])
    np.testing.assert_array_equal(single.get_state()["recent"], xs[-17:])


def test_a_ring_of_short_decimals_is_saved_as_integers_and_resumes_identically():
    """Readings parsed from "21.03"-like text: the saved ring is int16 (a quarter of the bytes)."""
    rng = np.random.default_rng(8)
    n = 900
    xs = np.round(5 + 3 * np.sin(2 * np.pi * np.arange(n) / 96.0) + rng.normal(0.0, 0.3, n), 2)
    ts = np.arange(n) * 900_000
    cfg = KnnConfig(window=12, references=40, stride=3, k=2)
    det = KnnDetector(cfg, PRIOR)
    det.process(xs, ts)
    saved = det.get_state()["recent"]
    assert saved["decimals"] == 2 and saved["ints"].dtype == np.int16
    assert len(saved["ints"]) == 90 + 39 * 3 + 89
    assert_resumes_identically(lambda: KnnDetector(cfg, PRIOR), xs, ts, (40, 150, 600))
