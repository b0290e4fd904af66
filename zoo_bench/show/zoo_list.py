"""``zoo-bench list backbones``: the registered backbones and every catalogue's members, filtered.

Nothing is built to list: names come from the registry and from each catalogue's ``names``. Only
parameter counts need a model, and a backend may give them cheaply (torch builds on its meta
device, which allocates nothing); they are counted when the listing is short enough.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from ..backend import BackboneSpec
from ..errors import ZooBenchError
from ..plugins import Registry

MAX_COUNTED = 60  # parameter counts for listings of at most this many backbones


@dataclass
class Listed:
    """One row of the listing."""

    name: str
    backend: str
    image_size: int
    params: int | None  # without the classifier; None: not counted
    weights: str  # the weights tag, "none" for random initialisation only
    present: bool | None  # pretrained weights on this machine; None: the plugin cannot tell


def _matches(name: str, pattern: str) -> bool:
    if not pattern:
        return True
    name, pattern = name.lower(), pattern.lower()
    rest = name.split(":", 1)[1] if ":" in name else name
    return fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(rest, pattern)


def list_backbones(registry: Registry, pattern: str = "", backend: str | None = None, pretrained: bool = False,
                   available: bool = False, weights_dir: str | None = None,
                   count_params: bool | None = None) -> tuple[list[Listed], list[str]]:
    """The matching backbones in name order, and notes for the reader (catalogues that could not list)."""
    specs: list[BackboneSpec] = []
    notes: list[str] = []
    for name_backend, by_name in sorted(registry.backbones.items()):
        if backend is None or name_backend == backend:
            specs += [s for n, s in sorted(by_name.items()) if _matches(n, pattern)]
    for catalog in registry.catalogs.values():
        if backend is not None and catalog.backend != backend:
            continue
        inner = pattern
        if ":" in pattern:
            head, inner = pattern.split(":", 1)
            if not fnmatch.fnmatch(catalog.name, head.lower()):
                continue
        try:
            names = catalog.names(inner, pretrained)
            specs += [s for s in (registry.backbone(catalog.backend, n) for n in names) if s is not None]
        except ZooBenchError as exc:
            notes.append(f"{catalog.prefix}* not listed: {exc}")
    if pretrained:
        specs = [s for s in specs if s.weights != "none"]
    rows = [Listed(s.name, s.backend, s.image_size, None, s.weights, s.present(weights_dir)) for s in specs]
    if available:
        rows = [r for r in rows if r.present]
    counting = count_params if count_params is not None else len(rows) <= MAX_COUNTED
    if counting:
        by_name = {(s.backend, s.name): s for s in specs}
        done: dict[tuple[str, str], int | None] = {}
        for row in rows:
            spec = by_name[(row.backend, row.name)]
            key = (row.backend, spec.name.split(".")[0])  # one count per architecture, whatever its tag
            if key not in done:
                done[key] = _param_count(registry, spec)
            row.params = done[key]
    elif rows:
        notes.append(f"parameters are counted for listings of at most {MAX_COUNTED} backbones "
                     f"({len(rows)} here): narrow PATTERN or pass --params")
    return sorted(rows, key=lambda r: (r.name.lower(), r.backend)), notes


def _param_count(registry: Registry, spec: BackboneSpec) -> int | None:
    cls = registry.backends.get(spec.backend)
    try:
        return cls.param_count(spec) if cls is not None else None
    except Exception:  # counting is a convenience: a model that cannot be built on the meta device shows none
        return None
