"""Unit tests of the CAD core (no Spark)."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spark_anomaly.detectors import SeriesPrior, build, make_config
from spark_anomaly.detectors.cad import NEURON_BASE, CadConfig, CadDetector

PATTERN = [0.0, 1.0, 2.0, 3.0, 5.0, 7.0, 3.0, 1.0]  # values 4 and 6 never occur


def _cad(**kw) -> CadDetector:
    kw.setdefault("min_value", 0.0)
    kw.setdefault("max_value", 7.0)
    return CadDetector(CadConfig(**kw))


def _run(det: CadDetector, values) -> pd.DataFrame:
    values = np.asarray(values, dtype=float)
    return det.process(values, np.arange(len(values), dtype=np.int64))


# ---------------------------------------------------------------- encoding


@pytest.mark.parametrize(
    ("x", "facts"),
    [
        # q in 3 bits, read from the most significant bit: position i gives fact 2*i + bit
        (0.0, [0, 2, 4]),  # 000
        (1.0, [0, 2, 5]),  # 001
        (3.99, [0, 3, 5]),  # int(3.99) = 3 = 011
        (4.0, [1, 2, 4]),  # 100
        (6.0, [1, 3, 4]),  # 110
        (7.0, [1, 3, 5]),  # 111
        (100.0, [1, 3, 5]),  # above max: clipped to max
        (-5.0, [0, 2, 4]),  # below min: clipped to min
    ],
)
def test_encoding_b3_by_hand(x, facts):
    assert _cad().encode(x) == facts


def test_encoding_scales_with_range():
    det = _cad(min_value=10.0, max_value=24.0)  # step = 14 / 7 = 2
    assert det.encode(10.0) == [0, 2, 4]
    assert det.encode(13.0) == [0, 2, 5]  # q = int(1.5) = 1
    assert det.encode(22.0) == [1, 3, 4]  # q = 6


def test_encoding_b1_and_b4():
    assert _cad(num_norm_value_bits=1, max_value=1.0).encode(0.7) == [0]
    assert _cad(num_norm_value_bits=1, max_value=1.0).encode(1.0) == [1]
    # b = 4, range 0..15: q = 9 = 1001 -> facts 1, 2, 4, 7
    assert _cad(num_norm_value_bits=4, max_value=15.0).encode(9.0) == [1, 2, 4, 7]


# ---------------------------------------------------------------- behaviour


def test_periodic_sequence_becomes_predicted():
    out = _run(_cad(), np.tile(PATTERN, 40))
    raw = out["probability"].to_numpy().reshape(40, len(PATTERN))
    per_period = raw.mean(axis=1)
    assert per_period[0] > 0.8  # everything is new at first
    assert per_period[1] > 0.3
    assert per_period[-1] < 0.15  # learned: most selected contexts fire
    assert per_period[-1] < per_period[3] < per_period[1]
    assert raw[-5:].max() < 0.5
    # after warm-up, a learned pattern raises no alarm
    assert not out["is_anomaly"].to_numpy()[len(PATTERN) * 5 :].any()
    assert set(out["reason"].iloc[len(PATTERN) * 5 :]) == {"ok"}


def test_novel_value_after_learned_pattern_scores_high():
    det = _cad()
    _run(det, np.tile(PATTERN, 40))
    n_before = det.n_contexts
    v = det.process_one(6.0, 0)  # a value never seen, where 0 was expected
    assert v.probability >= 0.95
    assert v.score == v.probability
    assert v.is_anomaly
    assert v.reason == "novel context"
    assert math.isnan(v.lower) and math.isnan(v.upper)
    assert det.n_contexts > n_before  # the novelty was learned


def test_rest_period_silences_following_steps():
    rest = 10
    det = _cad(rest_period=rest)
    _run(det, np.tile(PATTERN, 40))
    assert det.process_one(6.0, 0).is_anomaly
    # another novelty right after: raw is high, the reported score is silenced
    after = [det.process_one(4.0, 0), det.process_one(6.0, 0)]
    assert max(v.probability for v in after) >= 0.95
    assert all(v.score == 0.0 and not v.is_anomaly and v.reason == "rest period" for v in after)
    # the last raw alarm (one of the two above, or later) restarts the rest period; back in the
    # pattern, the silence ends within rest_period steps after the last raw alarm
    pattern_out = [det.process_one(x, 0) for x in np.tile(PATTERN, 6)]
    last_alarm = max(i for i, v in enumerate([*after, *pattern_out]) if v.probability >= 0.95)
    assert last_alarm < 2  # the pattern itself raised no raw alarm
    silent = [v.reason == "rest period" for v in pattern_out]
    k = rest - 2 + last_alarm + 1  # readings of the pattern still inside the rest period
    assert all(silent[:k]) and not any(silent[k:])
    assert all(v.score == v.probability for v in pattern_out[k:])


def test_first_rest_period_readings_are_warm_up():
    out = _run(_cad(rest_period=30), np.tile(PATTERN, 10))
    assert (out["score"].iloc[:30] == 0).all()
    assert out["reason"].iloc[0] == "warm-up"
    # early raw alarms (everything is new) extend the silence as a rest period
    assert set(out["reason"].iloc[:30]) <= {"warm-up", "rest period"}
    assert out["probability"].iloc[1] == 1.0  # second reading: a new zero-level context, none selected
    assert "ok" in set(out["reason"])


def test_rest_period_zero_reports_raw():
    out = _run(_cad(rest_period=0), np.tile(PATTERN, 5))
    np.testing.assert_array_equal(out["score"].to_numpy(), out["probability"].to_numpy())
    assert out["is_anomaly"].iloc[1]


def test_missing_value_changes_nothing():
    det = _cad()
    _run(det, PATTERN * 3)
    before = det.get_state()
    v = det.process_one(float("nan"), 0)
    assert v.reason == "missing value" and v.score == 0.0 and not v.is_anomaly
    assert det.get_state() == before


# ---------------------------------------------------------------- driver contract


def _series(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    v = 10 + 5 * np.sin(2 * np.pi * t / 96) + rng.normal(0, 0.7, n)
    v[[n // 3, 2 * n // 3]] = 19.5  # a level the series never reaches otherwise
    return v


def test_process_equals_repeated_process_one():
    v = _series(900)
    v[450] = np.nan
    a = _run(_cad(min_value=0.0, max_value=20.0), v)
    det = _cad(min_value=0.0, max_value=20.0)
    b = pd.DataFrame.from_records(
        [det.process_one(float(x), i) for i, x in enumerate(v)], columns=list(a.columns)
    )
    pd.testing.assert_frame_equal(a, b)
    assert a["is_anomaly"].any()


def test_is_anomaly_is_score_at_threshold():
    out = _run(_cad(min_value=0.0, max_value=20.0, threshold=0.8), _series(600))
    np.testing.assert_array_equal(out["is_anomaly"].to_numpy(), out["score"].to_numpy() >= 0.8)
    assert ((out["score"] >= 0) & (out["score"] <= 1)).all()
    assert ((out["probability"] >= 0) & (out["probability"] <= 1)).all()


def _roundtrip(state: dict) -> dict:
    state = pickle.loads(pickle.dumps(state))
    return json.loads(json.dumps(state))


@pytest.mark.parametrize(
    ("cut", "kw"),
    [
        (500, {"min_value": 0.0, "max_value": 20.0}),
        (301, {"min_value": 0.0, "max_value": 20.0, "rest_period": 5}),  # inside a rest period
        (700, {"min_value": 0.0, "max_value": 20.0, "max_contexts": 300}),  # after sweeps
        (50, {"learn_range_steps": 120}),  # while learning the range
        (400, {"learn_range_steps": 120}),  # after learning it
    ],
)
def test_state_roundtrip_continues_identically(cut, kw):
    v = _series(1000, seed=3)
    ref = _run(CadDetector(CadConfig(**kw)), v)
    det = CadDetector(CadConfig(**kw))
    head = _run(det, v[:cut])
    state = det.get_state()
    assert state == _roundtrip(state)  # plain values only
    fresh = CadDetector(CadConfig(**kw))
    fresh.set_state(_roundtrip(state))
    assert fresh.get_state() == state
    tail = _run(fresh, v[cut:])
    got = pd.concat([head, tail], ignore_index=True)
    pd.testing.assert_frame_equal(got, ref)


def test_state_rejects_unknown_version():
    det = _cad()
    state = det.get_state()
    state["version"] = 99
    with pytest.raises(ValueError, match="state version"):
        _cad().set_state(state)


def test_memory_cap_holds_on_long_random_series():
    cap = 400
    det = _cad(max_contexts=cap, num_norm_value_bits=4, max_value=1.0)
    rng = np.random.default_rng(7)
    sizes = []
    for x in rng.uniform(0, 1, 3000):
        det.process_one(float(x), 0)
        sizes.append(det.n_contexts)
    assert max(sizes) <= cap
    assert sizes[-1] >= int(0.9 * cap) - 50  # it keeps learning (sweeps, not a freeze)
    state = det.get_state()
    ctx = _ctx_columns(state)
    assert len(ctx["id"]) <= cap
    assert len(state["left_ids"]) <= cap and len(state["right_ids"]) <= cap
    # every stored semi-context is still used by a context
    assert set(state["left_ids"]) == set(ctx["left"])
    assert set(state["right_ids"]) == set(ctx["right"])
    # neuron facts of the left group are context ids, sensor facts are small
    assert all(f < 8 or f >= NEURON_BASE for f in state["left_group"])


def test_without_cap_random_series_grows_past_it():
    det = _cad(num_norm_value_bits=4, max_value=1.0)
    for x in np.random.default_rng(7).uniform(0, 1, 400):
        det.process_one(float(x), 0)
    assert det.n_contexts > 400  # so the cap test above really exercises the sweep


# ---------------------------------------------------------------- value range


def test_range_from_prior_widened_by_margin():
    prior = SeriesPrior(n=100, mean=5.0, m2=10.0, min=2.0, max=12.0)
    det = CadDetector(CadConfig(range_margin=0.1), prior)
    assert det.value_range == pytest.approx((1.0, 13.0))
    # an explicit side wins over the prior
    det = CadDetector(CadConfig(min_value=0.0), prior)
    assert det.value_range == pytest.approx((0.0, 13.0))


def test_zero_range_counts_as_unit_steps():
    # DETECTORS.md: a zero range counts as 2^b - 1, i.e. step 1; everything clips to the one value
    det = _cad(min_value=5.0, max_value=5.0)
    assert det.encode(5.0) == det.encode(9.0) == det.encode(1.0) == [0, 2, 4]


def test_constant_prior_gets_a_span():
    prior = SeriesPrior(n=10, mean=5.0, m2=0.0, min=5.0, max=5.0)
    det = CadDetector(CadConfig(range_margin=0.1), prior)
    assert det.value_range == pytest.approx((4.5, 5.5))


def test_range_learned_then_replayed():
    v = _series(800, seed=5)
    det = CadDetector(CadConfig(learn_range_steps=100, range_margin=0.1))
    out = _run(det, v)
    assert (out["reason"].iloc[:100] == "learning range").all()
    assert (out["score"].iloc[:100] == 0).all()
    lo, hi = float(v[:100].min()), float(v[:100].max())
    span = hi - lo
    assert det.value_range == pytest.approx((lo - 0.1 * span, hi + 0.1 * span))
    # the warm-up readings were learned: same as a detector given that range from the start
    fixed = _run(CadDetector(CadConfig(min_value=lo - 0.1 * span, max_value=hi + 0.1 * span)), v)
    pd.testing.assert_frame_equal(out.iloc[100:], fixed.iloc[100:])


def test_unusable_prior_falls_back_to_learning():
    prior = SeriesPrior(n=0, mean=float("nan"), m2=0.0, min=float("nan"), max=float("nan"))
    det = CadDetector(CadConfig(learn_range_steps=5), prior)
    assert det.value_range is None
    assert det.process_one(1.0, 0).reason == "learning range"


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    "kw",
    [
        {"min_value": 6.0, "max_value": 5.0},
        {"min_value": float("nan")},
        {"max_value": float("inf")},
        {"min_value": "0"},
        {"range_margin": -0.1},
        {"threshold": 0.0},
        {"threshold": 1.5},
        {"rest_period": -1},
        {"rest_period": 2.5},
        {"learn_range_steps": 0},
        {"max_left_semi_contexts_length": 0},
        {"max_active_neurons_num": -1},
        {"num_norm_value_bits": 0},
        {"num_norm_value_bits": 25},
        {"num_norm_value_bits": True},
        {"max_contexts": 5},
    ],
)
def test_config_validation(kw):
    with pytest.raises(ValueError, match="cad: "):
        CadConfig(**kw)


def test_registry_builds_cad():
    cfg = make_config("cad", {"threshold": 0.9, "min_value": 0, "max_value": 7})
    assert isinstance(cfg, CadConfig) and cfg.threshold == 0.9
    det = build("cad", {"min_value": 0, "max_value": 7})
    assert isinstance(det, CadDetector) and det.name == "cad"
    assert det.encode(6) == [1, 3, 4]
    with pytest.raises(ValueError, match="no parameter"):
        make_config("cad", {"treshold": 0.9})


# ---------------------------------------------------------------- state layout and continuation

DATA = Path(__file__).parent / "data"


def _nab_like(kind: str, n: int, seed: int) -> np.ndarray:
    """Short series of the shapes NAB holds: noisy daily cycle, random walk, level shift, spikes."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    if kind == "cycle":
        v = 50 + 20 * np.sin(2 * np.pi * t / 144) + rng.normal(0, 4, n)
    elif kind == "walk":
        v = np.cumsum(rng.normal(0, 1, n))
    elif kind == "shift":
        v = np.where(t < n // 2, 5.0, 9.0) + rng.normal(0, 0.5, n)
    else:  # flat with spikes
        v = rng.normal(0, 0.2, n)
        v[rng.choice(n, 6, replace=False)] += 8
    v[rng.choice(n, 3, replace=False)] = np.nan
    return v


@pytest.mark.parametrize(
    ("kind", "kw"),
    [
        ("cycle", {}),
        ("walk", {"learn_range_steps": 100}),
        ("shift", {"max_contexts": 250}),  # many sweeps
        ("spikes", {"num_norm_value_bits": 4, "max_active_neurons_num": 5, "rest_period": 3}),
    ],
)
def test_small_batches_through_pickled_state_equal_one_run(kind, kw):
    """The stream's pattern: each batch restores a fresh core from the pickled state of the previous
    one. Scores, reasons and states must be those of one uninterrupted run, bit for bit."""
    v = _nab_like(kind, 900, seed=len(kind))
    ts = np.arange(len(v), dtype=np.int64)
    ref = CadDetector(CadConfig(**kw))
    want = ref.process_rows(v, ts)
    rng = np.random.default_rng(5)
    got: list = []
    state = None
    pos = 0
    while pos < len(v):
        k = int(rng.integers(1, 40))
        det = CadDetector(CadConfig(**kw))
        if state is not None:
            det.set_state(pickle.loads(state))
        got += det.process_rows(v[pos : pos + k], ts[pos : pos + k])
        state = pickle.dumps(det.get_state(), protocol=pickle.HIGHEST_PROTOCOL)
        pos += k
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):  # NaN lower/upper: compare the scored fields
        assert g[2:] == w[2:]
    assert pickle.loads(state) == ref.get_state()
    assert len({w[3] for w in want}) > 20  # raw scores vary: the comparison is not all-"warm-up"
    if "max_contexts" in kw:
        assert ref.get_state()["next_ids"][2] > 2 * kw["max_contexts"] >= 2 * ref.n_contexts


def _ctx_columns(state: dict) -> dict[str, list[int]]:
    """The contexts of a state as columns by field name (both layouts)."""
    fields = ("id", "left", "right", "count", "zero_level", "sweep_count")
    return {k: state[f"ctx_{k if k != 'id' else 'ids'}"] for k in fields}


def _as_layout_1(state: dict) -> dict:
    """The content of a layout-2 state in layout-1 terms (fact lists, contexts by id), so states
    of both layouts, or layout-2 states with other slot numbers, can be compared."""
    if state["version"] == 1:
        lefts = dict(zip(state["left_ids"], map(sorted, state["left_facts"]), strict=True))
        rights = dict(zip(state["right_ids"], map(sorted, state["right_facts"]), strict=True))
    else:
        slot_cids = state["slot_cids"]

        def facts(mask: int, width: int) -> list[int]:
            out = []
            for i in range(mask.bit_length()):
                if mask >> i & 1:
                    out.append(i if i < width else NEURON_BASE + slot_cids[i - width])
            return sorted(out)

        width = state["sensor_slots"]
        lefts = {lid: facts(m, width) for lid, m in zip(state["left_ids"], state["left_masks"], strict=True)}
        rights = {
            rid: facts(m, width) for rid, m in zip(state["right_ids"], state["right_masks"], strict=True)
        }
    cols = _ctx_columns(state)
    fields = ("left", "right", "count", "zero_level", "sweep_count")
    ctxs = {cid: tuple(cols[k][i] for k in fields) for i, cid in enumerate(cols["id"])}
    same = ("lo", "hi", "learn", "t", "last_alarm", "left_group", "next_ids")
    return {**{k: state[k] for k in same}, "lefts": lefts, "rights": rights, "ctxs": ctxs}


@pytest.mark.parametrize("name", ["cad_state_v1.json", "cad_state_v1_keys.json"])
def test_state_of_layout_1_restores_and_continues(name):
    """Checkpoints written before the upgrade resume with the scores their core gave: layout 1
    without ``left_keys`` (core of commit 34856d1) and with them (core of commit dda2f6b)."""
    fx = json.loads((DATA / name).read_text())
    assert fx["state"]["version"] == 1 and ("left_keys" in fx["state"]) == name.endswith("_keys.json")
    det = CadDetector(CadConfig(**fx["config"]))
    det.set_state(fx["state"])
    restored = det.get_state()
    assert restored["version"] == 2
    assert _as_layout_1(restored) == _as_layout_1(fx["state"])
    # the layout-2 state written right after the upgrade continues the same way
    again = CadDetector(CadConfig(**fx["config"]))
    again.set_state(_roundtrip(restored))
    assert again.get_state() == restored
    v = np.asarray(fx["values"], dtype=float)[fx["cut"] :]
    for core in (det, again):
        rows = core.process_rows(v, np.zeros(len(v), dtype=np.int64))
        assert [[r[2], r[3], r[5]] for r in rows] == fx["expected"]
        assert core.n_contexts <= fx["config"]["max_contexts"]  # a sweep ran after the restore
    assert det.get_state() == again.get_state()


def test_state_rejects_a_key_fact_outside_its_left():
    fx = json.loads((DATA / "cad_state_v1_keys.json").read_text())
    fx["state"]["left_keys"][0] = 99_999
    with pytest.raises(ValueError, match="key fact"):
        CadDetector(CadConfig(**fx["config"])).set_state(fx["state"])


def test_state_rejects_a_key_slot_outside_its_left():
    det = _cad()
    _run(det, PATTERN * 3)
    state = det.get_state()
    state["left_keys"][0] = state["left_masks"][0].bit_length() + 3
    with pytest.raises(ValueError, match="key slot"):
        _cad().set_state(state)


def test_state_rejects_another_number_of_bits():
    det = _cad()
    _run(det, PATTERN * 3)
    with pytest.raises(ValueError, match="sensor slots"):
        _cad(num_norm_value_bits=4).set_state(det.get_state())


def _to_layout_1(state: dict) -> dict:
    """A layout-2 state rewritten as layout 1 (what the previous core would have written)."""
    content = _as_layout_1(state)
    ids = list(content["ctxs"])
    cols = list(zip(*content["ctxs"].values(), strict=True)) if ids else [()] * 5
    return {
        "version": 1,
        **{k: content[k] for k in ("lo", "hi", "learn", "t", "last_alarm", "left_group", "next_ids")},
        "left_ids": list(content["lefts"]),
        "left_facts": list(content["lefts"].values()),
        "right_ids": list(content["rights"]),
        "right_facts": list(content["rights"].values()),
        "ctx_ids": ids,
        **{
            k: list(c)
            for k, c in zip(
                ("ctx_left", "ctx_right", "ctx_count", "ctx_zero_level", "ctx_sweep_count"), cols, strict=True
            )
        },
    }


@pytest.mark.parametrize(
    ("kind", "kw"),
    [
        ("cycle", {}),
        ("shift", {"max_contexts": 250}),
        ("spikes", {"num_norm_value_bits": 4, "max_contexts": 60}),
    ],
)
def test_layout_2_restore_agrees_with_a_full_rebuild(kind, kw):
    """``set_state`` of layout 2 takes the zero-level indexes from the state; rebuilding every
    index from the fact lists (the layout-1 path, other slot numbers) must give the same core."""
    v = _nab_like(kind, 700, seed=3)
    ts = np.zeros(len(v), dtype=np.int64)
    det = CadDetector(CadConfig(**kw))
    det.process_rows(v[:450], ts[:450])
    state = det.get_state()
    fast, rebuilt = CadDetector(CadConfig(**kw)), CadDetector(CadConfig(**kw))
    fast.set_state(pickle.loads(pickle.dumps(state)))
    rebuilt.set_state(_to_layout_1(state))
    assert _as_layout_1(rebuilt.get_state()) == _as_layout_1(state)
    assert fast.get_state() == state
    want = [r[2:] for r in det.process_rows(v[450:], ts[450:])]  # NaN lower/upper: not compared
    for core in (fast, rebuilt):
        assert [r[2:] for r in core.process_rows(v[450:], ts[450:])] == want
    assert fast.get_state() == det.get_state()
    assert _as_layout_1(rebuilt.get_state()) == _as_layout_1(det.get_state())


def test_neuron_slots_are_given_back_and_reused():
    """After sweeps every neuron slot in use is named by a left semi-context or the left group,
    and freed slots are reused: the slot table stays near the number of live neurons."""
    cap = 200
    det = _cad(max_contexts=cap, num_norm_value_bits=4, max_value=1.0)
    for x in np.random.default_rng(3).uniform(0, 1, 3000):
        det.process_one(float(x), 0)
    state = det.get_state()
    assert state["next_ids"][2] > 10 * cap  # many contexts came and went
    width = state["sensor_slots"]
    named = 0
    for m in state["left_masks"]:
        named |= m
    used = {i for i in range(width, named.bit_length()) if named >> i & 1}
    used |= {
        width + state["slot_cids"].index(f - NEURON_BASE) for f in state["left_group"] if f >= NEURON_BASE
    }
    live = {width + i for i, cid in enumerate(state["slot_cids"]) if cid >= 0}
    assert used == live
    assert len(state["slot_cids"]) <= cap
