"""The training table's incremental fit: fixed + per-row cost from runs of several sizes."""

import pytest

from spark_anomaly import bench_report as R


def _run(name: str, events: int, wall: float, cpu: float, new: int | None = None, jobs: int = 16) -> dict:
    extra = {"spark_jobs": jobs} if new is None else {"spark_jobs": jobs, "new_records": new}
    return {
        "name": name, "events": events, "wall_s": wall, "cpu_s": cpu, "load_before": 1.0,
        "load_after": 2.0, "wall_rps": events / wall, "cpu_rps": events / cpu, "extra": extra,
    }  # fmt: skip


def test_fit_line_recovers_intercept_and_slope():
    a, b = R.fit_line([0, 1e6, 5e6], [2.0 + 0 * 1e-6, 2.0 + 1e6 * 1e-6, 2.0 + 5e6 * 1e-6])
    assert a == pytest.approx(2.0) and b == pytest.approx(1e-6)
    assert R.fit_line([1e6], [3.0]) is None and R.fit_line([1e6, 1e6], [3.0, 4.0]) is None


def test_training_table_renders_incremental_runs_and_their_fit():
    results = {
        "train-full2-10M": _run("train.run full, Delta 10M, 2nd run", 10_000_000, 5.0, 8.0),
        "train-inc1st-0-10M": _run("train.run incremental, +0 on 10M, 1st", 0, 9.0, 9.0, new=0, jobs=99),
        "train-inc-0-10M": _run("train.run incremental, +0 on 10M", 0, 2.0, 3.0, new=0),
        "train-inc-1M-10M": _run("train.run incremental, +1M on 10M", 1_000_000, 2.5, 4.0, new=1_000_000),
        "train-inc-5M-10M": _run("train.run incremental, +5M on 10M", 5_000_000, 4.5, 8.0, new=5_000_000),
    }
    text = R.render({}, results)
    assert "| train.run incremental, +0 on 10M | 0 |" in text
    fit = next(line for line in text.splitlines() if line.startswith("| 10M | +0, +1M, +5M |"))
    cells = [c.strip() for c in fit.strip("|").split("|")]
    assert cells[2:5] == ["2.00", "0.50", "2,000k"]  # fixed s, s per 1M, marginal rows/s
    assert cells[5:9] == ["3.00", "1.00", "16", "0.40×"]


def test_state_table_has_a_row_per_reading_count_and_reads_older_records():
    new = {"ema": {"bytes_per_series": 342, "readings_seen": 2000, "readings": [2000, 8000], "bytes": [342, 342]},
           "recommended": {"bytes_per_series": 84069, "readings_seen": 2000, "readings": [2000, 8000],
                           "bytes": [84069, 149588]}}  # fmt: skip
    text = R.render({}, {"state": {"extra": new}})
    assert "| bytes per series after 2,000 readings | 342 | 84,069 |" in text
    assert "| bytes per series after 8,000 readings | 342 | 149,588 |" in text
    old = {"ema": {"bytes_per_series": 342, "readings_seen": 2000}}  # recorded before the second count
    text = R.render({}, {"state": {"extra": old}})
    assert "| bytes per series after 2,000 readings | 342 |" in text and "8,000" not in text


def test_linear_table_checks_rows_per_event_and_fits_cpu_against_events():
    def run(events: int, cpu: float, rows: int, ms: list[int]) -> dict:
        r = _run(f"zscore path over the last {events:,} events", events, cpu / 2, cpu)
        r.update(batches=len(ms), median_rps=None)
        r["extra"] = {"batch_events": 1_000_000, "batch_ms": ms, "sink_rows": rows}
        return r

    results = {
        "linear-4000000": run(4_000_000, 10.0, 8_000_000, [9000, 2000, 2100, 2200]),
        "linear-1000000": run(1_000_000, 4.0, 1_999_999, [9000]),
    }
    lines = R.render({}, results).splitlines()
    rows = [line for line in lines if line.startswith("| 1,000,000 |") or line.startswith("| 4,000,000 |")]
    assert [r.split("|")[1].strip() for r in rows] == ["1,000,000", "4,000,000"]  # smallest first
    small, large = ([c.strip() for c in r.strip("|").split("|")] for r in rows)
    assert small[7] == "1,999,999 (≠ 2 per event)" and small[8] == "–"  # one batch: no halves
    assert large[7] == "8,000,000"
    assert large[8] == "2,000 → 2,150 (+100)"  # first batch left out; slope ms per batch
    assert large[9] == "1.60×"  # 400k against 250k events per CPU-s
    assert "CPU-s = 2.0 fixed + 2.00 per 1M events" in "\n".join(lines)


def test_scale_table_shows_the_broadcast_built_and_reads_older_records():
    def run(series: int, extra: dict) -> dict:
        r = _run(f"zscore path, model of {series:,} series", 1_000_000, 10.0, 20.0)
        r["median_rps"] = 1e5
        r["extra"] = {
            "model_rows": series,
            "est_broadcast_bytes": 2**20,
            "join": "BroadcastHashJoin",
            **extra,
        }
        return r

    ms = {"collectTime": 287, "buildTime": 447, "broadcastTime": 189}
    results = {
        "scale-1000": run(1000, {}),  # recorded before the broadcast was measured
        "scale-1000000": run(1_000_000, {"broadcast_bytes": 200 * 2**20, "broadcast_ms": ms}),
    }
    text = R.render({}, results)
    assert "| 1,000 | 1,000,000 | 10.0 | 100k | 100k | 50k | 1.00 | – | – | BroadcastHashJoin |" in text
    assert "| 1.00 | 200.00 | 923 (287 / 447 / 189) | BroadcastHashJoin |" in text


def test_held_table_groups_batches_by_the_share_of_series_held():
    # 9 batches of 100 events; 800 series in all, 200 new per batch for four batches, then none;
    # after the first batch (5 s: left out) each takes 100 ms + 0.05 ms per series held
    held = [0, 200, 400, 600, 800, 800, 800, 800, 800, 800]
    ms = [5000, *[100 + h // 20 for h in held[1:-1]]]
    r = _run("detect stateful range", 900, 10.0, 20.0)
    r["extra"] = {
        "detector": "range", "sensors": 400, "batch_events": 100, "batch_ms": ms, "batch_rows": [100] * 9,
        "held": held, "sink_rows": 900, "state_buckets": 32,
    }  # fmt: skip
    groups = R.held_bins(held, ms, [100] * 9)
    assert [(g[0], g[1]) for g in groups] == [
        ("25%–50%", [200]),  # the first batch (held 0) is left out
        ("50%–75%", [400]),
        ("75%–100%", [600]),
        ("all", [800] * 5),
    ]
    lines = R.render({}, {"held-range": r}).splitlines()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("| range |")]
    assert [row[1:6] for row in rows] == [
        ["200", "25%–50%", "1", "110", "909"],
        ["400", "50%–75%", "1", "120", "833"],
        ["600", "75%–100%", "1", "130", "769"],
        ["800", "all", "5", "140", "714"],
    ]
    assert [row[6] for row in rows] == ["1.00×", "1.09×", "1.18×", "1.27×"]
    text = "\n".join(lines)
    assert "800 series held at the end" in text
    assert "batch ms = 100 +5,000.0 per 100k series held" in text
    assert "state written" not in text  # recorded before the runs kept it
    r["extra"]["state_bytes"] = [10**6] * 4 + [2 * 10**6, 2 * 10**6, 3 * 10**6, 2 * 10**6, None]
    text = R.render({}, {"held-range": r})
    assert (
        "state written a batch with all held 2.0 MB" in text
    )  # batches 5-9, the one without a count left out
