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
* **Memory cap**: when more than ``max_contexts`` contexts exist after a step, a sweep removes
  contexts until ``int(0.9 * max_contexts)`` remain: first those that fired least since the previous
  sweep (idle ones, and new ones that never fired), then lower total counter, then older id; semi-
  contexts no longer used by any context go with them. Ids are never reused, so a left semi-context
  naming a removed neuron can no longer match fully and ages out in turn. Memory of an endless
  stream is bounded while what keeps firing stays learned; no per-step bookkeeping is needed (the
  counter at the last sweep is kept per context).
* **The zero-level context (L, R)** is excluded from this step's selection whether it was just
  created or looked up ("it must not fire in this step").
* **Range policy**: ``min_value``/``max_value`` given → used as is (equal values: step 1, as
  DETECTORS.md says for a zero range). Otherwise the missing side comes
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
from collections import Counter, defaultdict
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
        if self.min_value is not None and self.max_value is not None and self.min_value > self.max_value:
            raise ValueError(
                f"cad: min_value must not exceed max_value, got min_value={self.min_value}, "
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


def _pair_key(pair: tuple[frozenset[int], frozenset[int]]) -> tuple[list[int], list[int]]:
    return sorted(pair[0]), sorted(pair[1])


def _widen(lo: float, hi: float, margin: float) -> tuple[float, float]:
    span = hi - lo
    if span <= 0:
        span = max(abs(hi), abs(lo), 1.0)
    return lo - margin * span, hi + margin * span


class CadDetector(Detector):
    """CAD OSE for one series. ``score`` is the reported CAD score, ``probability`` the raw one."""

    name: ClassVar[str] = "cad"

    uses_prior: ClassVar[bool] = True  # the stream joins the trained model in for it (SeriesPrior)
    config_cls: ClassVar[type] = CadConfig

    def __init__(self, config: CadConfig | None = None, prior: SeriesPrior | None = None) -> None:
        self.config = config = config if config is not None else CadConfig()
        lo, hi = config.min_value, config.max_value
        if (lo is None or hi is None) and prior is not None and self._prior_usable(prior):
            plo, phi = _widen(float(prior.min), float(prior.max), config.range_margin)
            lo = plo if lo is None else lo
            hi = phi if hi is None else hi
            if lo > hi:
                raise ValueError(f"cad: range from config and prior is empty: [{lo}, {hi}]")
        # constants of the algorithm
        self._bits = config.num_norm_value_bits
        self._qmax = (1 << self._bits) - 1
        self._maxlen = config.max_left_semi_contexts_length
        self._nact = config.max_active_neurons_num
        self._thr = float(config.threshold)
        self._rest = config.rest_period
        self._cap = config.max_contexts
        self._sensors = frozenset(range(2 * self._bits))  # every possible sensor fact
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
    # A left semi-context is a list [facts, contexts (right id -> context), right ids of its
    # zero-level contexts, sensor part (zero-level lefts only), {sensor facts: contexts that fire} (a cache),
    # key fact in _by_key, sorted facts (as the state stores them)]; a context is a list
    # [counter, left id, right id, context id, zero-level 0/1, counter at the last sweep]. Lists
    # compare by (counter, left id, right id): the tie order of active neurons.
    def _reset_memory(self) -> None:
        self._t = 0  # CAD steps taken
        self._last_alarm = 0  # step of the last raw score >= threshold (0: virtual alarm at start)
        self._left_group: frozenset[int] = frozenset()
        self._next_lid = 0
        self._next_rid = 0
        self._next_cid = 0
        self._left_ids: dict[frozenset[int], int] = {}
        self._lefts: dict[int, list[Any]] = {}
        # containment candidates: key fact (one fact, rarely in a left group) -> {left id: left}
        self._by_key: dict[int, dict[int, list[Any]]] = {}
        # zero-level lefts: neuron fact -> {left id: left}; per sensor part, right id -> left ids of
        # the zero-level contexts (lefts with neurons, lefts without)
        self._zl_neuron: defaultdict[int, dict[int, list[Any]]] = defaultdict(dict)
        self._zl_groups: dict[frozenset[int], dict[int, set[int]]] = {}
        self._zl_plain: dict[frozenset[int], dict[int, set[int]]] = {}
        self._right_ids: dict[frozenset[int], int] = {}
        self._right_facts: dict[int, frozenset[int]] = {}
        self._right_refs: dict[int, int] = {}
        self._ctx: dict[int, list[int]] = {}
        self._rcache: dict[frozenset[int], tuple[dict[int, frozenset[int]], frozenset[int]]] = {}
        self._codes: dict[int, frozenset[int]] = {}
        self._cut = 0  # speed hint for the top-k of active neurons (derived, not state)

    def _left(self, facts: frozenset[int]) -> tuple[int, list[Any]]:
        lid = self._left_ids.get(facts)
        if lid is not None:
            return lid, self._lefts[lid]
        lid = self._next_lid
        self._next_lid += 1
        self._left_ids[facts] = lid
        self._lefts[lid] = left = [facts, {}, [], None, {}, self._key_fact(facts), sorted(facts)]
        self._by_key.setdefault(left[5], {})[lid] = left
        return lid, left

    def _key_fact(self, facts: frozenset[int]) -> int:
        """The fact a left semi-context is indexed under for the containment test.

        Any of its facts is correct (a contained left has all its facts in the group); a neuron
        whose context fired least so far is rarely in a left group, so few candidates are tested.
        Only speed depends on this choice, never a score.
        """
        best = -1
        best_count = -1
        ctx = self._ctx
        for f in facts - self._sensors:
            c = ctx.get(f - NEURON_BASE)
            n = c[0] if c is not None else -1
            if best < 0 or n < best_count or (n == best_count and f > best):
                best, best_count = f, n
        return best if best >= 0 else max(facts)

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

    def _zl_groups_of(self, left: list[Any]) -> dict[frozenset[int], dict[int, set[int]]]:
        return self._zl_groups if len(left[3]) < len(left[0]) else self._zl_plain

    def _add_context(
        self, lid: int, left: list[Any], rid: int, cnt: int, zl: int, snap: int, cid: int
    ) -> list[int]:
        c = [cnt, lid, rid, cid, zl, snap]
        left[1][rid] = c
        left[4] = {}
        self._ctx[cid] = c
        self._right_refs[rid] += 1
        if zl:
            if not left[2]:
                facts = left[0]
                left[3] = code = frozenset(f for f in facts if f < NEURON_BASE)
                for f in facts:
                    if f >= NEURON_BASE:
                        self._zl_neuron[f][lid] = left
            else:
                code = left[3]
            left[2].append(rid)
            self._zl_groups_of(left).setdefault(code, {}).setdefault(rid, set()).add(lid)
        return c

    def _new_context(self, lid: int, left: list[Any], rid: int, zl: int) -> list[int]:
        cid = self._next_cid
        self._next_cid += 1
        return self._add_context(lid, left, rid, 0, zl, 0, cid)

    def _right_info(self, facts: frozenset[int]) -> tuple[dict[int, frozenset[int]], frozenset[int]]:
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
            info = (match, frozenset(full))
            self._rcache[facts] = info
        return info

    def _evict(self) -> None:
        """Sweep: drop contexts down to _EVICT_TO of the cap (see the module doc).

        Victims: fewest fires since the previous sweep first, then lower counter, then older id.
        """
        ctx = self._ctx
        n_drop = len(ctx) - int(_EVICT_TO * self._cap)
        if n_drop <= 0:
            return
        order = sorted(ctx.values(), key=lambda c: (c[0] - c[5], c[0], c[3]))
        for c in order[:n_drop]:
            cnt, lid, rid, cid, zl, _ = c
            del ctx[cid]
            left = self._lefts[lid]
            under = left[1]
            del under[rid]
            left[4] = {}
            if zl:
                groups = self._zl_groups_of(left)
                g = groups[left[3]]
                g[rid].discard(lid)
                if not g[rid]:
                    del g[rid]
                    if not g:
                        del groups[left[3]]
                left[2].remove(rid)
                if not left[2]:
                    for f in left[0]:
                        if f >= NEURON_BASE:
                            s = self._zl_neuron[f]
                            del s[lid]
                            if not s:
                                del self._zl_neuron[f]
                    left[3] = None
            if not under:
                facts = left[0]
                del self._lefts[lid], self._left_ids[facts]
                s = self._by_key[left[5]]
                del s[lid]
                if not s:
                    del self._by_key[left[5]]
            self._right_refs[rid] -= 1
            if not self._right_refs[rid]:
                del self._right_refs[rid]
                del self._right_ids[self._right_facts.pop(rid)]
                self._rcache.clear()
        for c in ctx.values():
            c[5] = c[0]

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
        rmatch, rfull = self._right_info(R)
        maxlen = self._maxlen

        new_flag = False
        zl_under = None
        zl_c = None
        if L:
            lid0, left0 = self._left(L)
            rid0 = self._right_id(R)
            if rid0 not in rmatch:  # a new right semi-context invalidated the cache
                rmatch, rfull = self._right_info(R)
            zl_under = left0[1]
            zl_c = zl_under.get(rid0)
            if zl_c is None:
                zl_c = self._new_context(lid0, left0, rid0, 1)
                new_flag = True

        # selected / fired: contexts under the left semi-contexts contained in L
        pairs: dict[tuple[frozenset[int], frozenset[int]], None] = {}
        n_sel = 0
        fired: list[list[int]] = []
        zl_sel: list[list[Any]] = []  # selected lefts that may give potential pairs
        by_key = self._by_key
        for f in L:
            cands = by_key.get(f)
            if cands is None:
                continue
            for left in cands.values():
                if not left[0] <= L:
                    continue
                under = left[1]
                n_sel += len(under)
                if under is zl_under:  # the zero-level context (L, R) must not fire
                    n_sel -= 1
                    fired += [c for rid, c in under.items() if rid in rfull and c is not zl_c]
                else:
                    fc = left[4]
                    fl = fc.get(R)
                    if fl is None:
                        if len(fc) >= 8:
                            fc.clear()
                        fl = fc[R] = [c for rid, c in under.items() if rid in rfull]
                    fired += fl
                if new_flag and left[2] and len(left[0]) <= maxlen:
                    zl_sel.append(left)
        for c in fired:
            c[0] += 1
        n_fired = len(fired)
        for left in zl_sel:  # fully present left, right partly present
            S = left[0]
            for rid, c in left[1].items():
                if c[4] and rid not in rfull and rid in rmatch:
                    pairs[(S, rmatch[rid])] = None

        if new_flag:
            self._partial_pairs(L, rmatch, pairs)

        # active neurons -> next left group
        if fired:
            nact = self._nact
            if n_fired > nact:
                if nact:
                    # Exact top-nact: if at least nact counters reach the previous step's cut, the
                    # top nact are among them (the cut is a speed hint only, not state).
                    cut = self._cut
                    top = [c for c in fired if c[0] >= cut]
                    if len(top) < nact:
                        top = fired
                    top.sort()  # contexts are distinct lists, so the order is total
                    fired = top[-nact:]
                    self._cut = fired[0][0]
                else:
                    fired = []
            self._left_group = R.union([NEURON_BASE + c[3] for c in fired])
        else:
            self._left_group = R

        # store potential new contexts
        a1 = 0.0
        if new_flag:
            really_new = 1  # the zero-level context
            pairs.pop((L, R), None)  # it is stored already
            if pairs:
                left_ids, right_ids, lefts = self._left_ids, self._right_ids, self._lefts
                new_pairs = []
                for pair in pairs:
                    lf, rf = pair
                    lid = left_ids.get(lf)
                    if lid is not None:
                        rid = right_ids.get(rf)
                        if rid is not None and rid in lefts[lid][1]:
                            continue
                    new_pairs.append(pair)
                if len(new_pairs) > 1:
                    new_pairs.sort(key=_pair_key)
                for lf, rf in new_pairs:
                    lid, left = self._left(lf)
                    self._new_context(lid, left, self._right_id(rf), 0)
                really_new += len(new_pairs)
            a1 = really_new / (len(pairs) + 1)
            if len(self._ctx) > self._cap:
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

    def _partial_pairs(
        self,
        L: frozenset[int],
        rmatch: dict[int, frozenset[int]],
        pairs: dict[tuple[frozenset[int], frozenset[int]], None],
    ) -> None:
        """Potential pairs of zero-level contexts whose left side is only partly present in L.

        Every zero-level left is (sensor code) + neurons. Lefts sharing a neuron with L are matched
        one by one; all others meet L only in the sensor part, so per sensor code the set of their
        zero-level right sides is enough (kept as counts, minus those of the lefts done one by one).
        """
        maxlen = self._maxlen
        sens = L & self._sensors
        hit: dict[int, list[Any]] = {}
        zl_neuron = self._zl_neuron
        for f in L - self._sensors:
            s = zl_neuron.get(f)
            if s:
                hit.update(s)
        for left in hit.values():
            S = left[0]
            m = S & L
            n = len(m)
            if n <= maxlen and n < len(S):
                for rid in left[2]:
                    mr = rmatch.get(rid)
                    if mr is not None:
                        pairs[(m, mr)] = None
        n_hit = len(hit)
        hit_ids = hit.keys()
        for code, rights in self._zl_groups.items():
            m = code & sens
            if not m or len(m) > maxlen:
                continue
            for rid, lids in rights.items():
                mr = rmatch.get(rid)
                if mr is not None and (len(lids) > n_hit or not hit_ids >= lids):
                    pairs[(m, mr)] = None
        for code, rights in self._zl_plain.items():
            m = code & sens
            if not m or len(m) > maxlen or len(m) == len(code):
                continue
            for rid in rights:
                mr = rmatch.get(rid)
                if mr is not None:
                    pairs[(m, mr)] = None

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
        rows = self.process_rows(values, ts)
        if not rows:
            return empty_results(0)
        _, _, score, prob, anom, reason = zip(*rows, strict=True)
        n = len(rows)
        return pd.DataFrame(
            {
                "lower": np.full(n, np.nan),
                "upper": np.full(n, np.nan),
                "score": np.array(score, dtype=float),
                "probability": np.array(prob, dtype=float),
                "is_anomaly": np.array(anom, dtype=bool),
                "reason": np.array(reason, dtype=object),
            },
            columns=list(RESULT_COLUMNS),
        )

    def process_rows(
        self, values: np.ndarray, ts: np.ndarray
    ) -> list[tuple[float, float, float, float, bool, str]]:
        """``process`` as Verdict-shaped tuples, no frame: drivers batch many series' rows."""
        out = []
        step = self._cad_step
        thr = self._thr
        for x in np.asarray(values, dtype=float).tolist():
            if self._lo is not None and x == x:
                s, p, r = step(x)
            else:
                v = self.process_one(x, 0)
                s, p, r = v.score, v.probability, v.reason
            out.append((NAN, NAN, s, p, s >= thr, r))
        return out

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, Any]:
        """Plain values only: ints, floats, lists, dicts (JSON- and pickle-safe).

        Semi-contexts are stored once as sorted fact lists, contexts as parallel integer columns:
        flat lists pickle and unpickle in C. ``left_keys`` (each left's key fact in the containment
        index) is an index kept in the state so that ``set_state`` need not recompute it; a state
        without it (written before it existed) is restored all the same.
        """
        lefts = self._lefts.values()
        rids = list(self._right_facts)
        ctxs = list(self._ctx.values())
        cols = list(zip(*ctxs, strict=True)) if ctxs else [()] * 6
        return {
            "version": _STATE_VERSION,
            "lo": self._lo,
            "hi": self._hi,
            "learn": list(self._learn),
            "t": self._t,
            "last_alarm": self._last_alarm,
            "left_group": sorted(self._left_group),
            "next_ids": [self._next_lid, self._next_rid, self._next_cid],
            "left_ids": list(self._lefts),
            "left_facts": [left[6].copy() for left in lefts],
            "left_keys": [left[5] for left in lefts],
            "right_ids": rids,
            "right_facts": [sorted(self._right_facts[i]) for i in rids],
            "ctx_ids": list(cols[3]),
            "ctx_left": list(cols[1]),
            "ctx_right": list(cols[2]),
            "ctx_count": list(cols[0]),
            "ctx_zero_level": list(cols[4]),
            "ctx_sweep_count": list(cols[5]),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore from ``get_state`` output: bulk builds (map/zip/dict in C), one pass per context."""
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
        self._left_group = frozenset(map(int, state["left_group"]))
        lids = list(map(int, state["left_ids"]))
        sorted_facts = [list(map(int, f)) for f in state["left_facts"]]
        if len(sorted_facts) != len(lids):
            raise ValueError("cad: state has left_ids and left_facts of different lengths")
        fsets = list(map(frozenset, sorted_facts))
        self._left_ids = dict(zip(fsets, lids, strict=True))
        lefts = self._lefts = {
            lid: [fs, {}, [], None, {}, 0, sf] for lid, fs, sf in zip(lids, fsets, sorted_facts, strict=True)
        }
        rids = list(map(int, state["right_ids"]))
        rsets = [frozenset(map(int, f)) for f in state["right_facts"]]
        self._right_ids = dict(zip(rsets, rids, strict=True))
        self._right_facts = dict(zip(rids, rsets, strict=True))
        right_refs = self._right_refs = dict.fromkeys(rids, 0)
        cols = [
            list(map(int, state[k]))
            for k in ("ctx_count", "ctx_left", "ctx_right", "ctx_ids", "ctx_sweep_count")
        ]
        right_refs.update(Counter(cols[2]))
        zls = [1 if z else 0 for z in state["ctx_zero_level"]]
        ctxs = list(map(list, zip(cols[0], cols[1], cols[2], cols[3], zls, cols[4], strict=True)))
        self._ctx = dict(zip(cols[3], ctxs, strict=True))
        zl_neuron, zl_groups, zl_plain = self._zl_neuron, self._zl_groups, self._zl_plain
        sensors = self._sensors
        for c in ctxs:
            left = lefts[c[1]]
            left[1][c[2]] = c
            if c[4]:  # a zero-level context: index its left side (as _add_context does)
                lid, rid, facts = c[1], c[2], left[0]
                if not left[2]:
                    left[3] = code = facts & sensors
                    for f in facts - sensors:
                        zl_neuron[f][lid] = left
                else:
                    code = left[3]
                left[2].append(rid)
                groups = zl_groups if len(code) < len(facts) else zl_plain
                g = groups.get(code)
                if g is None:
                    groups[code] = {rid: {lid}}
                elif rid in g:
                    g[rid].add(lid)
                else:
                    g[rid] = {lid}
        keys = state.get("left_keys")
        if keys is None:  # a state from before left_keys: keys use the restored counters
            keys = [self._key_fact(left[0]) for left in lefts.values()]
        by_key = self._by_key
        for (lid, left), key in zip(lefts.items(), keys, strict=True):
            left[5] = key = int(key)
            if key not in left[0]:
                raise ValueError(f"cad: state names key fact {key} outside left semi-context {lid}")
            by_key.setdefault(key, {})[lid] = left
        self._next_lid, self._next_rid, self._next_cid = (int(v) for v in state["next_ids"])
