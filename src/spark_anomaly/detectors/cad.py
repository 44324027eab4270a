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

import heapq
import math
from bisect import bisect_left, bisect_right
from collections import Counter, deque
from dataclasses import dataclass
from itertools import compress, repeat
from operator import and_, itemgetter, lshift, lt, not_, or_
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from .base import NAN, RESULT_COLUMNS, Detector, SeriesPrior, Verdict, empty_results

NEURON_BASE = 1 << 31  # neuron fact = NEURON_BASE + context id; sensor facts stay far below
_EVICT_TO = 0.9  # after the cap is exceeded, keep this fraction of max_contexts
_STATE_VERSION = 2  # 1: fact lists (still restored)


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


def _widen(lo: float, hi: float, margin: float) -> tuple[float, float]:
    span = hi - lo
    if span <= 0:
        span = max(abs(hi), abs(lo), 1.0)
    return lo - margin * span, hi + margin * span


class _SensorFacts(dict):
    """Sensor mask -> its sorted sensor facts (bit i set = fact i, a tuple), filled on demand."""

    def __missing__(self, mask: int) -> tuple[int, ...]:
        facts = self[mask] = tuple(_bits_of(mask))
        return facts


def _bits_of(x: int, base: int = 0) -> list[int]:
    """Positions of the set bits of ``x`` (ascending), plus ``base``."""
    out = []
    while x:
        low = x & -x
        out.append(base + low.bit_length() - 1)
        x ^= low
    return out


_COUNTER = itemgetter(0)
_COUNT_ID = itemgetter(0, 3)
_KEY = itemgetter(4)
_SEP = (-1,)  # between left and right facts in the sort key of new pairs
_MASK = itemgetter(0)
_consume = deque(maxlen=0).extend
# a context's fields stored in the state, in the order of its list (slot and right mask follow)
_CTX_KEYS = ("ctx_count", "ctx_left", "ctx_right", "ctx_ids", "ctx_zero_level", "ctx_sweep_count")
_BIT = [1 << i for i in range(64)]  # slot -> 1 << slot, grown on demand, shared by all cores


def _bit_table(n: int) -> list[int]:
    while len(_BIT) < n:
        _BIT.extend(1 << i for i in range(len(_BIT), 2 * len(_BIT)))
    return _BIT


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
        self._W = 2 * self._bits  # sensor facts are slots 0 .. W-1, neuron slots follow
        self._smask = (1 << self._W) - 1
        self._sf = _SensorFacts()
        self._codes: dict[int, tuple[int, list[int]]] = {}  # q -> (sensor mask, sensor facts)
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
    # Fact sets are int bitmasks over slots: sensor fact f is bit f (f < W = 2b); a neuron fact
    # (NEURON_BASE + context id) is bit s of a slot s >= W given to that context id when it first
    # enters a left group (_slot_cids[s - W] = id). A slot is given back at a sweep once no left
    # semi-context and not the left group names it; the lowest free slot is used first. Only the
    # representation depends on slots: every rule is on the facts (ids, sorted fact lists).
    #
    # A left semi-context is a list [mask, contexts (list), {sensor mask: contexts that fire} (a
    # cache), its sorted facts as a tuple (None until a sort needs them)]; a context is a list
    # [counter, left id, right id, context id, zero-level 0/1, counter at the last sweep, neuron
    # slot (-1: none), right mask]. Lists compare by (counter, left id, right id): the tie order
    # of active neurons. A pair (left mask, right mask) is the int ``left << W | right``.
    def _reset_memory(self) -> None:
        self._t = 0  # CAD steps taken
        self._last_alarm = 0  # step of the last raw score >= threshold (0: virtual alarm at start)
        self._lg = 0  # the left group (mask)
        self._lkeys: list[int] = []  # all its slots (sensor facts, then neuron slots)
        self._lctx: list[list[int]] = []  # the contexts of its neurons
        self._next_lid = 0
        self._next_rid = 0
        self._next_cid = 0
        self._left_ids: dict[int, int] = {}  # mask -> left id
        self._lefts: dict[int, list[Any]] = {}  # left id -> left (creation order)
        # containment candidates: key slot (the highest slot of a left) -> lefts
        self._by_key: dict[int, list[list[Any]]] = {}
        self._zl_pairs: set[int] = set()  # the pairs of the zero-level contexts
        self._right_ids: dict[int, int] = {}  # mask -> right id
        self._right_masks: dict[int, int] = {}  # right id -> mask (creation order)
        self._right_refs: dict[int, int] = {}  # right id -> contexts using it
        self._ctx_keys: set[int] = set()  # the pair of every context
        self._ctx: dict[int, list[int]] = {}  # context id -> context (creation order)
        self._slot_cids: list[int] = []  # neuron slot W + i -> context id, -1: free
        self._free: list[int] = []  # heap of free neuron slots

    def _left(self, mask: int, order: list[list[int]]) -> tuple[int, list[Any]]:
        lid = self._left_ids.get(mask)
        if lid is not None:
            return lid, self._lefts[lid]
        lid = self._next_lid
        self._next_lid += 1
        self._left_ids[mask] = lid
        key = self._key_slot(mask, order)
        self._lefts[lid] = left = [mask, [], {}, None, key]
        b = self._by_key.get(key)
        if b is None:
            self._by_key[key] = [left]
        else:
            b.append(left)
        return lid, left

    @staticmethod
    def _neuron_order(lctx: list[list[int]]) -> list[list[int]]:
        """The contexts of a left group's neurons ``lctx``, fewest fires first (then id)."""
        return sorted(lctx, key=_COUNT_ID)

    def _key_slot(self, mask: int, order: list[list[int]]) -> int:
        """The slot a new left semi-context (a subset of the left group) is indexed under.

        Any of its facts would be correct (a contained left has all its facts in the group); the
        neuron whose context fired least so far is rarely in a left group, so few candidates are
        tested. ``order``: ``_neuron_order()``. Only speed depends on this choice, never a score.
        """
        x = mask >> self._W
        if x:
            W = self._W
            for c in order:
                if x >> (c[6] - W) & 1 and c[4] >= 0:  # (a removed context is skipped)
                    return c[6]
        return mask.bit_length() - 1

    def _right_id(self, mask: int) -> int:
        rid = self._right_ids.get(mask)
        if rid is None:
            rid = self._next_rid
            self._next_rid += 1
            self._right_ids[mask] = rid
            self._right_masks[rid] = mask
            self._right_refs[rid] = 0
        return rid

    def _new_context(self, lid: int, left: list[Any], rm: int, rid: int, zl: int) -> None:
        cid = self._next_cid
        self._next_cid += 1
        c = [0, lid, rid, cid, zl, 0, -1, rm]
        left[1].append(c)
        left[2] = {}
        self._ctx[cid] = c
        self._ctx_keys.add(left[0] << self._W | rm)
        self._right_refs[rid] += 1
        if zl:
            self._zl_pairs.add(left[0] << self._W | rm)

    def _alloc_slots(self, ctxs: list[list[int]]) -> None:
        """Give neuron slots to contexts entering a left group for the first time (by id)."""
        free, sc, W = self._free, self._slot_cids, self._W
        for c in sorted(ctxs, key=itemgetter(3)):
            if free:
                s = heapq.heappop(free)
                sc[s - W] = c[3]
            else:
                s = W + len(sc)
                sc.append(c[3])
                _bit_table(s + 1)
            c[6] = s

    def _facts_of(self, mask: int) -> list[int]:
        """Sorted facts of a mask (neuron facts as NEURON_BASE + context id)."""
        sc, W = self._slot_cids, self._W
        neurons = sorted([NEURON_BASE + sc[s - W] for s in _bits_of(mask >> W, W)])
        return [*self._sf[mask & self._smask], *neurons]

    def _evict(self) -> None:
        """Sweep: drop contexts down to _EVICT_TO of the cap (see the module doc).

        Victims: fewest fires since the previous sweep first, then lower counter, then older id.
        """
        ctx = self._ctx
        n_drop = len(ctx) - int(_EVICT_TO * self._cap)
        if n_drop <= 0:
            return
        lefts, W = self._lefts, self._W
        order = sorted(ctx.values(), key=lambda c: (c[0] - c[5], c[0], c[3]))
        refs = self._right_refs
        for c in order[:n_drop]:
            _, lid, rid, cid, zl, _, _, rm = c
            del ctx[cid]
            left = lefts[lid]
            lm = left[0]
            under = left[1]
            under.remove(c)
            left[2] = {}
            k = lm << W | rm
            self._ctx_keys.discard(k)
            if zl:
                self._zl_pairs.discard(k)
            c[4] = -1  # removed (it may still be named by the left group: see _neuron_order)
            if not under:
                del lefts[lid], self._left_ids[lm]
                key = left[4]
                b = self._by_key[key]
                b.remove(left)
                if not b:
                    del self._by_key[key]
            refs[rid] -= 1
            if not refs[rid]:
                del refs[rid]
                del self._right_ids[self._right_masks.pop(rid)]
        kept = order[n_drop:]
        for c in kept:
            c[5] = c[0]
        # neuron slots named by no left semi-context and not by the left group are free again
        used = self._lg
        for left in lefts.values():
            used |= left[0]
        used >>= W
        sc = self._slot_cids
        freed = set()
        for i, cid in enumerate(sc):
            if cid >= 0 and not used >> i & 1:
                sc[i] = -1
                freed.add(W + i)
        if freed:
            for s in sorted(freed):
                heapq.heappush(self._free, s)
            for c in kept:
                if c[6] in freed:
                    c[6] = -1

    # ------------------------------------------------------------------ range
    def _set_range(self, lo: float, hi: float) -> None:
        self._lo, self._hi = lo, hi
        span = hi - lo
        self._step = span / self._qmax if span > 0 else 1.0

    def _encode(self, x: float) -> tuple[int, list[int]]:
        """Sensor facts of reading x: clip, quantise to b bits, fact 2*i + bit (i from the MSB)."""
        lo, hi = self._lo, self._hi
        x = lo if x < lo else hi if x > hi else x
        q = int((x - lo) / self._step)
        code = self._codes.get(q)
        return code if code is not None else self._encode_q(q)

    def _encode_q(self, q: int) -> tuple[int, list[int]]:
        """(mask, sorted facts) of level q (clipped to the top level), cached per q as given."""
        b = self._bits
        v = min(q, self._qmax)
        facts = [2 * i + ((v >> (b - 1 - i)) & 1) for i in range(b)]
        code = self._codes[q] = (sum(1 << f for f in facts), facts)
        return code

    def encode(self, x: float) -> list[int]:
        """The sorted sensor facts of ``x`` under the current range (for inspection and tests)."""
        if self._lo is None:
            raise RuntimeError("cad: value range not known yet (still learning it)")
        return list(self._encode(float(x))[1])

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
        lo, hi = self._lo, self._hi
        x = lo if x < lo else hi if x > hi else x
        q = int((x - lo) / self._step)
        code = self._codes.get(q)
        R, rkeys = code if code is not None else self._encode_q(q)
        L = self._lg
        W = self._W

        new_flag = False
        zl_under = None
        order = None
        if L:
            if L in self._left_ids:
                lid0 = self._left_ids[L]
                left0 = self._lefts[lid0]
            else:
                order = self._neuron_order(self._lctx)
                lid0, left0 = self._left(L, order)
            if (L << W | R) not in self._ctx_keys:
                self._new_context(lid0, left0, R, self._right_id(R), 1)
                new_flag = True
            zl_under = left0[1]

        # selected / fired: contexts under the left semi-contexts contained in L
        nL = ~L
        nR = ~R
        n_sel = 0
        fired: list[list[int]] = []
        by_key = self._by_key
        for s in self._lkeys:
            cands = by_key.get(s)
            if cands is None:
                continue
            for left in cands:
                if left[0] & nL:
                    continue
                under = left[1]
                n_sel += len(under)
                if under is zl_under:  # the zero-level context (L, R) must not fire
                    n_sel -= 1
                    fired += [c for c in under if not c[7] & nR and c[7] != R]
                else:
                    fc = left[2]
                    fl = fc.get(R)
                    if fl is None:
                        if len(fc) >= 8:
                            fc.clear()
                        fl = fc[R] = [c for c in under if not c[7] & nR]
                    fired += fl
        for c in fired:
            c[0] += 1
        n_fired = len(fired)

        if new_flag:
            pairs = self._potential_pairs(L << W | R)

        # active neurons -> next left group
        if fired:
            nact = self._nact
            if n_fired > nact:
                if nact:
                    top = fired
                    top.sort(key=_COUNTER)
                    v = top[-nact][0]
                    if top[-nact - 1][0] == v:
                        # equal counters across the boundary: (counter, left id, right id) decides
                        # (contexts are distinct lists, so that order is total)
                        hi = bisect_right(top, v, len(top) - nact, key=_COUNTER)
                        tied = top[bisect_left(top, v, 0, hi, key=_COUNTER) : hi]
                        tied.sort()
                        fired = top[hi:]
                        fired += tied[len(fired) - nact :]
                    else:
                        fired = top[-nact:]
                else:
                    fired = []
            ns = [c[6] for c in fired]
            if -1 in ns:
                self._alloc_slots([c for c in fired if c[6] < 0])
                ns = [c[6] for c in fired]
            self._lg = R | sum(map(_BIT.__getitem__, ns))
            self._lkeys = rkeys + ns
            lctx = self._lctx
            self._lctx = fired
        else:
            self._lg = R
            self._lkeys = rkeys
            lctx = self._lctx
            self._lctx = []

        # store potential new contexts
        a1 = 0.0
        if new_flag:
            really_new = 1  # the zero-level context
            pairs.discard(L << W | R)  # it is stored already
            if pairs:
                new = pairs - self._ctx_keys
                if new:
                    fresh: dict[int, tuple[int, ...]] = {}
                    if len(new) > 1:
                        new = self._in_id_order(new, fresh)
                    if order is None:
                        order = self._neuron_order(lctx)
                    self._store(new, fresh, order)
                    really_new += len(new)
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

    def _store(
        self, new: list[int] | set[int], fresh: dict[int, tuple[int, ...]], order: list[list[int]]
    ) -> None:
        """Create the contexts of new pairs (not zero-level), in the given order; ``fresh``: fact
        tuples of new left masks known from sorting."""
        W, smask = self._W, self._smask
        left_ids, lefts = self._left_ids, self._lefts
        right_ids, refs, ctx = self._right_ids, self._right_refs, self._ctx
        cid = self._next_cid
        for k in new:
            rm = k & smask
            lm = k >> W
            lid = left_ids.get(lm)
            if lid is None:
                lid, left = self._left(lm, order)
                left[3] = fresh.get(lm)
            else:
                left = lefts[lid]
                left[2] = {}
            rid = right_ids.get(rm)
            if rid is None:
                rid = self._right_id(rm)
            left[1].append(c := [0, lid, rid, cid, 0, 0, -1, rm])
            ctx[cid] = c
            cid += 1
            refs[rid] += 1
        self._next_cid = cid
        self._ctx_keys.update(new)

    def _in_id_order(self, new: set[int], fresh: dict[int, tuple[int, ...]]) -> list[int]:
        """New pairs sorted by their sorted fact lists (left, right): the order ids are given in.

        The key is one tuple: left facts, -1, right facts (-1 is below every fact, so a shorter
        left sorts first, as a list would). A left keeps its facts once known; those of lefts
        not created yet go to ``fresh``.
        """
        W, smask, sf, sc = self._W, self._smask, self._sf, self._slot_cids
        left_ids, lefts = self._left_ids, self._lefts
        keyed = []
        for k in new:
            lm = k >> W
            lid = left_ids.get(lm)
            lf = fresh.get(lm) if lid is None else lefts[lid][3]
            if lf is None:
                x = lm >> W
                cids = []
                while x:
                    low = x & -x
                    cids.append(sc[low.bit_length() - 1])
                    x ^= low
                cids.sort()
                lf = sf[lm & smask] + tuple([NEURON_BASE + c for c in cids])
                if lid is None:
                    fresh[lm] = lf
                else:
                    lefts[lid][3] = lf
            keyed.append((lf + _SEP + sf[k & smask], k))
        keyed.sort()
        return [k for _, k in keyed]

    def _potential_pairs(self, LR: int) -> set[int]:
        """Potential new contexts of a step whose zero-level context ``LR`` (pair L << W | R) is new.

        Every zero-level context (S, r) gives the pair (S & L, r & R) (as pairs: ``(S << W | r) &
        LR``) when S & L is not empty and has at most max_left_semi_contexts_length facts, r & R
        is not empty and (S, r) is not fully present (S in L and r in R). That is DETECTORS.md's
        partial match of zero-level contexts, with the choice "partly present left side" above:
        a left sharing a neuron with L, or only sensor facts, or fully present gives its pairs by
        the same rule.
        """
        W, smask, maxlen = self._W, self._smask, self._maxlen
        pairs: set[int] = set()
        add = pairs.add
        for k in self._zl_pairs:
            p = k & LR
            if p > smask and p != k and p & smask and (p >> W).bit_count() <= maxlen:
                add(p)
        return pairs

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

        Layout 2: semi-contexts as masks (ints) over the slots, ``slot_cids`` naming the context
        of each neuron slot (-1: free); the contexts as parallel integer columns (flat lists
        pickle and unpickle in C).
        """
        cols = zip(*self._ctx.values(), strict=True) if self._ctx else repeat((), len(_CTX_KEYS))
        return {
            "version": _STATE_VERSION,
            "lo": self._lo,
            "hi": self._hi,
            "learn": list(self._learn),
            "t": self._t,
            "last_alarm": self._last_alarm,
            "left_group": self._facts_of(self._lg),
            "next_ids": [self._next_lid, self._next_rid, self._next_cid],
            "sensor_slots": self._W,
            "slot_cids": list(self._slot_cids),
            "left_ids": list(self._lefts),
            "left_masks": list(map(_MASK, self._lefts.values())),
            "left_keys": list(map(_KEY, self._lefts.values())),
            "right_ids": list(self._right_masks),
            "right_masks": list(self._right_masks.values()),
            **dict(zip(_CTX_KEYS, map(list, cols), strict=False)),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore from ``get_state`` output (layout 2, or layout 1 of the previous cores)."""
        version = state.get("version")
        if version not in (1, _STATE_VERSION):
            raise ValueError(f"cad: unsupported state version {version!r}")
        self._reset_memory()
        lo, hi = state["lo"], state["hi"]
        self._lo = self._hi = None
        if lo is not None:
            self._set_range(float(lo), float(hi))
        self._learn = [float(v) for v in state["learn"]]
        self._t = int(state["t"])
        self._last_alarm = int(state["last_alarm"])
        if version == 1:
            self._set_state_1(state)
        else:
            self._set_state_2(state)
        self._next_lid, self._next_rid, self._next_cid = (int(v) for v in state["next_ids"])

    def _set_left_group(self, facts: list[int], slot_of: dict[int, int]) -> None:
        sens = [f for f in facts if f < NEURON_BASE]
        try:
            nslots = [slot_of[f - NEURON_BASE] for f in facts if f >= NEURON_BASE]
        except KeyError as e:
            raise ValueError(f"cad: state's left group names context {e} without a slot") from None
        self._lkeys = sens + nslots
        self._lg = sum(map(_BIT.__getitem__, self._lkeys))
        ctx = self._ctx
        self._lctx = [ctx[f - NEURON_BASE] for f in facts if f >= NEURON_BASE and f - NEURON_BASE in ctx]

    def _set_state_2(self, state: dict[str, Any]) -> None:
        W = self._W
        if state["sensor_slots"] != W:
            raise ValueError(f"cad: state has {state['sensor_slots']} sensor slots, this core {W}")
        # (the lists of a state are only read, never kept: the caller may reuse the state)
        sc = self._slot_cids = list(state["slot_cids"])
        _bit_table(W + len(sc) + 1)
        slot_range = range(W, W + len(sc))
        self._free = list(compress(slot_range, map(lt, sc, repeat(0))))  # ascending: a heap
        slot_of = dict(zip(sc, slot_range, strict=True))
        slot_of.pop(-1, None)
        lids, masks = state["left_ids"], state["left_masks"]
        rids, rmasks = state["right_ids"], state["right_masks"]
        self._right_ids = dict(zip(rmasks, rids, strict=True))
        self._right_masks = dict(zip(rids, rmasks, strict=True))
        cnt, c_left, c_right, cids, c_zl, snap = map(state.__getitem__, _CTX_KEYS)
        try:
            c_rm = list(map(self._right_masks.__getitem__, c_right))
        except KeyError as e:
            raise ValueError(
                f"cad: state has a context with right semi-context {e}, which it lacks"
            ) from None
        slots = map(slot_of.get, cids, repeat(-1))
        ctxs = list(map(list, zip(cnt, c_left, c_right, cids, c_zl, snap, slots, c_rm, strict=True)))
        self._ctx = dict(zip(cids, ctxs, strict=True))
        self._right_refs = dict.fromkeys(rids, 0)
        self._right_refs.update(Counter(c_right))
        keys = state["left_keys"]
        if any(map(not_, map(and_, masks, map(_BIT.__getitem__, keys)))):
            raise ValueError("cad: state names a key slot outside its left semi-context")
        objs = [[m, [], {}, None, k] for m, k in zip(masks, keys, strict=True)]
        self._lefts = dict(zip(lids, objs, strict=True))
        self._left_ids = dict(zip(masks, lids, strict=True))
        try:
            under_of = dict(zip(lids, map(itemgetter(1), objs), strict=True))
            _consume(map(list.append, map(under_of.__getitem__, c_left), ctxs))
            shifted = dict(zip(lids, map(lshift, masks, repeat(W)), strict=True))
            pairs = list(map(or_, map(shifted.__getitem__, c_left), c_rm))
        except KeyError as e:
            raise ValueError(
                f"cad: state has a context under left semi-context {e}, which it lacks"
            ) from None
        self._ctx_keys = set(pairs)
        self._zl_pairs = set(compress(pairs, c_zl))
        by_key = self._by_key
        for key, left in zip(keys, objs, strict=True):
            b = by_key.get(key)
            if b is None:
                by_key[key] = [left]
            else:
                b.append(left)
        self._set_left_group(list(map(int, state["left_group"])), slot_of)

    def _set_state_1(self, state: dict[str, Any]) -> None:
        """Layout 1 (sorted fact lists; ``left_keys`` optional and not needed): build every index."""
        W = self._W
        lids = list(map(int, state["left_ids"]))
        facts = [list(map(int, f)) for f in state["left_facts"]]
        if len(facts) != len(lids):
            raise ValueError("cad: state has left_ids and left_facts of different lengths")
        group = list(map(int, state["left_group"]))
        named = sorted({f - NEURON_BASE for fs in [*facts, group] for f in fs if f >= NEURON_BASE})
        self._slot_cids = named
        _bit_table(W + len(named) + 1)
        slot_of = dict(zip(named, range(W, W + len(named)), strict=True))
        for fs in [*facts, group]:
            for f in fs:
                if f < 0 or W <= f < NEURON_BASE:
                    raise ValueError(f"cad: state names fact {f}, not a sensor fact of {self._bits} bits")

        def mask(fs: list[int]) -> int:
            return sum(1 << (f if f < NEURON_BASE else slot_of[f - NEURON_BASE]) for f in set(fs))

        masks = list(map(mask, facts))
        lefts = {}
        for lid, m in zip(lids, masks, strict=True):
            self._left_ids[m] = lid
            lefts[lid] = [m, [], {}, None, m.bit_length() - 1]
        rids = list(map(int, state["right_ids"]))
        rmasks = [mask(f) for f in state["right_facts"]]
        self._right_ids = dict(zip(rmasks, rids, strict=True))
        rmask_of = self._right_masks = dict(zip(rids, rmasks, strict=True))
        self._right_refs = dict.fromkeys(rids, 0)
        cols = [
            list(map(int, state[k]))
            for k in ("ctx_count", "ctx_left", "ctx_right", "ctx_ids", "ctx_sweep_count")
        ]
        zls = [1 if z else 0 for z in state["ctx_zero_level"]]
        for cnt, lid, rid, cid, zl, snap in zip(
            cols[0], cols[1], cols[2], cols[3], zls, cols[4], strict=True
        ):
            left = lefts[lid]
            rm = rmask_of[rid]
            left[1].append(c := [cnt, lid, rid, cid, zl, snap, slot_of.get(cid, -1), rm])
            self._ctx[cid] = c
            self._ctx_keys.add(left[0] << W | rm)
            self._right_refs[rid] += 1
            if zl:
                self._zl_pairs.add(left[0] << W | rm)
        # the lefts in the order layout 2 groups contexts in (creation order of the lefts)
        self._lefts = dict(sorted(lefts.items()))
        keys = state.get("left_keys")
        if keys is not None:  # written by the core of layout 1 (speed only): checked, not used
            for lid, fs, key in zip(lids, facts, keys, strict=True):
                if int(key) not in fs:
                    raise ValueError(f"cad: state names key fact {key} outside left semi-context {lid}")
        for left in self._lefts.values():
            self._by_key.setdefault(left[4], []).append(left)
        self._set_left_group(group, slot_of)
