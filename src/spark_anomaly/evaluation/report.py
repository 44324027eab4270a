"""Reports people look at: one PNG per series and one page (HTML + Markdown) linking them.

Each PNG shows the values, the detector's band where it has one, the probationary period, the
label windows (shaded) and the detections at the standard profile's threshold; below it the
anomaly score against that threshold.
"""

from __future__ import annotations

import html
import math
import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .nab_data import LabelledSeries, probation_length
from .nab_scorer import ProfileResult, SeriesScore
from .runner import Replay


@dataclass
class PlotJob:
    path: Path
    title: str
    series: LabelledSeries
    replay: Replay
    threshold: float


def render_png(job: PlotJob) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, r = job.series, job.replay
    x = s.timestamps
    fig, (ax, ax2) = plt.subplots(
        2, 1, figsize=(13, 4.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]}, constrained_layout=True
    )
    finite = s.values[np.isfinite(s.values)]
    lo_v, hi_v = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    pad = 0.08 * (hi_v - lo_v or 1.0)
    prob = probation_length(len(s))
    if prob > 0:
        for a in (ax, ax2):
            a.axvspan(x[0], x[min(prob, len(s) - 1)], color="0.85", alpha=0.6, lw=0)
    for left, right in s.windows:
        for a in (ax, ax2):
            a.axvspan(x[left], x[right], color="tab:red", alpha=0.15, lw=0)
    band = np.isfinite(r.lower) & np.isfinite(r.upper)
    if band.any():
        lower = np.where(band, np.clip(r.lower, lo_v - 10 * pad, hi_v + 10 * pad), np.nan)
        upper = np.where(band, np.clip(r.upper, lo_v - 10 * pad, hi_v + 10 * pad), np.nan)
        ax.fill_between(x, lower, upper, color="tab:green", alpha=0.2, lw=0, label="band")
    ax.plot(x, s.values, color="tab:blue", lw=0.6, label="value")
    det = np.flatnonzero(r.anomaly_score >= job.threshold)
    det = det[det >= prob]
    if det.size:
        ax.scatter(x[det], s.values[det], color="tab:red", s=16, zorder=3, label="detection")
    ax.set_ylim(lo_v - pad, hi_v + pad)
    ax.set_title(job.title, fontsize=9, loc="left")
    ax.legend(loc="upper left", fontsize=7, ncol=3)
    ax2.plot(x, r.anomaly_score, color="tab:purple", lw=0.6)
    if math.isfinite(job.threshold):
        ax2.axhline(job.threshold, color="tab:red", lw=0.7, ls="--")
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_ylabel("score", fontsize=8)
    ax2.tick_params(labelsize=7)
    ax.tick_params(labelsize=7)
    job.path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(job.path, dpi=80)
    plt.close(fig)
    return job.path


def render_all(jobs: list[PlotJob], workers: int = 2) -> list[Path]:
    if workers <= 1 or len(jobs) <= 1:
        return [render_png(j) for j in jobs]
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    with ctx.Pool(workers) as pool:
        return pool.map(render_png, jobs, chunksize=1)


def fmt_threshold(t: float) -> str:
    return "never" if math.isinf(t) else f"{t:.6g}"


def fmt_lost(r: ProfileResult) -> str:
    """The standard score's distance to 100 as late / missed / false-alarm points."""
    lost = r.lost
    return f"{lost.late:.1f} / {lost.missed:.1f} / {lost.false:.1f}"


LOST_HEADER = "standard points lost: late / missed / false alarms"
# the two tables of the page, written once for both formats: headers and the cells after the name
SCORE_HEADERS = (
    "detector",
    "standard",
    "reward_low_FP_rate",
    "reward_low_FN_rate",
    "precision",
    "recall",
    "F1",
    "threshold (standard)",
    LOST_HEADER,
)
SERIES_HEADERS = (
    "series",
    "windows",
    "detected",
    "missed",
    "false detections",
    "raw (standard)",
    "lost late",
    "false cost",
)


def _score_cells(res: dict[str, ProfileResult]) -> list[str]:
    st = res["standard"]
    return [
        f"{st.score:.1f}",
        f"{res['reward_low_FP_rate'].score:.1f}",
        f"{res['reward_low_FN_rate'].score:.1f}",
        f"{st.precision:.3f}",
        f"{st.recall:.3f}",
        f"{st.f1:.3f}",
        fmt_threshold(st.threshold),
        fmt_lost(st),
    ]


def _series_cells(p: SeriesScore) -> list[str]:
    return [
        str(p.windows),
        str(p.tp),
        str(p.fn),
        str(p.fp),
        f"{p.raw:.3f}",
        f"{p.late:.3f}",
        f"{p.false_cost:.3f}",
    ]


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _md_rule(numeric: int, text: int = 0) -> str:
    """The header rule: a name column, ``numeric`` right-aligned columns, ``text`` plain ones."""
    return "|---|" + "---:|" * numeric + "---|" * text


def _html_row(cells: list[str], tag: str = "td") -> str:
    return "<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>"


def score_table_md(rows: list[tuple[str, dict[str, ProfileResult]]]) -> str:
    lines = [_md_row(list(SCORE_HEADERS)), _md_rule(len(SCORE_HEADERS) - 1)]
    lines += [_md_row([label, *_score_cells(res)]) for label, res in rows]
    return "\n".join(lines)


def write_page(
    out: Path,
    rows: list[tuple[str, dict[str, ProfileResult]]],
    images: dict[str, dict[str, Path]],
    command: str,
) -> tuple[Path, Path]:
    """``report.md`` and ``report.html`` under ``out`` linking the PNGs (relative links)."""
    md = [f"# Detection quality (NAB scoring)\n\nCommand: `{command}`\n", score_table_md(rows), ""]
    hp = [
        "<!doctype html><meta charset='utf-8'><title>spark-anomaly: detection quality</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:first-child{text-align:left}"
        "img{max-width:100%}</style>",
        "<h1>Detection quality (NAB scoring)</h1>",
        f"<p>Command: <code>{html.escape(command)}</code></p>",
        "<table>" + _html_row(list(SCORE_HEADERS), "th"),
    ]
    for label, res in rows:
        name = f"<a href='#{html.escape(label)}'>{html.escape(label)}</a>"
        hp.append(_html_row([name, *_score_cells(res)]))
    hp.append("</table>")
    for label, res in rows:
        st = res["standard"]
        md += [
            f"## {label}\n",
            _md_row([*SERIES_HEADERS, "plot"]),
            _md_rule(len(SERIES_HEADERS) - 1, text=1),
        ]
        hp += [
            f"<h2 id='{html.escape(label)}'>{html.escape(label)}</h2>",
            "<table>" + _html_row(list(SERIES_HEADERS), "th"),
        ]
        for p in st.per_series:
            img = images.get(label, {}).get(p.key)
            rel = img.relative_to(out).as_posix() if img else ""
            md.append(_md_row([p.key, *_series_cells(p), f"[png]({rel})" if img else ""]))
            name = f"<a href='{html.escape(rel)}'>{html.escape(p.key)}</a>" if img else html.escape(p.key)
            hp.append(_html_row([name, *_series_cells(p)]))
        hp.append("</table>")
        for p in st.per_series:
            img = images.get(label, {}).get(p.key)
            if img:
                hp.append(
                    f"<h3>{html.escape(p.key)}</h3><img loading='lazy' src='{html.escape(img.relative_to(out).as_posix())}'>"
                )
        md.append("")
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text("\n".join(md) + "\n")
    html_path.write_text("\n".join(hp) + "\n")
    return md_path, html_path
