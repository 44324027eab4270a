"""What `make demo` shows at the end: injected anomalies vs what each detector flagged, plus a chart.

``python -m spark_anomaly.demo_report report --config conf/demo.yaml --truth var/demo/truth.jsonl``
reads the Delta sink and dead-letter table (Spark) and the live run's ground truth (JSON lines
written by ``scripts/produce.py live --truth``), prints one table per detector and writes a PNG.
``python -m spark_anomaly.demo_report wait --config conf/demo.yaml`` blocks (bounded) until the
detect job's queries have committed everything the topic holds.

Definitions (``match`` is pure pandas, unit-tested without Spark):

- an injected anomaly (one ground-truth line, kind != malformed) is *detected* by a detector when
  that detector flags at least one reading of the same (sensor_id, metric) with
  ``start_ts <= ts <= end_ts + tolerance_ms``;
- an *alarm* is a run of consecutive flagged readings of one series (for one detector): readings
  are ordered by ts and a run ends at the first reading that is not flagged. An alarm is *true*
  when its [first ts, last ts] overlaps some injected span [start_ts, end_ts + tolerance_ms] of
  the same series; precision = true alarms / all alarms. Recall = detected / injected.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

SERIES = ["sensor_id", "metric"]


@dataclass
class DetectorResult:
    detector: str
    by_kind: pd.DataFrame  # index kind (+ "total"): injected, detected, recall
    alarms: int
    true_alarms: int
    flagged_readings: int
    flagged_in_spans: int
    readings: int
    missed: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)  # truth rows not detected

    @property
    def recall(self) -> float:
        tot = self.by_kind.loc["total"]
        return float(tot["detected"] / tot["injected"]) if tot["injected"] else float("nan")

    @property
    def precision(self) -> float:
        return self.true_alarms / self.alarms if self.alarms else float("nan")


def load_truth(path: str | os.PathLike) -> pd.DataFrame:
    """Ground-truth JSON lines as a frame (all kinds, malformed included)."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    cols = ["kind", "sensor_id", "metric", "start_ts", "end_ts", "n", "reason", "payload"]
    df = pd.DataFrame(rows)
    for c in cols:
        if c not in df.columns:
            df[c] = None
    return df


def alarm_events(scored: pd.DataFrame) -> pd.DataFrame:
    """Runs of consecutive flagged readings per (detector, sensor_id, metric): one row per alarm
    with its first and last ts. ``scored`` needs detector, sensor_id, metric, ts, is_anomaly."""
    cols = ["detector", *SERIES, "first_ts", "last_ts", "readings"]
    if scored.empty:
        return pd.DataFrame(columns=cols)
    df = scored.sort_values(["detector", *SERIES, "ts"], kind="stable", ignore_index=True)
    flag = df["is_anomaly"].fillna(False).astype(bool)
    same_series = (df[["detector", *SERIES]] == df[["detector", *SERIES]].shift()).all(axis=1)
    prev_flag = flag.shift(fill_value=False).astype(bool) & same_series
    start = flag & ~prev_flag
    df["event"] = start.cumsum()
    ev = (
        df[flag]
        .groupby("event")
        .agg(
            detector=("detector", "first"),
            sensor_id=("sensor_id", "first"),
            metric=("metric", "first"),
            first_ts=("ts", "min"),
            last_ts=("ts", "max"),
            readings=("ts", "size"),
        )
    )
    return ev.reset_index(drop=True)[cols]


def _overlaps(a: pd.DataFrame, spans: pd.DataFrame, a_lo: str, a_hi: str) -> pd.Series:
    """For each row of ``a``: does [a_lo, a_hi] overlap a span [lo, hi] of the same series?"""
    if a.empty:
        return pd.Series([], dtype=bool)
    if spans.empty:
        return pd.Series(False, index=a.index)
    sp = spans[[*SERIES, "lo", "hi"]].rename(columns={"lo": "_span_lo", "hi": "_span_hi"})
    m = a[[*SERIES, a_lo, a_hi]].rename_axis("_row").reset_index().merge(sp, on=SERIES, how="left")
    hit = (m[a_lo] <= m["_span_hi"]) & (m[a_hi] >= m["_span_lo"])
    return hit.groupby(m["_row"]).any().reindex(a.index, fill_value=False)


def match(scored: pd.DataFrame, truth: pd.DataFrame, tolerance_ms: int = 0) -> dict[str, DetectorResult]:
    """Recall per anomaly kind and alarm precision, per detector (definitions in the module doc).

    ``scored``: detector, sensor_id, metric, ts, is_anomaly (one row per scored reading).
    ``truth``: kind, sensor_id, metric, start_ts, end_ts (malformed rows are ignored here).
    """
    inj = truth[truth["kind"] != "malformed"].reset_index(drop=True).copy()
    inj["lo"] = inj["start_ts"].astype("int64")
    inj["hi"] = inj["end_ts"].astype("int64") + int(tolerance_ms)
    kinds = sorted(inj["kind"].unique())
    events = alarm_events(scored)
    out: dict[str, DetectorResult] = {}
    for det in sorted(scored["detector"].unique()):
        s = scored[scored["detector"] == det]
        flagged = s[s["is_anomaly"].fillna(False).astype(bool)].reset_index(drop=True)
        flagged = flagged.assign(lo_ts=flagged["ts"], hi_ts=flagged["ts"])
        # detected: some flagged reading of the series inside [lo, hi]
        spans_as_rows = inj.assign(a_lo=inj["lo"], a_hi=inj["hi"])
        pts = flagged[[*SERIES, "ts"]].rename(columns={"ts": "lo"}).assign(hi=lambda d: d["lo"])
        detected = _overlaps(spans_as_rows, pts, "a_lo", "a_hi")
        in_span = _overlaps(flagged, inj, "lo_ts", "hi_ts")
        ev = events[events["detector"] == det].reset_index(drop=True)
        true_ev = _overlaps(ev, inj, "first_ts", "last_ts")
        rows = []
        for k in kinds:
            sel = inj["kind"] == k
            n, d = int(sel.sum()), int(detected[sel].sum())
            rows.append((k, n, d))
        rows.append(("total", len(inj), int(detected.sum())))
        by_kind = pd.DataFrame(rows, columns=["kind", "injected", "detected"]).set_index("kind")
        by_kind["recall"] = by_kind["detected"] / by_kind["injected"].where(by_kind["injected"] > 0)
        out[det] = DetectorResult(
            detector=det,
            by_kind=by_kind,
            alarms=len(ev),
            true_alarms=int(true_ev.sum()),
            flagged_readings=len(flagged),
            flagged_in_spans=int(in_span.sum()),
            readings=len(s),
            missed=inj[~detected.to_numpy()] if len(inj) else inj,
        )
    return out


def dead_letter_summary(dead: pd.DataFrame, truth: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Dead letters by reason (text before the first ':') and how many injected malformed records
    reached the table (matched on the exact payload)."""
    mal = truth[truth["kind"] == "malformed"]
    reasons = dead["reason"].fillna("?").str.split(":", n=1).str[0] if len(dead) else pd.Series([], dtype=str)
    by_reason = reasons.value_counts().rename_axis("reason").reset_index(name="dead_letters")
    # multisets: the generator can repeat a payload (e.g. "null"), each copy is one record
    payloads = Counter(mal["payload"].dropna()) if len(mal) else Counter()
    raws = Counter(dead["raw"].dropna()) if len(dead) else Counter()
    stats = {
        "malformed_injected": len(mal),
        "dead_letters": len(dead),
        "injected_found": (payloads & raws).total(),
        "dead_not_injected": (raws - payloads).total(),
        "injected_by_reason": mal["reason"].value_counts().to_dict() if len(mal) else {},
    }
    return by_reason, stats


def format_report(results: dict[str, DetectorResult], tolerance_ms: int) -> str:
    lines = []
    for det, r in results.items():
        lines.append(
            f"== detector {det}: {r.readings} readings scored, {r.flagged_readings} flagged "
            f"({r.flagged_in_spans} inside injected spans)"
        )
        t = r.by_kind.copy()
        t["recall"] = t["recall"].map(lambda v: "-" if pd.isna(v) else f"{v:.2f}")
        lines.append(t.to_string())
        p = "-" if pd.isna(r.precision) else f"{r.precision:.2f}"
        lines.append(
            f"   alarms (runs of consecutive flags): {r.alarms}, overlapping an injected span: "
            f"{r.true_alarms}  -> precision {p}"
        )
        lines.append("")
    lines.append(
        f"(detected = >=1 flagged reading of the series within [start_ts, end_ts + {tolerance_ms // 1000}s])"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- chart


def pick_series(truth: pd.DataFrame, n: int = 4) -> list[pd.Series]:
    """One injected anomaly per kind (the longest-lived kinds first), up to ``n``."""
    inj = truth[truth["kind"] != "malformed"]
    if inj.empty:
        return []
    picks = []
    for _, g in inj.groupby("kind"):
        picks.append(g.sort_values("start_ts").iloc[len(g) // 2])
    return picks[:n]


def plot(scored: pd.DataFrame, truth: pd.DataFrame, path: str | os.PathLike, context: int = 120) -> Path:
    """Grid: one row per picked injected anomaly, one column per detector. Values, the detector's
    band, flagged readings, and every injected span of that series shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    picks = pick_series(truth)
    dets = sorted(scored["detector"].unique())
    nr, nc = max(1, len(picks)), max(1, len(dets))
    fig, axes = plt.subplots(nr, nc, figsize=(5.5 * nc, 3.0 * nr), squeeze=False)
    inj = truth[truth["kind"] != "malformed"]
    for i, a in enumerate(picks):
        series = scored[(scored["sensor_id"] == a["sensor_id"]) & (scored["metric"] == a["metric"])]
        for j, det in enumerate(dets):
            ax = axes[i][j]
            s = series[series["detector"] == det].sort_values("ts")
            if s.empty:
                ax.set_axis_off()
                continue
            step = max(1, int(s["ts"].diff().median() or 60_000))
            lo, hi = a["start_ts"] - context * step, a["end_ts"] + context * step
            s = s[(s["ts"] >= lo) & (s["ts"] <= hi)]
            t = pd.to_datetime(s["ts"], unit="ms")
            ax.fill_between(
                t, s["lower"], s["upper"], color="tab:blue", alpha=0.15, step="mid", label="band", linewidth=0
            )
            ax.plot(t, s["value"], color="black", linewidth=0.8, label="value")
            f = s[s["is_anomaly"].fillna(False).astype(bool)]
            ax.scatter(
                pd.to_datetime(f["ts"], unit="ms"), f["value"], color="red", s=14, zorder=3, label="flagged"
            )
            for _, sp in inj[
                (inj["sensor_id"] == a["sensor_id"]) & (inj["metric"] == a["metric"])
            ].iterrows():
                if sp["end_ts"] >= lo and sp["start_ts"] <= hi:
                    ax.axvspan(
                        pd.to_datetime(sp["start_ts"] - step / 2, unit="ms"),
                        pd.to_datetime(sp["end_ts"] + step / 2, unit="ms"),
                        color="orange",
                        alpha=0.3,
                        label=f"injected {sp['kind']}",
                    )
            vals = s["value"].dropna()
            if len(vals):  # keep a wide warm-up band from flattening the plot
                pad = (vals.max() - vals.min()) * 0.5 or 1.0
                ax.set_ylim(vals.min() - pad, vals.max() + pad)
            ax.set_title(f"{det}: {a['sensor_id']} {a['metric']} ({a['kind']})", fontsize=9)
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %H:%M"))
            ax.tick_params(labelsize=7)
            if i == 0 and j == 0:
                ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("spark-anomaly demo: injected anomalies (shaded) vs flagged readings (red)", fontsize=11)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


# --------------------------------------------------------------------------- Spark / Kafka glue


def _committed_offsets(ckpt: Path) -> dict[int, int] | None:
    """Kafka end offsets of the last committed batch of a query checkpoint (None: nothing yet)."""
    commits = [int(p.name) for p in (ckpt / "commits").glob("[0-9]*")] if (ckpt / "commits").exists() else []
    if not commits:
        return None
    lines = (ckpt / "offsets" / str(max(commits))).read_text().splitlines()
    out: dict[int, int] = {}
    for line in lines[2:]:
        for parts in json.loads(line).values():
            out.update({int(p): int(o) for p, o in parts.items()})
    return out


def wait_caught_up(cfg, timeout_s: float) -> bool:
    """Until every query of the detect job has committed the topic's end offsets (or timeout)."""
    from .kafka_admin import topic_end_offsets

    base = Path(cfg.path(cfg.detect.checkpoint))
    queries = ["intake"] + (["stateful"] if any(d.name != "zscore" for d in cfg.detect.detectors) else [])
    deadline = time.monotonic() + timeout_s
    while True:
        end = topic_end_offsets(cfg.kafka.bootstrap_servers, cfg.kafka.topic)
        done = {q: _committed_offsets(base / q) for q in queries}
        behind = {q: sum(max(0, end[p] - (c or {}).get(p, 0)) for p in end) for q, c in done.items()}
        if all(v == 0 for v in behind.values()):
            print(f"demo_report: detect caught up with {sum(end.values())} records", flush=True)
            return True
        if time.monotonic() >= deadline:
            print(
                f"demo_report: gave up waiting after {timeout_s:.0f}s; records behind: {behind}", flush=True
            )
            return False
        time.sleep(2)


def read_tables(cfg) -> tuple[pd.DataFrame, pd.DataFrame]:
    from .session import build_spark

    spark = build_spark(cfg, "spark-anomaly-demo-report")
    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    scored = (
        spark.read.format("delta")
        .load(cfg.path(cfg.detect.sink_table))
        .select("detector", "sensor_id", "metric", "ts", "value", "lower", "upper", "is_anomaly")
        .toPandas()
    )
    dl = cfg.path(cfg.detect.dead_letter_table)
    if (Path(dl) / "_delta_log").exists():
        dead = spark.read.format("delta").load(dl).select("raw", "reason").toPandas()
    else:
        dead = pd.DataFrame(columns=["raw", "reason"])
    spark.stop()
    return scored, dead


def main(argv: Sequence[str] | None = None) -> int:
    from .config import load_config

    p = argparse.ArgumentParser(
        prog="python -m spark_anomaly.demo_report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("command", choices=["report", "wait"])
    p.add_argument("--config", "-c", default="conf/demo.yaml")
    p.add_argument("--set", "-s", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--truth", default="var/demo/truth.jsonl")
    p.add_argument("--chart", default="var/demo/chart.png")
    p.add_argument(
        "--tolerance-s",
        type=float,
        default=300.0,
        help="event-time seconds after an anomaly's end still counted as detecting it",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="wait: seconds before giving up")
    a = p.parse_args(argv)
    cfg = load_config(a.config, a.set)
    if a.command == "wait":
        return 0 if wait_caught_up(cfg, a.timeout) else 1

    tol = int(a.tolerance_s * 1000)
    truth = load_truth(a.truth)
    scored, dead = read_tables(cfg)
    results = match(scored, truth, tol)
    print()
    print(format_report(results, tol))
    by_reason, st = dead_letter_summary(dead, truth)
    print()
    print(
        f"== dead letters: {st['dead_letters']} in the table; malformed records injected: "
        f"{st['malformed_injected']} ({st['injected_found']} found in the table, "
        f"{st['dead_not_injected']} dead letters not injected)"
    )
    if len(by_reason):
        print(by_reason.to_string(index=False))
    if st["injected_by_reason"]:
        print(
            "   injected by generator reason: "
            + ", ".join(f"{k} {v}" for k, v in sorted(st["injected_by_reason"].items()))
        )
    chart = plot(scored, truth, a.chart)
    print()
    summary = ", ".join(f"{d} recall {r.recall:.2f} precision {r.precision:.2f}" for d, r in results.items())
    print(f"summary: {len(truth[truth['kind'] != 'malformed'])} anomalies injected; {summary}")
    print(f"chart: {chart.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
