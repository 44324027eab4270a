"""Detector specifications: a registry name or a named configuration, for every driver.

A named configuration is a YAML file ``conf/detectors/<name>.yaml``::

    detector: ensemble        # a registry name
    params: {...}             # that detector's parameters (composites nest member specs)
    description: optional text

``recommended`` is the product's recommended configuration. The evaluate job takes such a name
(or a YAML path) for ``--detector``, and the detect job takes it as a ``detect.detectors`` entry's
``name`` (:func:`registry_params`), so what is measured is what runs in the stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spark_anomaly.detectors import registry

RECOMMENDED = "recommended"


@dataclass(frozen=True)
class DetectorSpec:
    label: str  # the name results are filed under
    detector: str  # registry name
    params: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # where it came from (file path or "registry")
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "detector": self.detector, "params": self.params, "source": self.source}

    def build(self, prior=None):
        return registry.build(self.detector, self.params, prior)


def default_conf_dirs() -> list[Path]:
    """``./conf/detectors`` then the checkout's ``conf/detectors`` (next to ``src/``)."""
    dirs = [Path.cwd() / "conf" / "detectors"]
    repo = Path(__file__).resolve().parents[2] / "conf" / "detectors"
    if repo not in dirs:
        dirs.append(repo)
    return dirs


def load_spec_file(path: Path, label: str | None = None) -> DetectorSpec:
    try:
        with path.open() as fh:
            doc = yaml.safe_load(fh) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or "detector" not in doc:
        raise ValueError(f"{path}: a detector configuration needs a 'detector:' key")
    params = doc.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError(f"{path}: 'params' must be a mapping")
    return DetectorSpec(
        label=label or path.stem,
        detector=str(doc["detector"]),
        params=params,
        source=str(path),
        description=str(doc.get("description", "")).strip(),
    )


def resolve(name: str | None, conf_dirs: list[Path] | None = None) -> DetectorSpec:
    """A spec from a YAML path, a registry name (seed defaults; a file of that name does not
    shadow it), or a named configuration."""
    name = name or RECOMMENDED
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return load_spec_file(path)
    if name in registry.names():
        return DetectorSpec(label=name, detector=name, params={}, source="registry")
    dirs = conf_dirs or default_conf_dirs()
    for d in dirs:
        for suffix in (".yaml", ".yml"):
            candidate = d / f"{name}{suffix}"
            if candidate.is_file():
                return load_spec_file(candidate, label=name)
    named = sorted({p.stem for d in dirs if d.is_dir() for p in (*d.glob("*.yaml"), *d.glob("*.yml"))})
    raise ValueError(
        f"unknown detector or configuration {name!r}: not a YAML file, not a configuration in "
        f"{', '.join(str(d) for d in dirs)} ({', '.join(named) or 'none there'}), "
        f"not one of {', '.join(registry.names())}"
    )


def registry_params(
    name: str, params: dict[str, Any] | None = None, conf_dirs: list[Path] | None = None
) -> tuple[str, dict[str, Any]]:
    """(registry name, parameters) for a ``detect.detectors`` entry.

    The name is resolved as ``resolve`` does for the evaluate job (on the driver); the entry's
    own ``params`` then replace the file's top-level keys (e.g. ``{name: recommended, params:
    {rows: 100}}`` for a longer silence after an alarm), or are all a registry name's params.
    """
    spec = resolve(name, conf_dirs)
    return spec.detector, {**spec.params, **(params or {})}


def with_overrides(spec: DetectorSpec, overrides: list[str], label: str | None = None) -> DetectorSpec:
    """``key=value`` overrides (value parsed as YAML; dotted keys reach into nested dicts)."""
    if not overrides:
        return spec
    params = json.loads(json.dumps(spec.params))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects key=value, got {item!r}")
        target = params
        parts = key.split(".")
        for p in parts[:-1]:
            target = target[int(p)] if isinstance(target, list) else target.setdefault(p, {})
        last = parts[-1]
        value = yaml.safe_load(raw)
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return DetectorSpec(
        label=label or f"{spec.label}[{','.join(overrides)}]",
        detector=spec.detector,
        params=params,
        source=spec.source,
        description=spec.description,
    )
