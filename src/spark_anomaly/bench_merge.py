"""Merge a partial benchmark run (``bench.py --only ...``) into the recorded figures.

A full ``make bench`` takes about an hour; re-measuring only what a change touched takes minutes.
The figures behind ``docs/benchmarks-perf.md`` are kept beside it as JSON, so a partial run
replaces exactly the measurements it made and keeps every other one, and the page says which run
produced which rows. A run without ``--only`` replaces everything.
"""

from __future__ import annotations

from typing import Any


def run_record(meta: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """What the page needs to cite one run: its command, mode, date, duration and its rows."""
    return {
        "command": meta["command"],
        "mode": meta["mode"],
        "date": meta["date"],
        "total_s": meta["total_s"],
        "complete": meta.get("complete", True),
        "cpu": (meta.get("machine") or {}).get("cpu"),
        "keys": list(keys),
    }


def runs_of(meta: dict[str, Any], keys: list[str]) -> list[dict[str, Any]]:
    """The runs behind recorded figures; a record made before runs were listed is one run of all."""
    return list(meta["runs"]) if meta.get("runs") else [run_record(meta, keys)]


def merge(
    recorded: dict[str, Any] | None,
    meta: dict[str, Any],
    results: dict[str, dict],
    groups: tuple[str, ...] = (),
) -> tuple[dict[str, Any], dict[str, dict]]:
    """``(meta, results)`` of the recorded figures with this run's ``results`` laid over them.

    ``recorded`` is ``{"meta", "results"}`` as written before (``None``: nothing recorded, or a full
    run). ``groups`` are key prefixes this run re-measured as a whole (``"train-"``): recorded rows
    under them go even where this run has no row of that name, so a renamed or dropped size leaves
    no stale row behind. Older runs keep only the rows still theirs; runs left with none are dropped.
    """
    new_run = run_record(meta, list(results))
    if not recorded:
        return {**meta, "runs": [new_run]}, dict(results)

    def replaced(key: str) -> bool:
        return key in results or key.startswith(groups)

    old_results = recorded["results"]
    merged = {**{k: v for k, v in old_results.items() if not replaced(k)}, **results}
    runs = []
    for run in runs_of(recorded["meta"], list(old_results)):
        kept = [k for k in run["keys"] if not replaced(k)]
        if kept:
            runs.append({**run, "keys": kept})
    return {**meta, "runs": [*runs, new_run]}, merged


def command_line(meta: dict[str, Any]) -> str:
    """The page's "Command:" paragraph: one run, or each merged run with the rows it produced."""
    runs = meta.get("runs") or [run_record(meta, [])]
    if len(runs) == 1:
        r = runs[0]
        return (
            f"Command: `{r['command']}` ({r['mode']} mode), run {r['date']}, total {r['total_s']:.0f} s"
            + (
                "."
                if r.get("complete", True)
                else " so far (**partial run**: the figures below are all it got to)."
            )
        )
    # Rows of runs on different processors are not comparable by wall rate: name each run's
    # (the same cloud machine type is not always the same processor from one day to the next).
    cpus = {r.get("cpu") for r in runs}
    parts = [
        f"`{r['command']}` ({r['mode']} mode), run {r['date']}"
        + ("" if len(cpus) == 1 else f" on {r.get('cpu') or 'a processor not recorded'}")
        + ("" if r.get("total_s") is None else f", total {r['total_s']:.0f} s")
        + ("" if r.get("complete", True) else " (**partial run**)")
        + ": "
        + ", ".join(f"`{k}`" for k in r["keys"])
        for r in runs
    ]
    return (
        "Commands (the rows below come from these runs, newest last; each lists its rows): "
        + "; ".join(f"({i}) {p}" for i, p in enumerate(parts, 1))
        + "."
    )
