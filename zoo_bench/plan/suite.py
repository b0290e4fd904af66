"""Suite files: TOML in, a validated :class:`Suite` out, with one-line ``file: key: problem`` errors.

A suite may carry named profiles (``[profiles.NAME]``) whose tables are merged over the suite's own
before validation, so ``cpu`` can shrink a GPU grid to what a laptop finishes.
"""
from __future__ import annotations

import copy
import itertools
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import SuiteError, ZooBenchError
from ..params import quiet_defaults
from ..plugins import Registry
from .gates import Gate

PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda", "mps")
MAX_SEED = 2**32  # numpy, scikit-learn and the frameworks all take seeds in [0, 2**32)
MAX_BATCH_SIZE = 65536
MAX_IMAGE_SIZE = 4096  # px a side: decoding allocates size * size * 3 bytes per image
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # what may break a line or a terminal

# table -> key -> (default, type name); REQUIRED marks keys without a default
REQUIRED = object()
SCHEMA: dict[str, dict[str, tuple[Any, str]]] = {
    "suite": {"name": (REQUIRED, "str"), "seeds": ([0], "list[int]"), "description": ("", "str")},
    "dataset": {
        "source": (REQUIRED, "str"), "path": ("", "str"), "train": ("train", "str"),
        "test": ("test", "str"), "val_fraction": (0.2, "float"), "sizes": (REQUIRED, "list[int]"),
        "download": (False, "bool"),
    },
    "compare": {"fail": ([], "list[str]"), "equivalence": (1.0, "float"), "timing_floor_ms": (5.0, "float"),
                "timing_spread_multiple": (3.0, "float")},
    "select": {"metric": ("val_accuracy", "str"), "search": ("none", "str"), "tune": ([], "list[str]"),
               "refit": (False, "bool"), "folds": (0, "int"), "repeats": (1, "int"), "one_se": (False, "bool"),
               "fold_pixels": (False, "bool")},
    "ray": {"num_gpus": (1.0, "float"), "num_cpus": (1.0, "float")},
    "tracking": {"mlflow": (False, "bool"), "mlflow_uri": ("", "str")},
    "run": {
        "backends": (REQUIRED, "list[str]"), "backbones": (REQUIRED, "list[str]"),
        "batch_size": (32, "int"), "min_batch_size": (2, "int"), "image_size": (0, "int"), "precision": ("auto", "str"),
        "device": ("auto", "str"), "compile": (False, "bool"), "inference_cost": (True, "bool"),
    },
}
TOP_LEVEL = ("suite", "dataset", "run", "compare", "select", "ray", "tracking", "strategies", "profiles")
SELECT_METRICS = ("val_accuracy", "val_loss", "val_balanced_accuracy")
SEARCHES = ("none", "default")
PATH_KEYS = ("dataset.path", "dataset.train", "dataset.test")  # strings that become file names

Bad = Callable[[str, str], None]


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
    min_batch_size: int = 2  # out-of-memory retries halve the batch size down to this
    compile: bool = False  # compile the network for pixel epochs where the backend can (torch.compile)
    inference_cost: bool = True  # measure each trained model's latency, throughput, multiply-adds and size
    select_metric: str | None = None  # model selection on validation when set ([select])
    tuned: dict[str, tuple[str, ...]] = field(default_factory=dict)  # strategy -> parameters selected over
    tuned_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)  # strategy -> their default values
    quiet: dict[str, dict[str, Any]] = field(default_factory=dict)  # strategy -> params left out of ids at these defaults
    refit: bool = False  # retrain each chosen configuration on train + validation and test that
    folds: int = 0  # K-fold selection over the size's pool (0: on the validation split); implies refit
    repeats: int = 1  # repeats of the K folds, each with another assignment
    one_se: bool = False  # choose the simplest configuration within one standard error of the best fold mean
    fold_pixels: bool = False  # cross-validate the strategies on pixels too (costly), not only those on features
    simpler: dict[str, dict[str, str]] = field(default_factory=dict)  # strategy -> Strategy.simpler, for one_se
    ray: dict[str, float] = field(default_factory=lambda: {"num_gpus": 1.0, "num_cpus": 1.0})  # per unit task
    tracking: dict[str, Any] = field(default_factory=lambda: {"mlflow": False, "mlflow_uri": ""})  # [tracking]
    profile: str | None = None

    def cross_validates(self, strategy: Any) -> bool:
        """Whether ``[select] folds`` chooses this strategy's configuration (else the validation split does)."""
        return bool(self.folds) and (bool(strategy.on_features) or self.fold_pixels)
    profiles: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)


def key_path(*parts: Any) -> str:
    """``strategies.svm.C``, quoting parts that are not bare TOML keys so a message stays one line."""
    return ".".join(p if isinstance(p, str) and BARE_KEY.fullmatch(p) else json.dumps(str(p)) for p in parts)


def show(value: Any, limit: int = 80) -> str:
    """A value's type and repr, cut short: messages quote user input, which may be huge."""
    text = repr(value)
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return f"{type(value).__name__} {text}"


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning every way it can be unreadable into a one-line SuiteError."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise SuiteError([f"{path}: no such suite file"]) from None
    except OSError as exc:  # a folder, no permission
        raise SuiteError([f"{path}: cannot read the suite file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1
        raise SuiteError([f"{path}: not valid TOML: not UTF-8 text ({exc.reason} at line {line})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError([f"{path}: not valid TOML: {' '.join(str(exc).split())}"]) from None


def profile_names(raw: dict[str, Any]) -> list[str]:
    """The profiles a raw suite declares."""
    profiles = raw.get("profiles", {})
    return sorted(profiles) if isinstance(profiles, dict) else []


def profile_problems(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, problem) for every declared profile whose shape cannot merge over the suite's tables.

    Checked for all profiles, applied or not, so a broken one is found before someone needs it.
    """
    profiles = raw.get("profiles", {})
    if not isinstance(profiles, dict):
        return [("profiles", f"must be a table of [profiles.NAME] tables, got {show(profiles)}")]
    out: list[tuple[str, str]] = []
    tables = [t for t in TOP_LEVEL if t != "profiles"]
    for name, body in profiles.items():
        if not isinstance(body, dict):
            out.append((key_path("profiles", name), f"must be a table, got {show(body)}"))
            continue
        for table, over in body.items():
            where = ("profiles", name, table)
            if table not in tables:
                out.append((key_path(*where), f"unknown table (allowed: {', '.join(tables)})"))
            elif not isinstance(over, dict):
                out.append((key_path(*where), f"must be a table, got {show(over)}"))
            elif table == "strategies":
                out += [(key_path(*where, strategy), f"must be a table, got {show(params)}")
                        for strategy, params in over.items() if not isinstance(params, dict)]
    return out


def apply_profile(raw: dict[str, Any], profile: str | None, path: Path) -> dict[str, Any]:
    """Merge ``[profiles.PROFILE]`` over the suite (tables merge, values replace)."""
    merged = copy.deepcopy(raw)
    profiles = merged.pop("profiles", {})
    if profile is None:
        return merged
    if not isinstance(profiles, dict):
        raise SuiteError([f"{path}: profiles: must be a table of [profiles.NAME] tables, got {show(profiles)}"])
    if profile not in profiles:
        allowed = ", ".join(sorted(profiles)) or "none declared"
        raise SuiteError([f"{path}: profiles: unknown profile {profile!r} (allowed: {allowed})"])
    if not isinstance(profiles[profile], dict):
        raise SuiteError([f"{path}: {key_path('profiles', profile)}: must be a table, got {show(profiles[profile])}"])
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


def sweep_values(value: Any, default: Any, tname: str | None = None) -> list[Any] | None:
    """A parameter's value as a list of sweep points, or None if its type is wrong.

    A list sweeps a scalar parameter; a list of lists sweeps a list parameter.
    """
    tname = tname or type_name_of(default)
    if _type_ok(value, tname):
        return [value]
    if isinstance(value, list) and value and all(_type_ok(v, tname) for v in value):
        return list(value)
    return None


def _finite(value: Any) -> bool:
    """No NaN or infinity anywhere in a (possibly nested) parameter value."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def _has_duplicates(items: list[Any]) -> bool:
    """Duplicates by equality (items may be lists, which do not hash)."""
    return any(item in items[:i] for i, item in enumerate(items))


def parse_suite(
    path: Path, registry: Registry, profile: str | None = None, raw: dict[str, Any] | None = None
) -> Suite:
    """Read, merge the profile, validate against the registry; raise SuiteError listing every problem."""
    raw = read_toml(path) if raw is None else raw
    problems: list[str] = []

    def bad(key: str, message: str) -> None:
        problems.append(f"{path}: {key}: {message}")

    for key, message in profile_problems(raw):
        bad(key, message)
    declared_profiles = profile_names(raw)
    # a misshapen profile is not merged: the suite's own problems are still worth listing
    data = apply_profile(raw, None if problems else profile, path)

    for key in data:
        if key not in TOP_LEVEL:
            bad(key_path(key), f"unknown table (allowed: {', '.join(TOP_LEVEL)})")
    values = {table: _check_table(table, data.get(table, {}), registry, bad) for table in SCHEMA}
    run, ds, meta = values["run"], values["dataset"], values["suite"]
    _check_names(run, ds, registry, bad)
    _check_ranges(run, ds, meta, bad)
    strategies, strategy_backbones, given = _check_strategies(data.get("strategies", {}), registry, run, bad)
    tuned = _check_select(values["select"], "select" in data, strategies, given, registry, bad)
    _check_pretrained(strategies, strategy_backbones, run, registry, bad)
    for key, allow_zero in (("num_gpus", True), ("num_cpus", False)):
        value = values["ray"].get(key)
        if value is None:
            continue
        if not (0 <= value <= 1024) or (value == 0 and not allow_zero):
            bad(f"ray.{key}", f"must be {'at least 0' if allow_zero else 'more than 0'} and at most 1024, got {value}")
        elif value > 1 and value != int(value):  # Ray splits one GPU or CPU, not several
            bad(f"ray.{key}", f"must be a whole number above 1 (a fraction only below 1), got {value}")
    folds = values["select"].get("folds") if "select" in data else 0
    sizes = [v for v in ds.get("sizes") or [] if isinstance(v, int)]
    if folds and sizes and min(sizes) < folds:
        bad("select.folds", f"{folds} folds need at least {folds} images per class; dataset.sizes has {min(sizes)}")
    equivalence = values["compare"].get("equivalence")
    if equivalence is not None and not (0 < equivalence <= 100):
        bad("compare.equivalence", f"must be more than 0 and at most 100 points, got {equivalence}")
    for key in ("timing_floor_ms", "timing_spread_multiple"):
        value = values["compare"].get(key)
        if value is not None and value < 0:
            bad(f"compare.{key}", f"must be 0 or more, got {value}")
    for i, text in enumerate(values["compare"].get("fail", [])):
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
        strategies=strategies, strategy_backbones=strategy_backbones, min_batch_size=run["min_batch_size"], compile=run["compile"],
        inference_cost=run["inference_cost"],
        select_metric=values["select"]["metric"] if "select" in data else None, tuned=tuned,
        refit=bool(values["select"].get("refit") or values["select"].get("folds")) if "select" in data else False,
        folds=int(values["select"].get("folds") or 0) if "select" in data else 0,
        repeats=int(values["select"].get("repeats") or 1) if "select" in data else 1,
        one_se=bool(values["select"].get("one_se")) if "select" in data else False,
        fold_pixels=bool(values["select"].get("fold_pixels")) if "select" in data else False,
        tuned_defaults={name: {k: registry.strategies[name].param_specs()[k].default for k in keys}
                        for name, keys in tuned.items()},
        quiet={name: quiet_defaults(registry.strategies[name].params) for name in strategies},
        simpler={name: dict(registry.strategies[name].simpler) for name in tuned},
        ray={k: float(v) for k, v in values["ray"].items()}, tracking=dict(values["tracking"]), profile=profile,
        profiles=tuple(declared_profiles), raw=data,
    )


def _check_table(table: str, section: Any, registry: Registry, bad: Bad) -> dict[str, Any]:
    """One schema table's well-typed values, defaults filled in; problems go to ``bad``."""
    if not isinstance(section, dict):
        bad(table, f"must be a table, got {show(section)}")
        return {}
    allowed = dict(SCHEMA[table])
    if table == "dataset":  # a source's own options join the table's keys
        source = section.get("source")
        source_cls = registry.datasets.get(source) if isinstance(source, str) else None
        if source_cls is not None:
            allowed.update({k: (v, type_name_of(v)) for k, v in source_cls.options.items()})
    out: dict[str, Any] = {}
    for key, value in section.items():
        if key not in allowed:
            bad(key_path(table, key), f"unknown key (allowed: {', '.join(sorted(allowed))})")
            continue
        tname = allowed[key][1]
        if not _type_ok(value, tname):
            bad(key_path(table, key), f"must be {tname}, got {show(value)}")
            continue
        out[key] = value
    for key, (default, _) in allowed.items():
        if key not in out and key not in section:
            if default is REQUIRED:
                bad(key_path(table, key), "required key is missing")
            else:
                out[key] = copy.deepcopy(default)
    return out


def _allowed(names: list[str]) -> str:
    return ", ".join(sorted(names)) or "none installed"


def _failed_hint(registry: Registry) -> str:
    """For an unknown name while a plugin failed to load: that plugin may be the one (its line is above)."""
    failed = sum(1 for p in registry.plugins if p.error)
    return (f"; {'a plugin' if failed == 1 else f'{failed} plugins'} failed to load (see above) and may register it"
            if failed else "")


def _check_names(run: dict, ds: dict, registry: Registry, bad: Bad) -> None:
    if "source" in ds and ds["source"] not in registry.datasets:
        bad("dataset.source", f"unknown data-set source {ds['source']!r} (allowed: {_allowed(list(registry.datasets))})"
            f"{_failed_hint(registry)}")
    for i, backend in enumerate(run.get("backends", [])):
        if backend not in registry.backends:
            bad(f"run.backends[{i}]", f"unknown backend {backend!r} (allowed: {_allowed(list(registry.backends))})"
                f"{_failed_hint(registry)}")
    for i, backbone in enumerate(run.get("backbones", [])):
        for backend in run.get("backends", []):
            if backend in registry.backends:
                problem = _backbone_problem(registry, backend, backbone)
                if problem:
                    bad(f"run.backbones[{i}]", problem)


def _backbone_problem(registry: Registry, backend: str, backbone: str) -> str | None:
    """Why ``backbone`` is not a backbone of ``backend`` here, or None."""
    if not isinstance(backbone, str):
        return f"must be a string, got {backbone!r}"
    if "/" in backbone:
        return f"backbone {backbone!r}: no '/' in a backbone name (trial ids and file names use it)"
    catalog = registry.catalog_of(backbone)
    try:
        spec = registry.backbone(backend, backbone)
    except ZooBenchError as exc:
        return f"backbone {backbone!r}: {exc}"
    if spec is not None:
        return None
    if catalog is not None and catalog.backend != backend:
        return (f"backbone {backbone!r} exists for backend {catalog.backend!r} only, not {backend!r} "
                f"({catalog.prefix} names are {catalog.description or catalog.name + ' models'})")
    if catalog is not None:
        return (f"unknown backbone {backbone!r}: {catalog.name} has no model {backbone.split(':', 1)[1]!r} "
                f"(browse with: zoo-bench list backbones '{backbone.split(':', 1)[1].split('.')[0][:12]}*')")
    prefixes = "".join(f", {c.prefix}NAME" for c in registry.catalogs.values() if c.backend == backend)
    return (f"unknown backbone {backbone!r} for backend {backend!r} "
            f"(allowed: {_allowed(registry.backbone_names(backend))}{prefixes}){_failed_hint(registry)}")


def _check_ranges(run: dict, ds: dict, meta: dict, bad: Bad) -> None:
    if run.get("precision") not in PRECISIONS:
        bad("run.precision", f"unknown precision {run.get('precision')!r} (allowed: {', '.join(PRECISIONS)})")
    if run.get("device") not in DEVICES:
        bad("run.device", f"unknown device {run.get('device')!r} (allowed: {', '.join(DEVICES)})")
    if "batch_size" in run and not 1 <= run["batch_size"] <= MAX_BATCH_SIZE:
        bad("run.batch_size", f"must be between 1 and {MAX_BATCH_SIZE}, got {run['batch_size']}")
    if "min_batch_size" in run and "batch_size" in run and not 1 <= run["min_batch_size"] <= run["batch_size"]:
        bad("run.min_batch_size", f"must be between 1 and run.batch_size ({run['batch_size']}), "
            f"got {run['min_batch_size']}")
    if "image_size" in run and not 0 <= run["image_size"] <= MAX_IMAGE_SIZE:
        bad("run.image_size", f"must be between 1 and {MAX_IMAGE_SIZE} pixels (0 or absent: the backbone's own), "
            f"got {run['image_size']}")
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
    for i, seed in enumerate(meta.get("seeds") or []):
        if not 0 <= seed < MAX_SEED:
            bad(f"suite.seeds[{i}]", f"must be in [0, 2**32), got {seed}")
    _check_strings(ds, meta, bad)


def _check_strings(ds: dict, meta: dict, bad: Bad) -> None:
    """Strings that become file and folder names: the suite name names the results folder."""
    name = meta.get("name")
    if name is not None and (not name.strip() or name in (".", "..") or "/" in name or "\\" in name
                             or CONTROL.search(name)):
        bad("suite.name", f"must be a folder name (no '/', '\\', control characters, '.' or '..'), got {name!r}")
    for key in PATH_KEYS:
        value = ds.get(key.split(".")[1])
        if value is not None and CONTROL.search(value):
            bad(key, f"must not contain control characters, got {value!r}")


def _check_strategies(section: Any, registry: Registry, run: dict, bad: Bad
                      ) -> tuple[dict[str, dict[str, list[Any]]], dict[str, tuple[str, ...]], dict[str, set[str]]]:
    """Each strategy's sweep values, the backbones a strategy is restricted to, and the keys the suite gave."""
    out: dict[str, dict[str, list[Any]]] = {}
    only: dict[str, tuple[str, ...]] = {}
    given: dict[str, set[str]] = {}
    allowed = _allowed(list(registry.strategies))
    if not isinstance(section, dict):
        bad("strategies", f"must be a table of [strategies.NAME] tables, got {show(section)} (allowed: {allowed})")
        return out, only, given
    if not section:
        bad("strategies", f"name at least one strategy table (allowed: {allowed})")
        return out, only, given
    for name, params in section.items():
        cls = registry.strategies.get(name)
        if cls is None:
            bad(key_path("strategies", name), f"unknown strategy (allowed: {allowed}){_failed_hint(registry)}")
            continue
        if not isinstance(params, dict):
            bad(key_path("strategies", name), f"must be a table, got {show(params)}")
            continue
        params = dict(params)
        if "backbones" in params:  # restricts the strategy; it is not a parameter
            backbones = _check_strategy_backbones(name, params.pop("backbones"), run, bad)
            if backbones:
                only[name] = backbones
        out[name] = _check_params(name, params, cls, bad, registry.duplicate_note("strategy", name))
        given[name] = set(params)
    return out, only, given


def _check_select(select: dict, present: bool, strategies: dict[str, dict[str, list[Any]]],
                  given: dict[str, set[str]], registry: Registry, bad: Bad) -> dict[str, tuple[str, ...]]:
    """The parameters each strategy is tuned over; ``search = "default"`` adds the strategy's search space.

    A default search space fills only parameters the suite did not set: a suite that lists values
    (to cap a costly search) keeps its own.
    """
    if not present:
        return {}
    if select.get("metric") not in SELECT_METRICS:
        bad("select.metric", f"unknown metric {select.get('metric')!r} (allowed: {', '.join(SELECT_METRICS)})")
    if select.get("search") not in SEARCHES:
        bad("select.search", f"unknown search {select.get('search')!r} (allowed: {', '.join(SEARCHES)})")
    folds, repeats = select.get("folds", 0), select.get("repeats", 1)
    if folds is not None and folds != 0 and not 2 <= folds <= 20:
        bad("select.folds", f"must be 0 (no cross-validation) or 2 to 20, got {folds}")
    if repeats is not None and not 1 <= repeats <= 10:
        bad("select.repeats", f"must be 1 to 10, got {repeats}")
    if not folds and (select.get("one_se") or select.get("fold_pixels") or repeats not in (None, 1)):
        bad("select", "one_se, fold_pixels and repeats need folds (K-fold selection): set select.folds = 5, say")
    tune = select.get("tune", [])
    known = {k for name in strategies for k in registry.strategies[name].param_specs()}
    for i, key in enumerate(tune):
        if key not in known:
            bad(f"select.tune[{i}]", f"{key!r} is not a parameter of the suite's strategies "
                f"(allowed: {_allowed(sorted(known))})")
    if len(set(tune)) != len(tune):
        bad("select.tune", "has duplicates")
    tuned: dict[str, tuple[str, ...]] = {}
    for name, sweeps in strategies.items():
        cls = registry.strategies[name]
        keys = [k for k in tune if k in sweeps]
        if select.get("search") == "default":
            for key, values in cls.search_space.items():
                if key in sweeps and key not in given.get(name, set()):
                    sweeps[key] = list(values)
                if key in sweeps and key not in keys:
                    keys.append(key)
        tuned[name] = tuple(sorted(keys))
        folded = bool(folds) and (cls.on_features or bool(select.get("fold_pixels")))
        if not cls.val_predictions and not folded and any(len(sweeps.get(k, [])) > 1 for k in keys):
            bad(key_path("strategies", name), f"is tuned by [select] ({', '.join(sorted(keys))}), but it gives no "
                "validation predictions to choose by (val_predictions = False): give it one value each"
                + (", or set select.folds" if cls.on_features else ""))
    return tuned


def _check_pretrained(strategies: dict[str, Any], only: dict[str, tuple[str, ...]], run: dict, registry: Registry,
                      bad: Bad) -> None:
    """A strategy that starts from pretrained weights on a backbone that has none would fail every trial:
    refused here, before anything runs."""
    for name in strategies:
        if not registry.strategies[name].pretrained:
            continue
        for backend in run.get("backends") or []:
            for backbone in only.get(name) or run.get("backbones") or []:
                try:
                    spec = registry.backbone(backend, backbone)
                except Exception:  # a catalogue that cannot resolve here: reported with run.backbones
                    continue
                if spec is not None and spec.weights == "none":
                    bad(key_path("strategies", name), f"starts from pretrained weights, but backbone {backbone!r} "
                        f"({backend}) has none: train it with a strategy that does not (scratch), or name the "
                        f"backbones this strategy runs on (strategies.{name}.backbones)")


def _check_strategy_backbones(name: str, value: Any, run: dict, bad: Bad) -> tuple[str, ...]:
    key = key_path("strategies", name, "backbones")
    if not (isinstance(value, list) and value and all(isinstance(b, str) for b in value)):
        bad(key, f"must be a non-empty list[str], got {show(value)}")
        return ()
    known = run.get("backbones", [])
    for i, backbone in enumerate(value):
        if backbone not in known:
            bad(f"{key}[{i}]", f"{backbone!r} is not in run.backbones (allowed: {', '.join(map(key_path, known))})")
    return tuple(value)


def _check_params(name: str, params: dict[str, Any], cls: Any, bad: Bad, duplicate: str = "") -> dict[str, list[Any]]:
    """One strategy's parameters as sweep points, checked against its declared schema; defaults filled in.
    ``duplicate``: whose strategy of this name is in use, when another plugin's was ignored."""
    specs = cls.param_specs()
    renamed = getattr(cls, "renamed_params", {}) or {}
    resolved: dict[str, list[Any]] = {}
    for key, value in params.items():
        where = key_path("strategies", name, key)
        if key not in specs:
            hint = (f"renamed to {renamed[key]!r}" if key in renamed else
                    f"allowed: {_allowed(list(specs))}" if specs else "it takes no parameters")
            bad(where, f"unknown parameter ({hint}){duplicate}")
            continue
        spec = specs[key]
        if isinstance(value, list) and not isinstance(spec.default, list):
            value = [spec.canonical(v) for v in value]
        else:
            value = spec.canonical(value)
        points = sweep_values(value, spec.default, spec.type_name)
        if points is None:
            tname = spec.type_name or type_name_of(spec.default)
            extra = f" ({spec.allowed()})" if spec.choices else ""
            bad(where, f"must be {tname}{extra} or a list of them to sweep, got {show(value)}")
        elif not _finite(points):
            bad(where, f"must be a finite number, got {value!r}")
        elif _has_duplicates(points):
            bad(where, f"sweeps a value twice, which would repeat trials: {value!r}")
        else:
            problems = [p for p in (spec.problem(v) for v in points) if p]
            if problems:
                bad(where, problems[0])
            else:
                resolved[key] = points
    for key, spec in specs.items():
        resolved.setdefault(key, [copy.deepcopy(spec.default)])
    keys = sorted(resolved)
    seen: set[str] = set()
    for combo in itertools.islice(itertools.product(*(resolved[k] for k in keys)), 10000):
        for key, message in cls.check(dict(zip(keys, combo))):
            if key not in seen:  # one line per key, not one per swept combination
                seen.add(key)
                bad(key_path("strategies", name, key), message)
    return resolved
