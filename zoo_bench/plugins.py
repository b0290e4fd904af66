"""Finds plugins through the ``zoo_bench`` entry-point group and builds the name registries.

Entry points are loaded one at a time (not with pluggy's ``load_setuptools_entrypoints``) so a
plugin that fails to import is reported by name while the others still load.
Set ``ZOO_BENCH_DISABLE_PLUGIN_AUTOLOAD=1`` to load only first-party plugins (tests, bisecting).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError

GROUP = hookspecs.PROJECT
FIRST_PARTY = {"zoo_bench_torch", "zoo_bench_strategies", "zoo_bench_datasets", "zoo_bench_keras"}
DISABLE_AUTOLOAD_ENV = "ZOO_BENCH_DISABLE_PLUGIN_AUTOLOAD"


@dataclass
class PluginInfo:
    """One loaded (or failed) plugin, as ``zoo-bench plugins`` shows it."""

    name: str
    module: str
    distribution: str
    version: str
    error: str | None = None
    registers: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Registry:
    """Everything the plugins registered, by name, with the plugin that registered each."""

    backends: dict[str, type] = field(default_factory=dict)
    backbones: dict[str, dict[str, Any]] = field(default_factory=dict)  # backend -> name -> spec
    strategies: dict[str, type] = field(default_factory=dict)
    datasets: dict[str, type] = field(default_factory=dict)
    downloads: dict[str, Any] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    owners: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def load_errors(self) -> list[str]:
        """One line per plugin that failed to load."""
        return [f"plugin {p.name!r} ({p.distribution}) failed to load: {p.error}" for p in self.plugins if p.error]

    def backbone_names(self, backend: str | None = None) -> list[str]:
        """Backbone names of one backend, or of all backends."""
        if backend is not None:
            return sorted(self.backbones.get(backend, {}))
        return sorted({n for specs in self.backbones.values() for n in specs})


def _entry_points() -> list[metadata.EntryPoint]:
    eps = list(metadata.entry_points(group=GROUP))
    if os.environ.get(DISABLE_AUTOLOAD_ENV):
        eps = [ep for ep in eps if ep.value.split(":")[0] in FIRST_PARTY]
    seen: set[str] = set()
    unique = []
    for ep in eps:  # the same distribution can be visible twice (editable + site-packages)
        if ep.name not in seen:
            seen.add(ep.name)
            unique.append(ep)
    return unique


def _dist_of(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown", "unknown"
    return dist.metadata["Name"], dist.version


def load_plugins(extra: list[Any] | None = None) -> Registry:
    """Load every entry-point plugin (plus ``extra`` modules) and collect what they register.

    Raises:
        PluginError: two plugins register the same name.
    """
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    infos: dict[str, PluginInfo] = {}
    for ep in _entry_points():
        dist, version = _dist_of(ep)
        info = PluginInfo(name=ep.name, module=ep.value, distribution=dist, version=version)
        registry.plugins.append(info)
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as exc:  # a broken plugin must not stop the others
            info.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            continue
        infos[ep.name] = info
    for module in extra or []:
        name = getattr(module, "__name__", repr(module))
        info = PluginInfo(name=name, module=name, distribution="(in-process)", version="")
        registry.plugins.append(info)
        pm.register(module, name=name)
        infos[name] = info
    pm.check_pending()
    _collect(pm, registry, infos)
    return registry


def _claim(registry: Registry, kind: str, name: str, plugin: str) -> None:
    key = (kind, name)
    if key in registry.owners and registry.owners[key] != plugin:
        raise PluginError(
            f"{kind} {name!r} is registered by two plugins: {registry.owners[key]!r} and {plugin!r}"
        )
    registry.owners[key] = plugin


def _collect(pm: pluggy.PluginManager, registry: Registry, infos: dict[str, PluginInfo]) -> None:
    for plugin_name, info in infos.items():
        module = pm.get_plugin(plugin_name)
        for kind, hook in (
            ("backend", "zoo_bench_register_backends"),
            ("backbone", "zoo_bench_register_backbones"),
            ("strategy", "zoo_bench_register_strategies"),
            ("dataset", "zoo_bench_register_datasets"),
            ("download", "zoo_bench_register_downloads"),
        ):
            impl = getattr(module, hook, None)
            if impl is None:
                continue
            try:
                items = impl() or []
            except Exception as exc:
                info.error = f"{hook} raised {type(exc).__name__}: {exc}".splitlines()[0]
                continue
            for item in items:
                _register(registry, kind, item, plugin_name, info)


def _register(registry: Registry, kind: str, item: Any, plugin: str, info: PluginInfo) -> None:
    if kind == "backbone":
        label = f"{item.backend}/{item.name}"
        _claim(registry, kind, label, plugin)
        registry.backbones.setdefault(item.backend, {})[item.name] = item
    else:
        label = item.name
        _claim(registry, kind, label, plugin)
        target = {"backend": registry.backends, "strategy": registry.strategies,
                  "dataset": registry.datasets, "download": registry.downloads}[kind]
        target[item.name] = item
    info.registers.setdefault(kind, []).append(label)
