"""The selection protocol: is a family of variants better than the baseline beyond the tune files?

Choosing among variants on the 22 tune files over-fits them (round 1: 77.4 on tune, 60.4 on
test), so a family is judged by cross-validation inside tune (docs/benchmarks-quality.md, rounds
2 and 7):

* 36 splits of tune: 6 leave-one-category-out (one split per category with a scorable window,
  that category held out) and 30 category-balanced halves (numpy seed 7);
* on each split the best variant, baseline included, is chosen by its NAB standard score on the
  choosing part (threshold optimised there; a tie goes to the baseline), then the chosen variant
  and the baseline are scored on the held part at their alarms (threshold 1 = alarm_score);
* gain = chosen minus baseline on the held part; a family is accepted at a mean gain of at least
  1 point that is positive in at least 65 % of the splits.

Pure numpy over per-file score arrays; scoring is the product's NAB scorer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from . import nab_scorer as ns

MIN_GAIN = 1.0  # points of NAB standard score, mean over the splits
MIN_WINS = 0.65  # fraction of the splits with a positive gain
SEED = 7
HALVES = 30
HELD_THRESHOLD = 1.0  # the held part is scored at the alarms (suppression.alarm_score 1)
STANDARD = ns.PROFILES["standard"]

Outputs = Mapping[str, np.ndarray]  # file key -> final score per row


@dataclass(frozen=True)
class Split:
    kind: str  # "loco" (leave one category out) or "halves"
    name: str  # the held category, or "half <i>"
    choose: tuple[str, ...]
    held: tuple[str, ...]


def categories(keys: Iterable[str]) -> dict[str, list[str]]:
    """category (the key's prefix before '/') -> its keys, in the given order."""
    out: dict[str, list[str]] = {}
    for k in keys:
        out.setdefault(k.split("/", 1)[0], []).append(k)
    return out


def make_splits(
    keys: Iterable[str], with_windows: Iterable[str], seed: int = SEED, n_halves: int = HALVES
) -> list[Split]:
    """The protocol's splits of ``keys`` (sorted first, so the order they come in does not matter).

    ``with_windows``: the keys with at least one scorable window; a category without any cannot be
    scored held out, so it gets no leave-one-category-out split. Each half takes, per category,
    half of its files at random (an odd one out goes to either side by a coin), so every category
    is on both sides where it can be.
    """
    keys = sorted(keys)
    windowed = set(with_windows)
    bycat = categories(keys)
    splits = []
    for c in sorted(bycat):
        if any(k in windowed for k in bycat[c]):
            held = bycat[c]
            splits.append(Split("loco", c, tuple(k for k in keys if k not in held), tuple(held)))
    rng = np.random.default_rng(seed)
    for i in range(n_halves):
        a: list[str] = []
        b: list[str] = []
        for c in sorted(bycat):
            fs = list(bycat[c])
            rng.shuffle(fs)
            h = len(fs) // 2
            if len(fs) % 2:
                h += int(rng.integers(0, 2))
            a += fs[:h]
            b += fs[h:]
        splits.append(Split("halves", f"half {i}", tuple(a), tuple(b)))
    return splits


def scoring_rows(n_rows: Mapping[str, int], windows: Mapping[str, Sequence[tuple[int, int]]]) -> dict:
    """key -> the scorer's rows (probation, window values) with no scores yet: made once per file."""
    return {k: ns.prepare(k, np.zeros(n), [tuple(w) for w in windows[k]]) for k, n in n_rows.items()}


def _corpus(outs: Outputs, keys: Iterable[str], rows: Mapping[str, ns.ScoringRows]) -> list[ns.ScoringRows]:
    corpus = []
    for k in keys:
        r = rows[k]
        corpus.append(ns.ScoringRows(k, outs[k][r.offset :], r.value, r.window, r.n_windows, r.offset))
    return corpus


def standard_score(
    outs: Outputs,
    keys: Iterable[str],
    rows: Mapping[str, ns.ScoringRows],
    threshold: float | None = None,
) -> tuple[float, float]:
    """(normalised NAB standard score, threshold) of ``keys``: at ``threshold``, else optimised."""
    corpus = _corpus(outs, keys, rows)
    if threshold is None:
        threshold, raw = ns.optimise_threshold(corpus, STANDARD)
    else:
        raw = sum(ns.score_series(c, STANDARD, threshold).raw for c in corpus)
    null, perfect = ns.null_and_perfect(corpus, STANDARD)
    return ns.normalise(raw, null, perfect), threshold


def per_file(
    outs: Outputs, keys: Iterable[str], rows: Mapping[str, ns.ScoringRows], threshold: float
) -> dict[str, ns.SeriesScore]:
    """Each file's standard raw score, detected windows and false alarms at ``threshold``."""
    return {c.key: ns.score_series(c, STANDARD, threshold) for c in _corpus(outs, keys, rows)}


@dataclass(frozen=True)
class SplitResult:
    split: Split
    chosen: str
    gain: float  # chosen minus baseline on the held part


@dataclass(frozen=True)
class KindResult:
    """The splits of one kind: mean gain, how many gained, out of how many."""

    gain: float
    wins: int
    n: int


@dataclass(frozen=True)
class FamilyResult:
    gain: float  # mean over all splits
    win: float  # fraction of the splits with a positive gain
    loco: KindResult
    halves: KindResult
    splits: tuple[SplitResult, ...]

    @property
    def accepted(self) -> bool:
        return self.gain >= MIN_GAIN and self.win >= MIN_WINS

    def summary(self) -> str:
        return (
            f"gain {self.gain:+.2f} win {100 * self.win:.0f}% | LOCO {self.loco.gain:+.2f} "
            f"({self.loco.wins}/{self.loco.n}) halves {self.halves.gain:+.2f} "
            f"({self.halves.wins}/{self.halves.n})"
        )


def _kind(results: list[SplitResult], kind: str) -> KindResult:
    g = np.array([r.gain for r in results if r.split.kind == kind])
    return KindResult(float(g.mean()) if g.size else float("nan"), int((g > 0).sum()), int(g.size))


def evaluate_family(
    variants: Mapping[str, Outputs],
    rows: Mapping[str, ns.ScoringRows],
    splits: Sequence[Split],
    baseline: str = "base",
    held_threshold: float | None = HELD_THRESHOLD,
) -> FamilyResult:
    """Run the protocol: ``variants`` maps name -> file key -> final scores, baseline included.

    Ties on the choosing part go to the baseline (then to the earlier variant), so a family whose
    variants only equal the baseline gains exactly 0 and wins no split. ``held_threshold`` None
    scores the held part at its own optimised threshold instead (not the documented protocol).
    """
    if baseline not in variants:
        raise ValueError(f"the family must include its baseline {baseline!r}")
    names = list(variants)
    results = []
    for sp in splits:
        sc = {n: standard_score(variants[n], sp.choose, rows)[0] for n in names}
        best = max(names, key=lambda n: (sc[n], n == baseline))
        g_best = standard_score(variants[best], sp.held, rows, held_threshold)[0]
        g_base = standard_score(variants[baseline], sp.held, rows, held_threshold)[0]
        results.append(SplitResult(sp, best, g_best - g_base))
    g = np.array([r.gain for r in results])
    return FamilyResult(
        float(g.mean()),
        float((g > 0).mean()),
        _kind(results, "loco"),
        _kind(results, "halves"),
        tuple(results),
    )
