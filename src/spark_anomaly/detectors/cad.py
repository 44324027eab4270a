"""Contextual Anomaly Detector, open-source edition (CAD OSE, seed 002) as a plain Python core.

Built from the description in DETECTORS.md ("cad" and "CAD in detail"); the AGPL reference code was
not used. One instance holds the memory of one series; readings arrive in order. The event time is
not used by the algorithm (CAD sees only the order of readings).

Outline of one step (see DETECTORS.md for the full rules):

1. The reading is clipped to ``[lo, hi]`` and quantised to ``2^b`` levels; each of the ``b`` bits
   becomes a *sensor fact* ``2*i + bit`` (``i`` counts bit positions from the most significant
   one, i.e. left to right in the written ``b``-bit number).
2. The previous *left group* (previous sensor facts plus the ids of the contexts that fired then,
   as *neuron facts* ``2^31 + id``) and the current sensor facts form a *zero-level context*, looked
   up or created.
3. Contexts whose left side is contained in the previous left group are *selected*; those whose
   right side is contained in the current facts *fire*. If the zero-level context was new, partial
   matches of zero-level contexts become *potential new contexts* and are stored.
4. ``raw = (1 - fired/selected + really_new/unique_potential_new) / 2``; after a raw score at or
   above ``threshold`` the reported score is 0 for the next ``rest_period`` readings (the first
   ``rest_period`` readings are silent too: the history starts with an alarm).

Choices beyond DETECTORS.md (all deterministic, so a restored state continues identically):

* **Tie order of active neurons**: fired contexts are sorted by ``(counter, left id, right id)``
  ascending and the last ``max_active_neurons_num`` are kept, so among equal counters the most
  recently created semi-contexts win.
* **Partly present left side**: a zero-level context whose left side is only partly present in the
  previous left group gives the potential pair ``(matched left, matched right)`` whenever its right
  side is at least partly present (fully present included: the generalised context has been seen).
* **Novelty ratio**: the zero-level context itself counts as one of the unique potential new
  contexts, so ``really_new / unique_potential_new`` is in ``[0, 1]`` (1 when a new zero-level
  context brought no other candidates).
* **Ids of new contexts**: potential new contexts are created in the sorted order of their fact
  lists, so ids (hence neuron facts) never depend on container iteration order.
* **Memory cap**: when more than ``max_contexts`` contexts exist at the end of a step, the least
  recently used contexts (last fired / looked up / created; ties: lower counter, then lower id) are
  removed until ``int(0.9 * max_contexts)`` remain, together with semi-contexts no longer used by any
  context. Ids are never reused, so a left semi-context naming a removed neuron can no longer match
  fully and ages out in turn. Memory of an endless stream is therefore bounded while recent patterns
  stay learned.
* **Range policy**: ``min_value``/``max_value`` given → used as is. Otherwise the missing side comes
  from the ``SeriesPrior`` (``prior.min``/``prior.max`` widened by ``range_margin`` of the prior's
  span). Without a usable prior, the range is learned from the first ``learn_range_steps`` readings
  (reported with score 0, reason "learning range"), widened by ``range_margin``; then those readings
  are replayed into the model so none of them is lost. A zero span widens by
  ``range_margin * max(|value|, 1)``. Later readings outside the range are clipped (no look-ahead).
* **Missing values** (NaN) are reported with score 0 and reason "missing value" and do not change
  the state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from .base import NAN, RESULT_COLUMNS, Detector, SeriesPrior, Verdict, empty_results

NEURON_BASE = 1 << 31  # neuron fact = NEURON_BASE + context id; sensor facts stay far below
_EVICT_TO = 0.9  # after the cap is exceeded, keep this fraction of max_contexts
_STATE_VERSION = 1


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


@dataclass(frozen=True)
class CadConfig:
    """Parameters of the CAD core (defaults of seed 002's CADDetector where it has them).

    min_value / max_value: the value range that is quantised; ``None`` = from the prior (widened by
    ``range_margin``) or, without a prior, learned from the first ``learn_range_steps`` readings.
    max_contexts: memory cap (number of contexts); least recently used contexts are dropped beyond it.
    """

    min_value: float | None = None
    max_value: float | None = None
    range_margin: float = 0.1
    learn_range_steps: int = 300
    threshold: float = 0.95
    rest_period: int = 30
    max_left_semi_contexts_length: int = 8
    max_active_neurons_num: int = 16
    num_norm_value_bits: int = 3
    max_contexts: int = 100_000

    def __post_init__(self) -> None:
        for name in ("min_value", "max_value"):
            v = getattr(self, name)
            if v is not None and not (_is_num(v) and math.isfinite(v)):
                raise ValueError(f"cad: {name} must be a finite number or None, got {v!r}")
        if self.min_value is not None and self.max_value is not None and not self.min_value < self.max_value:
            raise ValueError(
                f"cad: min_value must be below max_value, got min_value={self.min_value}, "
                f"max_value={self.max_value}"
            )
        if not (_is_num(self.range_margin) and math.isfinite(self.range_margin) and self.range_margin >= 0):
            raise ValueError(f"cad: range_margin must be a finite number >= 0, got {self.range_margin!r}")
        if not (_is_num(self.threshold) and 0.0 < self.threshold <= 1.0):
            raise ValueError(f"cad: threshold must be in (0, 1], got {self.threshold!r}")
        ints = {
            "learn_range_steps": (1, None),
            "rest_period": (0, None),
            "max_left_semi_contexts_length": (1, None),
            "max_active_neurons_num": (0, None),
            "num_norm_value_bits": (1, 24),
            "max_contexts": (10, None),
        }
        for name, (lo, hi) in ints.items():
            v = getattr(self, name)
            if not _is_int(v) or v < lo or (hi is not None and v > hi):
                bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
                raise ValueError(f"cad: {name} must be an integer {bound}, got {v!r}")


def _widen(lo: float, hi: float, margin: float) -> tuple[float, float]:
    span = hi - lo
    if span <= 0:
        span = max(abs(hi), abs(lo), 1.0)
    return lo - margin * span, hi + margin * span


class CadDetector(Detector):
    """CAD OSE for one series. ``score`` is the reported CAD score, ``probability`` the raw one."""

    name: ClassVar[str] = "cad"
    config_cls: ClassVar[type] = CadConfig

    def __init__(self, config: CadConfig | None = None, prior: SeriesPrior | None = None) -> None:
        self.config = config = config if config is not None else CadConfig()
        lo, hi = config.min_value, config.max_value
        if (lo is None or hi is None) and prior is not None and self._prior_usable(prior):
            plo, phi = _widen(float(prior.min), float(prior.max), config.range_margin)
            lo = plo if lo is None else lo
            hi = phi if hi is None else hi
            if not lo < hi:
                raise ValueError(f"cad: range from config and prior is empty: [{lo}, {hi}]")
        # constants of the algorithm
        self._bits = config.num_norm_value_bits
        self._qmax = (1 << self._bits) - 1
        self._maxlen = config.max_left_semi_contexts_length
        self._nact = config.max_active_neurons_num
        self._thr = float(config.threshold)
        self._rest = config.rest_period
        self._cap = config.max_contexts
        self._reset_memory()
        # range: None until known (learning mode)
        self._lo: float | None = None
        self._hi: float | None = None
        self._learn: list[float] = []  # buffered warm-up readings (learning mode only)
        if lo is not None and hi is not None:
            self._set_range(float(lo), float(hi))

    @staticmethod
    def _prior_usable(prior: SeriesPrior) -> bool:
        try:
            return prior.n >= 1 and math.isfinite(prior.min) and math.isfinite(prior.max)
        except TypeError:
            return False

    # ------------------------------------------------------------------ memory
    def _reset_memory(self) -> None:
        self._t = 0  # CAD steps taken
        self._last_alarm = 0  # step of the last raw score >= threshold (0: virtual alarm at start)
        self._left_group: frozenset[int] = frozenset()
        self._next_lid = 0
        self._next_rid = 0
        self._next_cid = 0
        self._left_ids: dict[frozenset[int], int] = {}
        self._left_facts: dict[int, frozenset[int]] = {}
        self._left_ctx: dict[int, dict[int, int]] = {}  # left id -> {right id: context id}
        self._left_zl: dict[int, int] = {}  # left id -> number of zero-level contexts under it
        self._by_max: dict[int, set[int]] = {}  # max fact -> left ids (containment candidates)
        self._zl_index: dict[int, set[int]] = {}  # fact -> left ids having zero-level contexts
        self._right_ids: dict[frozenset[int], int] = {}
        self._right_facts: dict[int, frozenset[int]] = {}
        self._right_refs: dict[int, int] = {}
        # context id -> [counter, last used step, left id, right id, zero-level 0/1]
        self._ctx: dict[int, list[int]] = {}
        self._rcache: dict[frozenset[int], tuple[dict[int, frozenset[int]], set[int]]] = {}
        self._codes: dict[int, frozenset[int]] = {}

    def _left_id(self, facts: frozenset[int]) -> int:
        lid = self._left_ids.get(facts)
        if lid is None:
            lid = self._next_lid
            self._next_lid += 1
            self._left_ids[facts] = lid
            self._left_facts[lid] = facts
            self._left_ctx[lid] = {}
            self._left_zl[lid] = 0
            self._by_max.setdefault(max(facts), set()).add(lid)
        return lid

    def _right_id(self, facts: frozenset[int]) -> int:
        rid = self._right_ids.get(facts)
        if rid is None:
            rid = self._next_rid
            self._next_rid += 1
            self._right_ids[facts] = rid
            self._right_facts[rid] = facts
            self._right_refs[rid] = 0
            self._rcache.clear()
        return rid

    def _new_context(self, lid: int, rid: int, zero_level: bool) -> int:
        cid = self._next_cid
        self._next_cid += 1
        self._left_ctx[lid][rid] = cid
        self._right_refs[rid] += 1
        self._ctx[cid] = [0, self._t, lid, rid, 1 if zero_level else 0]
        if zero_level:
            self._left_zl[lid] += 1
            if self._left_zl[lid] == 1:
                for f in self._left_facts[lid]:
                    self._zl_index.setdefault(f, set()).add(lid)
        return cid

    def _right_info(self, facts: frozenset[int]) -> tuple[dict[int, frozenset[int]], set[int]]:
        """For the current sensor facts: matched facts per right semi-context, and the fully present."""
        info = self._rcache.get(facts)
        if info is None:
            match: dict[int, frozenset[int]] = {}
            full: set[int] = set()
            for rid, rf in self._right_facts.items():
                m = rf & facts
                if m:
                    match[rid] = m
                    if len(m) == len(rf):
                        full.add(rid)
            info = (match, full)
            self._rcache[facts] = info
        return info

    def _evict(self) -> None:
        """Drop least recently used contexts down to _EVICT_TO of the cap (see module doc)."""
        ctx = self._ctx
        n_drop = len(ctx) - int(_EVICT_TO * self._cap)
        if n_drop <= 0:
            return
        victims = sorted(ctx, key=lambda c: (ctx[c][1], ctx[c][0], c))[:n_drop]
        for cid in victims:
            _, _, lid, rid, zl = ctx.pop(cid)
            under = self._left_ctx[lid]
            del under[rid]
            if zl:
                self._left_zl[lid] -= 1
                if self._left_zl[lid] == 0:
                    for f in self._left_facts[lid]:
                        s = self._zl_index[f]
                        s.discard(lid)
                        if not s:
                            del self._zl_index[f]
            if not under:
                facts = self._left_facts.pop(lid)
                del self._left_ids[facts], self._left_ctx[lid], self._left_zl[lid]
                s = self._by_max[max(facts)]
                s.discard(lid)
                if not s:
                    del self._by_max[max(facts)]
            self._right_refs[rid] -= 1
            if self._right_refs[rid] == 0:
                del self._right_refs[rid]
                del self._right_ids[self._right_facts.pop(rid)]
                self._rcache.clear()

    # ------------------------------------------------------------------ range
    def _set_range(self, lo: float, hi: float) -> None:
        self._lo, self._hi = lo, hi
        span = hi - lo
        self._step = span / self._qmax if span > 0 else 1.0

    def _encode(self, x: float) -> frozenset[int]:
        """Sensor facts of reading x: clip, quantise to b bits, fact 2*i + bit (i from the MSB)."""
        lo, hi = self._lo, self._hi
        x = lo if x < lo else hi if x > hi else x
        q = int((x - lo) / self._step)
        if q > self._qmax:
            q = self._qmax
        facts = self._codes.get(q)
        if facts is None:
            b = self._bits
            facts = frozenset(2 * i + ((q >> (b - 1 - i)) & 1) for i in range(b))
            self._codes[q] = facts
        return facts

    def encode(self, x: float) -> list[int]:
        """The sorted sensor facts of ``x`` under the current range (for inspection and tests)."""
        if self._lo is None:
            raise RuntimeError("cad: value range not known yet (still learning it)")
        return sorted(self._encode(float(x)))

    @property
    def value_range(self) -> tuple[float, float] | None:
        return None if self._lo is None else (self._lo, self._hi)

    @property
    def n_contexts(self) -> int:
        return len(self._ctx)

    # ------------------------------------------------------------------ step
    def _cad_step(self, x: float) -> tuple[float, float, str]:
        """One CAD step on a finite reading; returns (reported score, raw score, reason)."""
        self._t = t = self._t + 1
        R = self._encode(x)
        L = self._left_group
        ctx = self._ctx
        rmatch, rfull = self._right_info(R)

        new_flag = False
        zl_cid = -1
        if L:
            lid0 = self._left_id(L)
            rid0 = self._right_id(R)
            if rid0 not in rmatch:  # a new right semi-context invalidated the cache
                rmatch, rfull = self._right_info(R)
            cid = self._left_ctx[lid0].get(rid0)
            if cid is None:
                zl_cid = self._new_context(lid0, rid0, True)
                new_flag = True
            else:
                zl_cid = cid
                ctx[cid][1] = t

        # selected / fired: contexts under left semi-contexts contained in L
        maxlen = self._maxlen
        left_facts = self._left_facts
        left_ctx = self._left_ctx
        pairs: dict[tuple[frozenset[int], frozenset[int]], None] = {}
        if new_flag:
            pairs[(L, R)] = None
        n_sel = 0
        fired: list[tuple[int, int, int, int]] = []
        by_max = self._by_max
        for f in L:
            cands = by_max.get(f)
            if not cands:
                continue
            for lid in cands:
                S = left_facts[lid]
                if not S <= L:
                    continue
                for rid, cid in left_ctx[lid].items():
                    if cid == zl_cid:
                        continue
                    n_sel += 1
                    c = ctx[cid]
                    if rid in rfull:
                        c[0] += 1
                        c[1] = t
                        fired.append((c[0], lid, rid, cid))
                    elif new_flag and c[4] and len(S) <= maxlen:
                        m = rmatch.get(rid)
                        if m:
                            pairs[(S, m)] = None

        # partly present left semi-contexts of zero-level contexts (only when novelty appeared)
        if new_flag:
            matched: dict[int, list[int]] = {}
            zl_index = self._zl_index
            for f in L:
                s = zl_index.get(f)
                if s:
                    for lid in s:
                        m = matched.get(lid)
                        if m is None:
                            matched[lid] = [f]
                        else:
                            m.append(f)
            for lid, m in matched.items():
                n = len(m)
                if n > maxlen or n == len(left_facts[lid]):
                    continue
                ml = None
                for rid, cid in left_ctx[lid].items():
                    if ctx[cid][4]:
                        mr = rmatch.get(rid)
                        if mr:
                            if ml is None:
                                ml = frozenset(m)
                            pairs[(ml, mr)] = None

        # active neurons -> next left group
        n_fired = len(fired)
        if fired:
            if len(fired) > self._nact:
                fired.sort()
                fired = fired[len(fired) - self._nact :] if self._nact else []
            self._left_group = R.union([NEURON_BASE + f[3] for f in fired])
        else:
            self._left_group = R

        # store potential new contexts
        a1 = 0.0
        if new_flag:
            really_new = 1  # the zero-level context
            del pairs[(L, R)]
            if pairs:
                for lf, rf in sorted(pairs, key=lambda p: (sorted(p[0]), sorted(p[1]))):
                    lid = self._left_id(lf)
                    rid = self._right_id(rf)
                    if rid not in left_ctx[lid]:
                        self._new_context(lid, rid, False)
                        really_new += 1
            a1 = really_new / (len(pairs) + 1)
        if len(ctx) > self._cap:
            self._evict()

        a0 = n_fired / n_sel if n_sel else 0.0
        raw = (1.0 - a0 + a1) / 2.0
        raw = 0.0 if raw < 0.0 else 1.0 if raw > 1.0 else raw
        if self._rest and t - self._last_alarm <= self._rest:
            reason = "warm-up" if self._last_alarm == 0 else "rest period"
            score = 0.0
        else:
            score = raw
            reason = "novel context" if raw >= self._thr else "ok"
        if raw >= self._thr:
            self._last_alarm = t
        return score, raw, reason

    # ------------------------------------------------------------------ contract
    def process_one(self, x: float, ts: int) -> Verdict:
        x = float(x)
        if x != x:
            return Verdict(NAN, NAN, 0.0, 0.0, False, "missing value")
        if self._lo is None:
            return self._learn_one(x)
        score, raw, reason = self._cad_step(x)
        return Verdict(NAN, NAN, score, raw, score >= self._thr, reason)

    def _learn_one(self, x: float) -> Verdict:
        """Learning-range mode: buffer the reading; at the end fix the range and replay the buffer."""
        self._learn.append(x)
        if len(self._learn) >= self.config.learn_range_steps:
            finite = [v for v in self._learn if math.isfinite(v)]
            if finite:
                lo, hi = _widen(min(finite), max(finite), self.config.range_margin)
            else:  # only infinities seen: nothing to scale by
                lo, hi = -1.0, 1.0
            if self.config.min_value is not None:
                lo = float(self.config.min_value)
            if self.config.max_value is not None:
                hi = float(self.config.max_value)
            if not lo < hi:  # a fixed side beyond everything learned: keep a unit span
                lo, hi = (lo, lo + 1.0) if self.config.min_value is not None else (hi - 1.0, hi)
            self._set_range(lo, hi)
            buffered, self._learn = self._learn, []
            for v in buffered:
                self._cad_step(v)
        return Verdict(NAN, NAN, 0.0, 0.0, False, "learning range")

    def process(self, values: np.ndarray, ts: np.ndarray) -> pd.DataFrame:
        n = len(values)
        if n == 0:
            return empty_results(0)
        score = np.zeros(n)
        prob = np.zeros(n)
        reason: list[str] = [""] * n
        step = self._cad_step
        vals = np.asarray(values, dtype=float).tolist()
        for i, x in enumerate(vals):
            if self._lo is not None and x == x:
                score[i], prob[i], reason[i] = step(x)
            else:
                v = self.process_one(x, 0)
                score[i], prob[i], reason[i] = v.score, v.probability, v.reason
        nan = np.full(n, np.nan)
        return pd.DataFrame(
            {
                "lower": nan,
                "upper": nan.copy(),
                "score": score,
                "probability": prob,
                "is_anomaly": score >= self._thr,
                "reason": np.array(reason, dtype=object),
            },
            columns=list(RESULT_COLUMNS),
        )

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, Any]:
        """Plain values only: ints, floats, lists, dicts (JSON- and pickle-safe).

        Semi-contexts are stored once as sorted fact lists, contexts as parallel columns; the
        indexes are rebuilt by ``set_state``.
        """
        lids = list(self._left_facts)
        rids = list(self._right_facts)
        cids = list(self._ctx)
        cols = list(zip(*(self._ctx[c] for c in cids), strict=True)) if cids else [(), (), (), (), ()]
        return {
            "version": _STATE_VERSION,
            "lo": self._lo,
            "hi": self._hi,
            "learn": list(self._learn),
            "t": self._t,
            "last_alarm": self._last_alarm,
            "left_group": sorted(self._left_group),
            "next_ids": [self._next_lid, self._next_rid, self._next_cid],
            "left_ids": lids,
            "left_facts": [sorted(self._left_facts[i]) for i in lids],
            "right_ids": rids,
            "right_facts": [sorted(self._right_facts[i]) for i in rids],
            "ctx_ids": cids,
            "ctx_count": list(cols[0]),
            "ctx_used": list(cols[1]),
            "ctx_left": list(cols[2]),
            "ctx_right": list(cols[3]),
            "ctx_zero_level": list(cols[4]),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"cad: unsupported state version {state.get('version')!r}")
        self._reset_memory()
        lo, hi = state["lo"], state["hi"]
        self._lo = self._hi = None
        if lo is not None:
            self._set_range(float(lo), float(hi))
        self._learn = [float(v) for v in state["learn"]]
        self._t = int(state["t"])
        self._last_alarm = int(state["last_alarm"])
        self._left_group = frozenset(int(f) for f in state["left_group"])
        for lid, facts in zip(state["left_ids"], state["left_facts"], strict=True):
            fs = frozenset(int(f) for f in facts)
            lid = int(lid)
            self._left_ids[fs] = lid
            self._left_facts[lid] = fs
            self._left_ctx[lid] = {}
            self._left_zl[lid] = 0
            self._by_max.setdefault(max(fs), set()).add(lid)
        for rid, facts in zip(state["right_ids"], state["right_facts"], strict=True):
            fs = frozenset(int(f) for f in facts)
            self._right_ids[fs] = int(rid)
            self._right_facts[int(rid)] = fs
            self._right_refs[int(rid)] = 0
        for cid, cnt, used, lid, rid, zl in zip(
            state["ctx_ids"],
            state["ctx_count"],
            state["ctx_used"],
            state["ctx_left"],
            state["ctx_right"],
            state["ctx_zero_level"],
            strict=True,
        ):
            cid, lid, rid, zl = int(cid), int(lid), int(rid), 1 if zl else 0
            self._ctx[cid] = [int(cnt), int(used), lid, rid, zl]
            self._left_ctx[lid][rid] = cid
            self._right_refs[rid] += 1
            if zl:
                self._left_zl[lid] += 1
                if self._left_zl[lid] == 1:
                    for f in self._left_facts[lid]:
                        self._zl_index.setdefault(f, set()).add(lid)
        self._next_lid, self._next_rid, self._next_cid = (int(v) for v in state["next_ids"])
