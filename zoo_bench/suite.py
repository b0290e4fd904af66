"""Suite files: TOML in, a validated :class:`Suite` out, with one-line ``file: key: problem`` errors.

A suite may carry named profiles (``[profiles.NAME]``) whose tables are merged over the suite's own
before validation, so ``cpu`` can shrink a GPU grid to what a laptop finishes.
"""
from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SuiteError
from .plugins import Registry

PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda", "mps")

# table -> key -> (default, type name); REQUIRED marks keys without a default
REQUIRED = object()
SCHEMA: dict[str, dict[str, tuple[Any, str]]] = {
    "suite": {"name": (REQUIRED, "str"), "seeds": ([0], "list[int]"), "description": ("", "str")},
    "dataset": {
        "source": (REQUIRED, "str"), "path": ("", "str"), "train": ("train", "str"),
        "test": ("test", "str"), "val_fraction": (0.2, "float"), "sizes": (REQUIRED, "list[int]"),
        "download": (False, "bool"),
    },
    "compare": {"fail": ([], "list[str]")},
    "run": {
        "backends": (REQUIRED, "list[str]"), "backbones": (REQUIRED, "list[str]"),
        "batch_size": (32, "int"), "image_size": (0, "int"), "precision": ("auto", "str"),
        "device": ("auto", "str"),
    },
}
TOP_LEVEL = ("suite", "dataset", "run", "compare", "strategies", "profiles")


@dataclass(frozen=True)
class Suite:
    """A validated suite. ``strategies`` maps each strategy to its parameters' sweep values."""

    path: Path
    name: str
    seeds: tuple[int, ...]
    dataset: dict[str, Any]
    sizes: tuple[int, ...]
    backends: tuple[str, ...]
    backbones: tuple[str, ...]
    batch_size: int
    image_size: int | None
    precision: str
    device: str
    strategies: dict[str, dict[str, list[Any]]]
    strategy_backbones: dict[str, tuple[str, ...]] = field(default_factory=dict)
    profile: str | None = None
    profiles: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning a syntax error into a one-line SuiteError."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise SuiteError([f"{path}: no such suite file"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError([f"{path}: not valid TOML: {exc}"]) from None


def profile_names(raw: dict[str, Any]) -> list[str]:
    """The profiles a raw suite declares."""
    profiles = raw.get("profiles", {})
    return sorted(profiles) if isinstance(profiles, dict) else []


def apply_profile(raw: dict[str, Any], profile: str | None, path: Path) -> dict[str, Any]:
    """Merge ``[profiles.PROFILE]`` over the suite (tables merge, values replace)."""
    merged = copy.deepcopy(raw)
    profiles = merged.pop("profiles", {})
    if profile is None:
        return merged
    if profile not in profiles:
        allowed = ", ".join(sorted(profiles)) or "none declared"
        raise SuiteError([f"{path}: profiles: unknown profile {profile!r} (allowed: {allowed})"])
    _deep_merge(merged, profiles[profile])
    return merged


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> None:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def _type_ok(value: Any, type_name: str) -> bool:
    if type_name == "str":
        return isinstance(value, str)
    if type_name == "bool":
        return isinstance(value, bool)
    if type_name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if type_name.startswith("list["):
        inner = type_name[5:-1]
        return isinstance(value, list) and all(_type_ok(v, inner) for v in value)
    raise ValueError(type_name)


def type_name_of(default: Any) -> str:
    """The type name a default value implies (``[256]`` -> ``list[int]``)."""
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, str):
        return "str"
    if isinstance(default, (list, tuple)):
        inner = type_name_of(default[0]) if default else "int"
        return f"list[{inner}]"
    raise TypeError(f"unsupported parameter default {default!r}")


def sweep_values(value: Any, default: Any) -> list[Any] | None:
    """A parameter's value as a list of sweep points, or None if its type is wrong.

    A list sweeps a scalar parameter; a list of lists sweeps a list parameter.
    """
    tname = type_name_of(default)
    if _type_ok(value, tname):
        return [value]
    if isinstance(value, list) and value and all(_type_ok(v, tname) for v in value):
        return list(value)
    return None


def parse_suite(
    path: Path, registry: Registry, profile: str | None = None, raw: dict[str, Any] | None = None
) -> Suite:
    """Read, merge the profile, validate against the registry; raise SuiteError listing every problem."""
    raw = read_toml(path) if raw is None else raw
    declared_profiles = profile_names(raw)
    data = apply_profile(raw, profile, path)
    problems: list[str] = []

    def bad(key: str, message: str) -> None:
        problems.append(f"{path}: {key}: {message}")

    for key in data:
        if key not in TOP_LEVEL:
            bad(key, f"unknown table (allowed: {', '.join(TOP_LEVEL)})")
    values: dict[str, dict[str, Any]] = {}
    for table, keys in SCHEMA.items():
        section = data.get(table, {})
        if not isinstance(section, dict):
            bad(table, "must be a table")
            section = {}
        extra_keys: dict[str, tuple[Any, str]] = {}
        if table == "dataset":
            source_cls = registry.datasets.get(section.get("source"))
            if source_cls is not None:
                extra_keys = {k: (v, type_name_of(v)) for k, v in source_cls.options.items()}
        allowed = {**keys, **extra_keys}
        out: dict[str, Any] = {}
        for key, value in section.items():
            if key not in allowed:
                bad(f"{table}.{key}", f"unknown key (allowed: {', '.join(sorted(allowed))})")
                continue
            tname = allowed[key][1]
            if not _type_ok(value, tname):
                bad(f"{table}.{key}", f"must be {tname}, got {type(value).__name__} {value!r}")
                continue
            out[key] = value
        for key, (default, _) in allowed.items():
            if key not in out and key not in section:
                if default is REQUIRED:
                    bad(f"{table}.{key}", "required key is missing")
                else:
                    out[key] = copy.deepcopy(default)
        values[table] = out

    run, ds, meta = values["run"], values["dataset"], values["suite"]
    _check_names(run, ds, registry, bad)
    _check_ranges(run, ds, meta, bad)
    strategy_backbones: dict[str, tuple[str, ...]] = {}
    for name, table in (data.get("strategies") or {}).items():
        if isinstance(table, dict) and "backbones" in table:
            only = table["backbones"]
            if not (isinstance(only, list) and only and all(isinstance(b, str) for b in only)):
                bad(f"strategies.{name}.backbones", f"must be a non-empty list[str], got {only!r}")
                continue
            for i, b in enumerate(only):
                if b not in run.get("backbones", []):
                    bad(f"strategies.{name}.backbones[{i}]", f"{b!r} is not in run.backbones "
                        f"(allowed: {', '.join(run.get('backbones', []))})")
            strategy_backbones[name] = tuple(only)
    section = data.get("strategies", {})
    if isinstance(section, dict):  # `backbones` restricts a strategy; it is not a parameter
        section = {n: ({k: v for k, v in t.items() if k != "backbones"} if isinstance(t, dict) else t)
                   for n, t in section.items()}
    strategies = _check_strategies(section, registry, bad)
    for i, text in enumerate(values["compare"].get("fail", [])):
        from .compare import Gate

        try:
            Gate.parse(text)
        except Exception as exc:  # UsageError: reworded for the suite file
            bad(f"compare.fail[{i}]", str(exc).replace("--fail ", ""))
    if problems:
        raise SuiteError(problems)
    return Suite(
        path=path, name=meta["name"], seeds=tuple(meta["seeds"]), dataset=ds, sizes=tuple(ds["sizes"]),
        backends=tuple(run["backends"]), backbones=tuple(run["backbones"]), batch_size=run["batch_size"],
        image_size=run["image_size"] or None, precision=run["precision"], device=run["device"],
        strategies=strategies, strategy_backbones=strategy_backbones, profile=profile, profiles=tuple(declared_profiles), raw=data,
    )


def _allowed(names: list[str]) -> str:
    return ", ".join(sorted(names)) or "none installed"


def _check_names(run: dict, ds: dict, registry: Registry, bad) -> None:
    if "source" in ds and ds["source"] not in registry.datasets:
        bad("dataset.source", f"unknown data-set source {ds['source']!r} (allowed: {_allowed(list(registry.datasets))})")
    for i, backend in enumerate(run.get("backends", [])):
        if backend not in registry.backends:
            bad(f"run.backends[{i}]", f"unknown backend {backend!r} (allowed: {_allowed(list(registry.backends))})")
    for i, backbone in enumerate(run.get("backbones", [])):
        for backend in run.get("backends", []):
            if backend in registry.backends and backbone not in registry.backbones.get(backend, {}):
                bad(f"run.backbones[{i}]", f"unknown backbone {backbone!r} for backend {backend!r} "
                    f"(allowed: {_allowed(registry.backbone_names(backend))})")


def _check_ranges(run: dict, ds: dict, meta: dict, bad) -> None:
    if run.get("precision") not in PRECISIONS:
        bad("run.precision", f"unknown precision {run.get('precision')!r} (allowed: {', '.join(PRECISIONS)})")
    if run.get("device") not in DEVICES:
        bad("run.device", f"unknown device {run.get('device')!r} (allowed: {', '.join(DEVICES)})")
    if "batch_size" in run and run["batch_size"] < 1:
        bad("run.batch_size", "must be at least 1")
    if "image_size" in run and run["image_size"] < 0:
        bad("run.image_size", "must be a positive number of pixels (0 or absent: the backbone's own)")
    vf = ds.get("val_fraction")
    if vf is not None and not 0.0 <= vf < 1.0:
        bad("dataset.val_fraction", f"must be in [0, 1), got {vf}")
    for key, items in (("dataset.sizes", ds.get("sizes")), ("suite.seeds", meta.get("seeds")),
                       ("run.backends", run.get("backends")), ("run.backbones", run.get("backbones"))):
        if items is not None and not items:
            bad(key, "must not be empty")
        if items is not None and len(set(items)) != len(items):
            bad(key, "has duplicates")
    for i, size in enumerate(ds.get("sizes") or []):
        if size < 2:
            bad(f"dataset.sizes[{i}]", f"must be at least 2 images per class, got {size}")


def _check_strategies(section: Any, registry: Registry, bad) -> dict[str, dict[str, list[Any]]]:
    out: dict[str, dict[str, list[Any]]] = {}
    if not isinstance(section, dict) or not section:
        bad("strategies", f"name at least one strategy table (allowed: {_allowed(list(registry.strategies))})")
        return out
    for name, params in section.items():
        cls = registry.strategies.get(name)
        if cls is None:
            bad(f"strategies.{name}", f"unknown strategy (allowed: {_allowed(list(registry.strategies))})")
            continue
        if not isinstance(params, dict):
            bad(f"strategies.{name}", "must be a table")
            continue
        resolved: dict[str, list[Any]] = {}
        for key, value in params.items():
            if key not in cls.params:
                bad(f"strategies.{name}.{key}", f"unknown parameter (allowed: {_allowed(list(cls.params))})")
                continue
            points = sweep_values(value, cls.params[key])
            if points is None:
                tname = type_name_of(cls.params[key])
                bad(f"strategies.{name}.{key}", f"must be {tname} or a list of them to sweep, got {value!r}")
                continue
            resolved[key] = points
        for key, default in cls.params.items():
            resolved.setdefault(key, [copy.deepcopy(default)])
        out[name] = resolved
    return out
