"""A partial benchmark run replaces exactly what it re-measured and cites itself for those rows."""

from __future__ import annotations

from spark_anomaly.bench_merge import command_line, merge


def _meta(command: str, date: str) -> dict:
    return {"command": command, "mode": "full", "date": date, "total_s": 60.0, "complete": True}


def _row(name: str, wall_s: float) -> dict:
    return {"name": name, "events": 10, "wall_s": wall_s}


def test_first_run_is_the_only_run() -> None:
    meta, results = merge(None, _meta("make bench", "d1"), {"noop": _row("noop", 1.0)})
    assert results == {"noop": _row("noop", 1.0)}
    assert [r["keys"] for r in meta["runs"]] == [["noop"]]
    assert command_line(meta) == "Command: `make bench` (full mode), run d1, total 60 s."


def test_partial_run_replaces_its_rows_and_keeps_the_others() -> None:
    recorded = {
        "meta": _meta("make bench", "d1"),  # written before runs were listed: one run of every row
        "results": {"noop": _row("noop", 1.0), "cad": _row("cad", 9.0), "ema": _row("ema", 2.0)},
    }
    meta, results = merge(recorded, _meta("make bench --only stateful", "d2"), {"cad": _row("cad", 3.0)})
    assert results == {"noop": _row("noop", 1.0), "cad": _row("cad", 3.0), "ema": _row("ema", 2.0)}
    assert [(r["date"], r["keys"]) for r in meta["runs"]] == [("d1", ["noop", "ema"]), ("d2", ["cad"])]
    line = command_line(meta)
    assert "(1) `make bench` (full mode), run d1, total 60 s: `noop`, `ema`" in line
    assert "(2) `make bench --only stateful` (full mode), run d2, total 60 s: `cad`" in line


def test_a_run_left_with_no_rows_is_dropped_and_groups_replace_whole_families() -> None:
    recorded = {
        "meta": {
            **_meta("make bench", "d2"),
            "runs": [
                {**_meta("make bench", "d1"), "keys": ["train-inc-10M", "noop"]},
                {**_meta("make bench --only noop", "d2"), "keys": ["zscore"]},
            ],
        },
        "results": {
            "train-inc-10M": _row("inc", 5.0),
            "noop": _row("noop", 1.0),
            "zscore": _row("zscore", 4.0),
        },
    }
    new = {"zscore": _row("zscore", 3.5), "train-inc-10M-5M": _row("inc 5M", 6.0)}
    meta, results = merge(recorded, _meta("make bench --only zscore,train-delta", "d3"), new, ("train-",))
    # the old size under the re-run family is gone although this run has no row of that name
    assert set(results) == {"noop", "zscore", "train-inc-10M-5M"}
    assert results["zscore"] == _row("zscore", 3.5)
    assert [(r["date"], r["keys"]) for r in meta["runs"]] == [
        ("d1", ["noop"]),
        ("d3", ["zscore", "train-inc-10M-5M"]),
    ]


def test_runs_on_different_processors_name_theirs() -> None:
    def on(cpu: str | None, command: str, date: str) -> dict:
        return {**_meta(command, date), **({"machine": {"cpu": cpu}} if cpu else {})}

    recorded = {"meta": on(None, "make bench", "d1"), "results": {"noop": _row("noop", 1.0)}}
    meta, _ = merge(recorded, on("AMD EPYC", "make bench --only cad", "d2"), {"cad": _row("cad", 3.0)})
    line = command_line(meta)
    assert "run d1 on a processor not recorded, total 60 s: `noop`" in line
    assert "run d2 on AMD EPYC, total 60 s: `cad`" in line
    same = {"meta": on("AMD EPYC", "make bench", "d1"), "results": {"noop": _row("noop", 1.0)}}
    meta, _ = merge(same, on("AMD EPYC", "make bench --only cad", "d2"), {"cad": _row("cad", 3.0)})
    assert " on " not in command_line(meta)  # one processor: the Machine line says it
