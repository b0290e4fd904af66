"""Finds plugins through the ``zoo_bench`` entry-point group and builds the name registries.

Entry points are loaded one at a time (not with pluggy's ``load_setuptools_entrypoints``) and each
hook is called per plugin, so one faulty plugin is reported by name while the others still load.
Set ``ZOO_BENCH_DISABLE_PLUGIN_AUTOLOAD=1`` to load only first-party plugins (tests, bisecting).

Order: first-party plugins load first, then third-party ones sorted by distribution and plugin
name, so when two plugins register the same name the first-party one always wins.

Faults never stop zoo-bench. Each one becomes one line of :attr:`Registry.load_errors`, naming the
plugin and its distribution, and drops only what it names; the plugin's other registrations stay:

* the module fails to import: the whole plugin is dropped;
* two distributions use the same plugin (entry-point) name: the later plugin is not loaded;
* a hook name that is not in :mod:`zoo_bench.hookspecs` (a misspelling; the closest hook name is
  suggested), or a hook that takes arguments: that function is ignored;
* a hook raises, or returns something other than a list: that hook's return is ignored;
* an item of the wrong type (not the right base class, an instance instead of a class, an abstract
  class, no ``name``, a backbone whose backend no plugin registers): that item is ignored;
* a name another plugin (or the same one) registered already: the first registration stays.
"""
from __future__ import annotations

import difflib
import inspect
import os
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any, Callable

from . import hookspecs
from .backend import OPTIONAL_VERBS, Backend, BackboneSpec
from .catalog import BackboneCatalog
from .dataset import DatasetSource, DownloadSpec
from .errors import one_line
from .images import CROP_MODES, INTERPOLATIONS
from .strategy import Strategy

GROUP = hookspecs.PROJECT
FIRST_PARTY = {"zoo_bench_torch", "zoo_bench_strategies", "zoo_bench_datasets", "zoo_bench_keras"}
DISABLE_AUTOLOAD_ENV = "ZOO_BENCH_DISABLE_PLUGIN_AUTOLOAD"
IN_PROCESS = "(in-process)"  # the distribution of modules passed to load_plugins(extra=...)
HOOKS = tuple(sorted(n for n, f in vars(hookspecs).items() if getattr(f, f"{GROUP}_spec", None) is not None))
HOOK_PREFIX = os.path.commonprefix(list(HOOKS))  # unmarked functions named like this are meant as hooks
IMPL_MARKER = f"{GROUP}_impl"  # the attribute pluggy's HookimplMarker puts on a hook function

# kind, hook, the type each returned item must have; backends first so backbones can be checked.
KINDS: tuple[tuple[str, str, type], ...] = (
    ("backend", "zoo_bench_register_backends", Backend),
    ("backbone", "zoo_bench_register_backbones", BackboneSpec),
    ("catalog", "zoo_bench_register_backbone_catalogs", BackboneCatalog),
    ("strategy", "zoo_bench_register_strategies", Strategy),
    ("dataset", "zoo_bench_register_datasets", DatasetSource),
    ("download", "zoo_bench_register_downloads", DownloadSpec),
)
PLUGIN_FAULTS = (Exception, SystemExit)  # what plugin code may raise without stopping zoo-bench


@dataclass
class PluginInfo:
    """One loaded (or failed) plugin, as ``zoo-bench plugins`` shows it.

    ``error`` is set when nothing of the plugin was loaded; ``problems`` lists the faults of a
    plugin that loaded, one line each, for the parts that were ignored.
    """

    name: str
    module: str
    distribution: str
    version: str
    error: str | None = None
    registers: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """``'name' (distribution version)``: enough to find what to fix or uninstall."""
        dist = self.distribution.strip("()")  # "(in-process)" for modules passed to load_plugins
        dist = f"{dist} {self.version}" if self.version else dist
        return f"{self.name!r} ({dist})"


@dataclass
class Registry:
    """Everything the plugins registered, by name, with the plugin that registered each."""

    backends: dict[str, type] = field(default_factory=dict)
    backbones: dict[str, dict[str, Any]] = field(default_factory=dict)  # backend -> name -> spec
    catalogs: dict[str, BackboneCatalog] = field(default_factory=dict)  # prefix name -> catalogue
    resolved: dict[tuple[str, str], BackboneSpec] = field(default_factory=dict)  # catalogue members in use
    strategies: dict[str, type] = field(default_factory=dict)
    datasets: dict[str, type] = field(default_factory=dict)
    downloads: dict[str, Any] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    owners: dict[tuple[str, str], str] = field(default_factory=dict)
    shadowed: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # later registrations refused

    @property
    def load_errors(self) -> list[str]:
        """One line per plugin fault, each naming the plugin and its distribution."""
        lines = []
        for p in self.plugins:
            if p.error:
                lines.append(f"plugin {p.label}: failed to load: {p.error}")
            lines += [f"plugin {p.label}: {problem}" for problem in p.problems]
        return lines

    def plugin(self, name: str) -> PluginInfo | None:
        """The loaded plugin of that name."""
        return next((p for p in self.plugins if p.name == name and not p.error), None)

    def owner(self, kind: str, name: str) -> str:
        """``'plugin' (distribution version)`` of whoever registered ``name`` as a ``kind``, for error lines."""
        plugin = self.plugin(self.owners.get((kind, name), ""))
        return plugin.label if plugin else "an unknown plugin"

    def duplicate_note(self, kind: str, name: str) -> str:
        """For an error about ``name``: whose registration is in use and whose were ignored, or ""."""
        ignored = self.shadowed.get((kind, name))
        if not ignored:
            return ""
        return (f"; {kind} {name!r} is plugin {self.owner(kind, name)}'s: plugin {', '.join(ignored)} also registers "
                "it and was ignored (first-party plugins first, then by distribution name)")

    def backbone(self, backend: str, name: str) -> BackboneSpec | None:
        """The spec of a backbone of ``backend``: registered by name, or a catalogue's ``PREFIX:NAME``.

        None when neither has it; a catalogue that cannot tell here raises ZooBenchError (one line).
        """
        spec = self.backbones.get(backend, {}).get(name) or self.resolved.get((backend, name))
        if spec is not None or ":" not in name:
            return spec
        catalog = self.catalogs.get(name.split(":", 1)[0])
        if catalog is None or catalog.backend != backend:
            return None
        spec = catalog.resolve(name.split(":", 1)[1])
        if spec is not None:
            self.resolved[(backend, name)] = spec  # resolved once per process
        return spec

    def catalog_of(self, name: str) -> BackboneCatalog | None:
        """The catalogue a ``PREFIX:NAME`` backbone name points into, if one is registered."""
        return self.catalogs.get(name.split(":", 1)[0]) if ":" in name else None

    def backbone_names(self, backend: str | None = None) -> list[str]:
        """Backbone names of one backend, or of all backends."""
        if backend is not None:
            return sorted(self.backbones.get(backend, {}))
        return sorted({n for specs in self.backbones.values() for n in specs})


def _is_first_party(ep: metadata.EntryPoint) -> bool:
    return ep.value.split(":")[0] in FIRST_PARTY


def _entry_points() -> list[metadata.EntryPoint]:
    """Entry points in load order: first-party, then by distribution and name (not sys.path order)."""
    eps = list(metadata.entry_points(group=GROUP))
    if os.environ.get(DISABLE_AUTOLOAD_ENV):
        eps = [ep for ep in eps if _is_first_party(ep)]
    eps.sort(key=lambda ep: (not _is_first_party(ep), _dist_of(ep)[0].lower(), ep.name))
    seen: set[tuple[str, str]] = set()
    unique = []
    for ep in eps:  # the same distribution can be visible twice (editable + site-packages)
        key = (ep.name, _dist_of(ep)[0])
        if key not in seen:
            seen.add(key)
            unique.append(ep)
    return unique


def _dist_of(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown", ""
    return dist.metadata["Name"] or "unknown", dist.version or ""


def _describe(value: Any) -> str:
    """A short, stable description of a wrong value (no memory addresses)."""
    if isinstance(value, type):
        return f"class {value.__name__}"
    if value is None or isinstance(value, (str, bytes, int, float, bool, list, tuple, dict, set)):
        text = repr(value)
        text = text if len(text) <= 40 else text[:37] + "..."
        return text if value is None else f"{text} ({type(value).__name__})"
    return f"an instance of {type(value).__name__}"


def load_plugins(extra: list[Any] | None = None) -> Registry:
    """Load every entry-point plugin (plus ``extra`` modules) and collect what they register.

    Never raises for a faulty plugin: see the module docstring and :attr:`Registry.load_errors`.
    """
    registry = Registry()
    modules: list[tuple[PluginInfo, ModuleType]] = []
    for ep in _entry_points():
        dist, version = _dist_of(ep)
        info = PluginInfo(name=ep.name, module=ep.value, distribution=dist, version=version)
        module = _load(registry, info, ep.load)
        if module is not None:
            modules.append((info, module))
    for module in extra or []:
        name = getattr(module, "__name__", repr(module))
        info = PluginInfo(name=name, module=name, distribution=IN_PROCESS, version="")
        loaded = _load(registry, info, lambda: module)
        if loaded is not None:
            modules.append((info, loaded))
    _collect(registry, [(info, _hook_functions(module, info)) for info, module in modules])
    return registry


def _load(registry: Registry, info: PluginInfo, load: Callable[[], Any]) -> Any | None:
    """Import one plugin; on failure record why on ``info`` and return None."""
    registry.plugins.append(info)
    taken = registry.plugin(info.name)
    if taken is not None and taken is not info:
        info.error = f"the name is taken by plugin {taken.label}"
        return None
    try:
        return load()
    except PLUGIN_FAULTS as exc:  # a broken plugin must not stop the others
        info.error = one_line(exc, always_type=True)
        return None


def _hook_functions(module: Any, info: PluginInfo) -> dict[str, list[Callable[[], Any]]]:
    """The module's valid hook functions by hook name; misspelled or malformed ones become problems.

    A function counts as a hook when it carries the ``hookimpl`` marker (its ``specname`` if given,
    else its own name) or when its name starts with the common hook prefix.
    """
    found: dict[str, list[Callable[[], Any]]] = {}
    for attr in sorted(dir(module)):
        try:
            obj = getattr(module, attr)
        except PLUGIN_FAULTS:
            continue
        opts = getattr(obj, IMPL_MARKER, None) if inspect.isroutine(obj) else None
        if not isinstance(opts, dict) and not attr.startswith(HOOK_PREFIX):
            continue
        hook = (opts or {}).get("specname") or attr
        problem = _hook_problem(hook, obj)
        if problem:
            info.problems.append(f"{problem}; ignored")
        else:
            found.setdefault(hook, []).append(obj)
    return found


def _hook_problem(hook: str, obj: Any) -> str | None:
    """Why ``obj`` cannot serve as hook ``hook``, or None (the checks pluggy makes at register time)."""
    if hook not in HOOKS:
        close = difflib.get_close_matches(hook, HOOKS, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}?" if close else f"hooks: {', '.join(HOOKS)}"
        return f"unknown hook {hook!r} ({hint})"
    if not callable(obj):
        return f"{hook} is {_describe(obj)}, not a function"
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return None
    required = [p.name for p in params if p.default is p.empty
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if required:
        return f"{hook}({', '.join(required)}): hooks take no arguments"
    return None


def _collect(registry: Registry, plugins: list[tuple[PluginInfo, dict[str, list[Callable[[], Any]]]]]) -> None:
    """Call every hook kind by kind (all backends first), plugin by plugin in load order."""
    for kind, hook, base in KINDS:
        for info, hooks in plugins:
            for impl in hooks.get(hook, []):
                items = _call(impl, hook, info)
                for index, item in enumerate(items):
                    _register(registry, kind, base, item, info, where=f"{hook}()[{index}]")


def _call(impl: Callable[[], Any], hook: str, info: PluginInfo) -> list[Any]:
    """The hook's list, or an empty one (and a problem) when it raises or returns something else."""
    try:
        result = impl()
    except PLUGIN_FAULTS as exc:
        info.problems.append(f"{hook}() raised {one_line(exc, always_type=True)}; ignored")
        return []
    if not isinstance(result, (list, tuple)):
        info.problems.append(f"{hook}() returned {_describe(result)}, expected a list; ignored")
        return []
    return list(result)


def _item_problem(kind: str, base: type, item: Any, registry: Registry) -> str | None:
    """Why ``item`` cannot be registered as a ``kind``, or None."""
    if base in (BackboneSpec, DownloadSpec, BackboneCatalog):
        if not isinstance(item, base):
            return f"{_describe(item)}, not a {base.__name__}"
    elif not isinstance(item, type):
        hint = " (return the class itself)" if isinstance(item, base) else ""
        return f"{_describe(item)}, not a {base.__name__} subclass{hint}"
    elif not issubclass(item, base):
        return f"{_describe(item)}, not a {base.__name__} subclass"
    elif inspect.isabstract(item):
        return f"{_describe(item)} is abstract (missing {', '.join(sorted(item.__abstractmethods__))})"
    name = getattr(item, "name", None)
    if not isinstance(name, str) or not name:
        return f"{_describe(item)} has no name (a non-empty str)"
    if kind in ("backbone", "catalog") and item.backend not in registry.backends:
        known = ", ".join(sorted(registry.backends)) or "none"
        return f"{kind} {name!r} names backend {item.backend!r}, which no plugin registers (known: {known})"
    if kind == "catalog" and (":" in name or "/" in name):
        return f"catalog name {name!r} must not contain ':' or '/'"
    if kind == "backbone" and "/" in name:
        return f"backbone name {name!r} must not contain '/' (trial ids and file names use it)"
    if kind == "backbone":
        return _resize_problem(item)
    if kind == "strategy":
        return _default_problem(item)
    return None


def _default_problem(cls: type) -> str | None:
    """Why a strategy's parameter defaults break their own rules, or None: a suite that omits the parameter
    would run a value the strategy itself forbids."""
    for key, param in cls.param_specs().items():
        problem = param.problem(param.default)
        if problem:
            return f"strategy {cls.name!r}: the default of {key} breaks its own rule: {problem}"
    unknown = [verb for verb in getattr(cls, "requires", ()) if verb not in OPTIONAL_VERBS]
    if unknown:
        return (f"strategy {cls.name!r}: requires {', '.join(map(repr, unknown))}, not optional Backend verbs "
                f"(those are {', '.join(OPTIONAL_VERBS)})")
    return None


def _resize_problem(spec: BackboneSpec) -> str | None:
    """Why a spec's eval resize cannot be applied, or None."""
    if spec.interpolation not in INTERPOLATIONS:
        return f"backbone {spec.name!r}: interpolation {spec.interpolation!r} (allowed: {', '.join(INTERPOLATIONS)})"
    if spec.crop_mode not in CROP_MODES:
        return f"backbone {spec.name!r}: crop_mode {spec.crop_mode!r} (allowed: {', '.join(CROP_MODES)})"
    if not (isinstance(spec.crop_pct, (int, float)) and 0 < spec.crop_pct <= 1):
        return f"backbone {spec.name!r}: crop_pct must be in (0, 1], got {spec.crop_pct!r}"
    return None


def _claim(registry: Registry, kind: str, name: str, info: PluginInfo) -> str | None:
    """Take ``name`` for the plugin; if another registration has it, say whose it stays."""
    key = (kind, name)
    if key in registry.owners:
        owner = registry.plugin(registry.owners[key])
        who = owner.label if owner else repr(registry.owners[key])
        registry.shadowed.setdefault(key, []).append(info.label)
        return f"{kind} {name!r} is already registered by plugin {who}"
    registry.owners[key] = info.name
    return None


def _register(registry: Registry, kind: str, base: type, item: Any, info: PluginInfo, where: str) -> None:
    """Add one returned item, or record on ``info`` why it was ignored."""
    try:
        problem = _item_problem(kind, base, item, registry)
    except PLUGIN_FAULTS as exc:  # e.g. a ``name`` property that raises
        problem = f"{_describe(item)} could not be checked: {one_line(exc, always_type=True)}"
    if problem is None:
        label = (f"{item.backend}/{item.name}" if kind == "backbone" else
                 f"{item.name}:*" if kind == "catalog" else item.name)
        problem = _claim(registry, kind, label, info)
    if problem is not None:
        info.problems.append(f"{where}: {problem}; ignored")
        return
    if kind == "backbone":
        registry.backbones.setdefault(item.backend, {})[item.name] = item
    elif kind == "catalog":
        registry.catalogs[item.name] = item
    else:
        target = {"backend": registry.backends, "strategy": registry.strategies,
                  "dataset": registry.datasets, "download": registry.downloads}[kind]
        target[item.name] = item
    info.registers.setdefault(kind, []).append(label)
