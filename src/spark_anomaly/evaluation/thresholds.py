"""Saving tuned thresholds and applying them to another set (out-of-sample quoting).

File format (JSON)::

    {"format": "spark-anomaly/nab-thresholds/1",
     "detectors": {"<label>": {"spec": {...}, "tuned_on": ["cat/file.csv", ...],
                               "thresholds": {"standard": 0.97, ...}}}}

A threshold of ``null`` means "never detect" (the best a detector could do was stay silent).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

FORMAT = "spark-anomaly/nab-thresholds/1"


def _encode(t: float) -> float | None:
    return None if math.isinf(t) else float(t)


def _decode(t: Any) -> float:
    return math.inf if t is None else float(t)


def save(path: str | Path, entries: dict[str, dict[str, Any]]) -> None:
    """``entries``: label -> {"spec": dict, "tuned_on": [keys], "thresholds": {profile: float}}."""
    doc = {"format": FORMAT, "detectors": {}}
    for label, e in entries.items():
        doc["detectors"][label] = {
            "spec": e.get("spec", {}),
            "tuned_on": list(e.get("tuned_on", [])),
            "thresholds": {p: _encode(t) for p, t in e["thresholds"].items()},
        }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


def load(path: str | Path) -> dict[str, dict[str, float]]:
    """label -> {profile: threshold}."""
    doc = json.loads(Path(path).read_text())
    if doc.get("format") != FORMAT:
        raise ValueError(f"{path}: not a thresholds file (format {doc.get('format')!r}, expected {FORMAT!r})")
    return {
        label: {p: _decode(t) for p, t in e["thresholds"].items()} for label, e in doc["detectors"].items()
    }


def for_label(table: dict[str, dict[str, float]], label: str, path: str | Path = "") -> dict[str, float]:
    """The thresholds saved for ``label``; a file holding one detector applies to any label."""
    if label in table:
        return table[label]
    if len(table) == 1:
        return next(iter(table.values()))
    raise ValueError(f"{path}: no thresholds for {label!r} (has: {', '.join(sorted(table))})")
