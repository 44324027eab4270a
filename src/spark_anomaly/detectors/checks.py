"""Parameter checks the detector configs share, so each names its detector and field the same way."""

from __future__ import annotations

from typing import Any


def require_ints(config: Any, detector: str, names: tuple[str, ...], minimum: int = 1) -> None:
    """Each field a real int (not a bool) of at least ``minimum``."""
    for name in names:
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ValueError(f"{detector}.{name} must be an int >= {minimum}, got {v!r}")


def require_positive(config: Any, detector: str, names: tuple[str, ...]) -> None:
    """Each field > 0 (NaN fails too)."""
    for name in names:
        v = getattr(config, name)
        if not v > 0:
            raise ValueError(f"{detector}.{name} must be > 0, got {v}")
