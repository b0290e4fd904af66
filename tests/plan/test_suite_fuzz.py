"""Generated malformed suites: `zoo-bench validate` must answer each with exit 2 and one-line errors.

A known-valid suite is mutated (one change, or a few) and written out as TOML, or its text is broken;
the command runs in this process, so any exception that escapes ``main`` fails the test.
Every error line must start with ``error: FILE: KEY:`` and a single mutation must be named by its key.
"""
from __future__ import annotations

import contextlib
import copy
import datetime as dt
import io
import json
import math
import os
import re
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoo_bench import cli
from zoo_bench.plan.gates import Gate
from zoo_bench.plugins import load_plugins

EXAMPLES = int(os.environ.get("ZOO_BENCH_FUZZ_EXAMPLES", "600"))  # more for a longer local hunt
REGISTRY = load_plugins()
BACKBONES = set(REGISTRY.backbone_names("torch"))
PROFILES = ("small", "wide")

BASE: dict[str, Any] = {
    "suite": {"name": "fuzz", "seeds": [0, 1], "description": "generated"},
    "dataset": {"source": "synthetic", "classes": 2, "train_per_class": 12, "test_per_class": 4,
                "image_size": 16, "val_fraction": 0.25, "sizes": [4, 8]},
    "run": {"backends": ["torch"], "backbones": ["tiny_cnn", "efficientnet_lite0"], "batch_size": 8,
            "image_size": 32, "precision": "fp32", "device": "cpu"},
    "compare": {"fail": ["accuracy:-1pt"]},
    "strategies": {
        "svm": {"C": [0.5, 1.0], "backbones": ["efficientnet_lite0"]},
        "scratch": {"epochs": 2, "hidden": [[16], [32, 16]], "backbones": ["tiny_cnn"]},
        "fpt": {"finetune_lr": 1e-4, "augment": False, "backbones": ["efficientnet_lite0"]},
    },
    "profiles": {"small": {"dataset": {"sizes": [4]}, "strategies": {"scratch": {"epochs": 1}}},
                 "wide": {"run": {"batch_size": 16}}},
}

# The type of every key a mutation may retype: schema keys, the synthetic source's options.
KEY_TYPES: dict[tuple[str, ...], str] = {
    ("suite", "name"): "str", ("suite", "seeds"): "list[int]", ("suite", "description"): "str",
    ("dataset", "source"): "str", ("dataset", "path"): "str", ("dataset", "train"): "str",
    ("dataset", "test"): "str", ("dataset", "val_fraction"): "float", ("dataset", "sizes"): "list[int]",
    ("dataset", "download"): "bool", ("dataset", "classes"): "int", ("dataset", "train_per_class"): "int",
    ("dataset", "test_per_class"): "int", ("dataset", "image_size"): "int", ("dataset", "data_seed"): "int",
    ("run", "backends"): "list[str]", ("run", "backbones"): "list[str]", ("run", "batch_size"): "int",
    ("run", "image_size"): "int", ("run", "precision"): "str", ("run", "device"): "str",
    ("compare", "fail"): "list[str]",
}
TABLES = ("suite", "dataset", "run", "compare", "select", "strategies", "profiles")
REQUIRED = (("suite", "name"), ("dataset", "source"), ("dataset", "sizes"), ("run", "backends"),
            ("run", "backbones"))
# Deleting a whole table: the key its error names.
TABLE_REQUIRED = {"suite": "suite.name", "dataset": "dataset.source", "run": "run.backends",
                  "strategies": "strategies"}
BARE = re.compile(r"[A-Za-z0-9_-]+")
PART = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*")'
KEY = re.compile(rf"{PART}(?:\.{PART}|\[\d+\])*")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


# --- a small TOML writer: tomllib only reads -------------------------------------------------

def toml_str(text: str) -> str:
    """A basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    return key if BARE.fullmatch(key) else toml_str(key)


def toml_value(value: Any) -> str:
    """Any value as TOML; tables inside arrays or values become inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def dump_toml(doc: dict[str, Any]) -> str:
    """Top-level values first, then one ``[a.b]`` header per table, parents before children."""
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for key, value in doc.items():
        if isinstance(value, dict):
            _dump_table([key], value, lines)
    return "\n".join(lines) + "\n"


def _dump_table(prefix: list[str], table: dict[str, Any], lines: list[str]) -> None:
    lines.append("[" + ".".join(toml_key(k) for k in prefix) + "]")
    lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for key, value in table.items():
        if isinstance(value, dict):
            _dump_table([*prefix, key], value, lines)


# --- what counts as a well-typed value (independent of zoo_bench.plan.suite) ----------------------

def has_type(value: Any, tname: str) -> bool:
    if tname == "str":
        return isinstance(value, str)
    if tname == "bool":
        return isinstance(value, bool)
    if tname == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if tname == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    inner = tname[5:-1]
    return isinstance(value, list) and all(has_type(v, inner) for v in value)


def param_type(default: Any) -> str:
    if isinstance(default, list):
        return f"list[{param_type(default[0])}]"
    return {bool: "bool", int: "int", float: "float", str: "str"}[type(default)]


def accepted(value: Any, tname: str, sweep: bool) -> bool:
    """Would the suite accept this value's type (a sweep also takes a non-empty list of them)?"""
    if has_type(value, tname):
        return True
    return sweep and isinstance(value, list) and bool(value) and all(has_type(v, tname) for v in value)


def typed_targets() -> list[tuple[tuple[str, ...], str, bool]]:
    """(path, type, sweeps) for every key a type mutation may hit."""
    out = [(path, tname, False) for path, tname in KEY_TYPES.items()]
    for name in BASE["strategies"]:
        out.append((("strategies", name, "backbones"), "list[str]", False))
        for param, spec in REGISTRY.strategies[name].param_specs().items():
            out.append((("strategies", name, param), param_type(spec.default), True))
    return out


TYPED = typed_targets()


def key_path(*parts: str | int) -> str:
    """How an error names a key: bare parts as they are, others JSON-quoted, indexes in brackets."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if BARE.fullmatch(part) else json.dumps(part)
            out += f".{text}" if out else text
    return out


# --- values and names --------------------------------------------------------------------------

TEXT = st.text(max_size=8)
SCALARS = st.one_of(
    st.integers(), st.floats(), TEXT, st.booleans(), st.dates(), st.times(),
    st.datetimes(timezones=st.none() | st.just(dt.timezone.utc)),
)
ANY_VALUE = st.one_of(
    SCALARS, st.lists(SCALARS, max_size=4), st.lists(st.lists(st.integers(), max_size=3), max_size=3),
    st.dictionaries(TEXT, SCALARS, max_size=3),
)
NON_TABLE = ANY_VALUE.filter(lambda v: not isinstance(v, dict))
KEY_NAME = st.one_of(st.from_regex(r"[a-z_][a-z0-9_-]{0,10}", fullmatch=True), st.text(max_size=6))


def one_in(n: int) -> st.SearchStrategy[bool]:
    """True about once in n draws: a middle value, as generation favours the ends of a range."""
    return st.integers(0, n - 1).map(lambda i: i == n // 2)


def wrong_value(tname: str, sweep: bool) -> st.SearchStrategy[Any]:
    return ANY_VALUE.filter(lambda v: not accepted(v, tname, sweep))


def bad_gate(text: str) -> bool:
    try:
        Gate.parse(text)
    except Exception:
        return True
    return False


# --- mutations ----------------------------------------------------------------------------------

@dataclass
class Mutation:
    """One change to a suite: ``apply`` edits the document in place and returns False where it
    no longer fits (an earlier change removed its table); ``keys``: one of them must be named."""

    apply: Callable[[dict[str, Any]], bool]
    keys: tuple[str, ...]
    table: str | None = None  # the top-level table it changes, for moving it into a profile
    profile: str | None = None  # needs this --profile
    in_profile_ok: bool = True
    kind: str = ""  # which generator made it, to count coverage


def set_at(path: tuple[str | int, ...], value: Any) -> Callable[[dict[str, Any]], bool]:
    def apply(doc: dict[str, Any]) -> bool:
        parent: Any = doc
        for part in path[:-1]:
            if isinstance(parent, dict) and isinstance(part, str) and isinstance(parent.get(part), (dict, list)):
                parent = parent[part]
            elif isinstance(parent, list) and isinstance(part, int) and part < len(parent):
                parent = parent[part]
            else:
                return False
        last = path[-1]
        if isinstance(parent, list):
            if not (isinstance(last, int) and last < len(parent)):
                return False
        elif not isinstance(parent, dict):
            return False
        parent[last] = copy.deepcopy(value)
        return True
    return apply


def delete_at(path: tuple[str, ...]) -> Callable[[dict[str, Any]], bool]:
    def apply(doc: dict[str, Any]) -> bool:
        parent: Any = doc
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or path[-1] not in parent:
            return False
        del parent[path[-1]]
        return True
    return apply


@st.composite
def retype(draw) -> Mutation:
    """A key gets a value of the wrong type: a table, a date, a list where a number belongs..."""
    path, tname, sweep = draw(st.sampled_from(TYPED))
    aliases = [old for old, _ in _spec(path).aliases] if path[0] == "strategies" and path[2] != "backbones" else []
    value = draw(wrong_value(tname, sweep).filter(  # an older spelling a parameter declares is accepted
        lambda v: not any(type(v) is type(a) and v == a for a in aliases)
        and not (isinstance(v, list) and v and all(any(type(x) is type(a) and x == a for a in aliases) for x in v))))
    return Mutation(set_at(path, value), (key_path(*path),), path[0])


@st.composite
def unknown_key(draw) -> Mutation:
    """A key or table no schema, source or strategy knows."""
    where = draw(st.sampled_from(["", "suite", "dataset", "run", "compare", "strategies", *
                                  (f"strategies.{s}" for s in BASE["strategies"])]))
    parent = tuple(where.split(".")) if where else ()
    known = _known_keys(parent)
    name = draw(KEY_NAME.filter(lambda k: k not in known))
    value = draw(ANY_VALUE)
    return Mutation(set_at((*parent, name), value), (key_path(*parent, name),), (parent or (name,))[0])


def _spec(path: tuple[str, ...]):
    """The declared schema of a strategy parameter (its limits are the specification the checks follow)."""
    return REGISTRY.strategies[path[1]].param_specs()[path[2]]


def _known_keys(parent: tuple[str, ...]) -> set[str]:
    if not parent:
        return set(TABLES)
    if parent == ("strategies",):
        return set(REGISTRY.strategies)
    if parent[0] == "strategies":
        return {*REGISTRY.strategies[parent[1]].params, "backbones"}
    return {path[1] for path in KEY_TYPES if path[0] == parent[0]}


@st.composite
def empty_list(draw) -> Mutation:
    path = draw(st.sampled_from([("suite", "seeds"), ("dataset", "sizes"), ("run", "backends"),
                                 ("run", "backbones"), ("strategies", "svm", "backbones"),
                                 ("strategies", "svm", "C"), ("strategies", "scratch", "epochs")]))
    return Mutation(set_at(path, []), (key_path(*path),), path[0])


@st.composite
def duplicates(draw) -> Mutation:
    path, value = draw(st.sampled_from([
        (("suite", "seeds"), [1, 1]), (("dataset", "sizes"), [4, 8, 4]), (("run", "backends"), ["torch", "torch"]),
        (("run", "backbones"), ["tiny_cnn", "tiny_cnn"]), (("strategies", "svm", "C"), [0.5, 0.5]),
        (("strategies", "scratch", "hidden"), [[16], [16]]), (("strategies", "fpt", "finetune_lr"), [1e-3, 0.001]),
    ]))
    return Mutation(set_at(path, value), (key_path(*path),), path[0])


HUGE = st.integers(min_value=2**32, max_value=10**30)


@st.composite
def out_of_range(draw) -> Mutation:
    """Sizes, seeds, batch and image sizes beyond what a run can use (sizes: beyond the data)."""
    kind = draw(st.sampled_from(["size", "seed", "batch", "image", "val", "nonfinite", "param"]))
    if kind == "param":  # a strategy parameter outside its declared range or choices
        bounded = [(n, k, spec) for n in BASE["strategies"] for k, spec in REGISTRY.strategies[n].param_specs().items()
                   if spec.choices or spec.low is not None or spec.high is not None]
        name, key, spec = draw(st.sampled_from(bounded))
        if spec.choices:
            value = draw(TEXT.filter(lambda t: t not in spec.choices))
        else:
            as_int = isinstance(spec.default, int) or (isinstance(spec.default, list) and isinstance(spec.default[0], int))
            outside = []
            if spec.low is not None:
                below = st.integers(max_value=int(spec.low) - (0 if spec.low_open else 1)) if as_int else \
                    st.floats(max_value=spec.low, exclude_max=not spec.low_open, allow_nan=False, allow_infinity=False)
                outside.append(below)
            if spec.high is not None:
                above = st.integers(min_value=int(spec.high) + (0 if spec.high_open else 1), max_value=10**12) \
                    if as_int else st.floats(min_value=spec.high, exclude_min=not spec.high_open, max_value=1e300)
                outside.append(above)
            value = draw(st.one_of(*outside))
            if isinstance(spec.default, list):
                value = [value]
        path = ("strategies", name, key)
        return Mutation(set_at(path, value), (key_path(*path),), "strategies")
    if kind in ("size", "seed"):
        table, key, i = ("dataset", "sizes", draw(st.integers(0, 1))) if kind == "size" else \
            ("suite", "seeds", draw(st.integers(0, 1)))
        low, high = (1, 13) if kind == "size" else (-1, 2**32)  # 12 train images per class
        value = draw(st.integers(max_value=low) | st.integers(min_value=high, max_value=high + 1000) | HUGE
                     | st.integers(max_value=-(2**31)))
        return Mutation(set_at((table, key, i), value), (key_path(table, key, i),), table)
    if kind == "batch":
        value = draw(st.integers(max_value=0) | st.integers(min_value=65537) | HUGE)
        return Mutation(set_at(("run", "batch_size"), value), ("run.batch_size",), "run")
    if kind == "image":
        value = draw(st.integers(max_value=-1) | st.integers(min_value=4097) | HUGE)
        return Mutation(set_at(("run", "image_size"), value), ("run.image_size",), "run")
    if kind == "val":
        value = draw(st.floats(max_value=-1e-9) | st.floats(min_value=1.0) | st.just(math.nan)
                     | st.integers(max_value=-1) | st.integers(min_value=1))
        return Mutation(set_at(("dataset", "val_fraction"), value), ("dataset.val_fraction",), "dataset")
    value = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    path, sweep = draw(st.sampled_from([(("strategies", "svm", "C"), False),
                                        (("strategies", "fpt", "finetune_lr"), True)]))
    return Mutation(set_at(path, [0.5, value] if sweep else value), (key_path(*path),), "strategies")


@st.composite
def unknown_name(draw) -> Mutation:
    """A backend, backbone, strategy backbone, source, precision, device or gate no one provides."""
    kind = draw(st.sampled_from(["backend", "backbone", "source", "precision", "device", "only", "gate"]))
    i = draw(st.integers(0, 1))
    if kind == "backend":
        name = draw(KEY_NAME.filter(lambda n: n not in REGISTRY.backends))
        return Mutation(set_at(("run", "backends", 0), name), ("run.backends[0]",), "run")
    if kind == "backbone":
        name = draw(KEY_NAME.filter(lambda n: n not in BACKBONES))
        return Mutation(set_at(("run", "backbones", i), name), (f"run.backbones[{i}]",), "run")
    if kind == "only":
        name = draw(KEY_NAME.filter(lambda n: n not in BASE["run"]["backbones"]))
        return Mutation(set_at(("strategies", "svm", "backbones", 0), name), ("strategies.svm.backbones[0]",),
                        "strategies")
    if kind == "gate":
        near_misses = st.sampled_from(["accuracy:-1%", "epoch_time:25", "speed:+1pt", ""])
        text = draw(st.one_of(TEXT, near_misses).filter(bad_gate))
        return Mutation(set_at(("compare", "fail", 0), text), ("compare.fail[0]",), "compare")
    key = {"source": ("dataset", "source"), "precision": ("run", "precision"), "device": ("run", "device")}[kind]
    known = {"source": REGISTRY.datasets, "precision": ("auto", "fp32", "bf16"),
             "device": ("auto", "cpu", "cuda", "mps")}[kind]
    name = draw(KEY_NAME.filter(lambda n: n not in known))
    return Mutation(set_at(key, name), (key_path(*key),), key[0])


CONTROL_TEXT = st.builds(lambda a, c, b: a + c + b, TEXT, st.sampled_from(["\n", "\r", "\x00", "\x1b", "\x7f", "\x85",
                                                                          "\u2028"]), TEXT)


@st.composite
def bad_string(draw) -> Mutation:
    """Names that would become odd folder names, or break a message over lines."""
    key = draw(st.sampled_from([("suite", "name"), ("dataset", "path"), ("dataset", "train"), ("dataset", "test")]))
    if key == ("suite", "name"):
        value = draw(st.sampled_from(["", " ", ".", "..", "a/b", "../up", "a\\b"]) | CONTROL_TEXT)
    else:
        value = draw(CONTROL_TEXT)
    return Mutation(set_at(key, value), (key_path(*key),), key[0])


@st.composite
def wrong_nesting(draw) -> Mutation:
    """A value where a table belongs: ``run = 5``, ``strategies = [1]``, ``[strategies] svm = 3``."""
    path = draw(st.sampled_from([(t,) for t in TABLES if t != "profiles"]
                                + [("strategies", s) for s in BASE["strategies"]]))
    value = draw(NON_TABLE)
    return Mutation(set_at(path, value), (key_path(*path),), path[0])


@st.composite
def missing(draw) -> Mutation:
    if draw(st.booleans()):
        path = draw(st.sampled_from(REQUIRED))
        return Mutation(delete_at(path), (key_path(*path),), path[0], in_profile_ok=False)
    table = draw(st.sampled_from(sorted(TABLE_REQUIRED)))
    return Mutation(delete_at((table,)), (TABLE_REQUIRED[table],), table, in_profile_ok=False)


@st.composite
def bad_profiles(draw) -> Mutation:
    """Profiles that cannot merge: not tables, unknown tables, a value over a strategy table, or unknown."""
    kind = draw(st.sampled_from(["profiles", "profile", "table", "strategy", "unknown_table", "unknown"]))
    name, use = draw(st.sampled_from(PROFILES)), draw(st.sampled_from([None, *PROFILES]))
    value = draw(NON_TABLE)
    if kind == "unknown":
        asked = draw(st.text(min_size=1, max_size=8).filter(lambda p: p not in PROFILES))
        return Mutation(lambda doc: True, ("profiles",), profile=asked, in_profile_ok=False)
    if kind == "profiles":
        path: tuple[str, ...] = ("profiles",)
    elif kind == "profile":
        path = ("profiles", name)
    elif kind == "table":
        path = ("profiles", name, draw(st.sampled_from(TABLES[:-1])))
    elif kind == "strategy":
        path = ("profiles", name, "strategies", draw(st.sampled_from(sorted(BASE["strategies"]))))
    else:
        path = ("profiles", name, draw(KEY_NAME.filter(lambda k: k not in TABLES[:-1])))
        value = draw(ANY_VALUE)
    return Mutation(set_at(path, value), (key_path(*path),), profile=use, in_profile_ok=False)


def tagged(kind: str, strategy: st.SearchStrategy[Mutation]) -> st.SearchStrategy[Mutation]:
    def tag(mutation: Mutation) -> Mutation:
        mutation.kind = kind
        return mutation
    return strategy.map(tag)


LEAF = st.one_of(*(tagged(f.__name__, f()) for f in (retype, unknown_key, empty_list, duplicates, out_of_range,
                                                     unknown_name, bad_string, wrong_nesting, missing)))
KINDS = {"retype", "unknown_key", "empty_list", "duplicates", "out_of_range", "unknown_name", "bad_string",
         "wrong_nesting", "missing", "bad_profiles", "into_profile", "syntax"}


def into_profile(mutation: Mutation) -> Mutation:
    """The same change made by ``[profiles.small.TABLE]`` (the whole mutated table) under --profile small."""
    table = mutation.table

    def apply(doc: dict[str, Any]) -> bool:
        changed, profiles = copy.deepcopy(doc), doc.get("profiles")
        if not (isinstance(profiles, dict) and isinstance(profiles.get("small"), dict)):
            return False
        if not mutation.apply(changed) or table not in changed:
            return False
        doc["profiles"]["small"][table] = changed[table]
        return True
    return Mutation(apply, tuple(k for key in mutation.keys for k in (key, f"profiles.small.{key}")),
                    profile="small", in_profile_ok=False, kind="into_profile")


@st.composite
def mutations(draw) -> list[Mutation]:
    """Usually one change, sometimes a few; some made through a profile."""
    count = draw(st.sampled_from([1, 1, 1, 2, 3]))
    out = []
    for _ in range(count):
        mutation = draw(st.one_of(LEAF, LEAF, tagged("bad_profiles", bad_profiles())))
        if mutation.in_profile_ok and mutation.table and draw(one_in(4)):
            mutation = into_profile(mutation)
        out.append(mutation)
    return out


BAD_SNIPPETS = ["[run", "x = ", "= 1", "a = [1,", 'a = "unterminated', "a = 1 b = 2", "a = 0x", "a = 1979-13-45",
                'a = "\\q"', "a = tru", "[[suite]]", "[suite]", "a = 1\na = 2", 'a = """unclosed', "a.b = 1\na = 2",
                "a = { b = 1, }", "a = +nan_", 'a = "\x01"', "a\x00 = 1", "[x]\n[x]", "[[run]]"]


@st.composite
def broken_text(draw) -> bytes:
    """The valid suite's text with something no TOML parser takes inserted at a line boundary."""
    lines = dump_toml(BASE).splitlines()
    at = draw(st.integers(0, len(lines)))
    if draw(one_in(6)):
        return ("\n".join(lines[:at]) + "\n").encode() + b"a = \"\xff\xfe\"\n" + "\n".join(lines[at:]).encode()
    lines.insert(at, draw(st.sampled_from(BAD_SNIPPETS)))
    return ("\n".join(lines) + "\n").encode()


# --- running the command ------------------------------------------------------------------------

@dataclass
class Case:
    text: bytes
    keys: tuple[tuple[str, ...], ...]  # per change, the keys of which one must be named
    strict: bool  # one change: it must be named; several: at least one of them
    profile: str | None = None
    syntax: bool = False
    doc: dict[str, Any] = field(default_factory=dict)
    kinds: tuple[str, ...] = ()


@st.composite
def cases(draw) -> Case:
    if draw(one_in(8)):
        return Case(draw(broken_text()), (), True, draw(st.sampled_from([None, "small"])), syntax=True,
                    kinds=("syntax",))
    doc = copy.deepcopy(BASE)
    applied = [m for m in draw(mutations()) if m.apply(doc)]
    if not applied:  # every change fell through (rare): break the name instead
        applied = [Mutation(delete_at(("suite", "name")), ("suite.name",), kind="missing")]
        applied[0].apply(doc)
    profile = next((m.profile for m in reversed(applied) if m.profile), None)
    keys = tuple(m.keys for m in applied)
    return Case(dump_toml(doc).encode(), keys, len(applied) == 1, profile, doc=doc,
                kinds=tuple(m.kind for m in applied))


def validate(path: Path, root: Path, profile: str | None) -> tuple[int, str]:
    """``zoo-bench validate`` in this process; (exit code, stdout and stderr without colour codes)."""
    argv = ["validate", str(path), "--data-root", str(root / "data"), "--cache-dir", str(root / "cache")]
    if profile is not None:
        argv.append(f"--profile={profile}")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        code = cli.main(argv)
    return code, ANSI.sub("", buffer.getvalue())


def names(output: str, key: str) -> bool:
    """Does some line name this key (or an item of it) as the key of its error?"""
    return re.search(rf": {re.escape(key)}(?:\[\d+\])*: ", output) is not None


def check_output(path: Path, case: Case, code: int, output: str) -> None:
    assert code == 2, (code, output, case.text)
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines, case.text
    prefix = f"error: {path}: "
    for line in lines:
        assert line.startswith(prefix), (line, case.text)
        rest = line[len(prefix):]
        if case.syntax:
            assert rest.startswith("not valid TOML: "), line
        else:
            match = KEY.match(rest)
            assert match and rest[match.end():].startswith(": "), (line, case.text)
    if case.syntax:
        return
    found = [any(names(output, k) for k in group) for group in case.keys]
    assert (all(found) if case.strict else any(found)), (case.keys, output, case.text)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def test_writer_round_trips_through_tomllib() -> None:
    """The fuzz suites are what the test means them to be: the writer's output reads back equal."""
    assert tomllib.loads(dump_toml(BASE)) == BASE


@pytest.mark.parametrize("profile", [None, "small", "wide"])
def test_base_suite_is_valid(workdir: Path, profile: str | None) -> None:
    path = workdir / "base.toml"
    path.write_text(dump_toml(BASE))
    code, output = validate(path, workdir, profile)
    assert code == 0, output


def test_malformed_suites_exit_2_with_one_line_errors_naming_the_key(workdir: Path) -> None:
    path = workdir / "suite.toml"
    ran: list[Case] = []

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(cases())
    def fuzz(case: Case) -> None:
        if not case.syntax:  # the writer must say what the mutation meant (text: NaN never equals itself)
            assert dump_toml(tomllib.loads(case.text.decode())) == case.text.decode()
        path.write_bytes(case.text)
        code, output = validate(path, workdir, case.profile)
        check_output(path, case, code, output)
        ran.append(case)

    fuzz()
    kinds = Counter(kind for case in ran for kind in case.kinds)
    print(f"{len(ran)} malformed suites rejected; changes by kind: {dict(sorted(kinds.items()))}")
    assert len(ran) >= min(EXAMPLES, 500)
    assert set(kinds) == KINDS and min(kinds.values()) >= 10, kinds
    assert sum(len(case.kinds) > 1 for case in ran) >= 50 and sum(case.profile is not None for case in ran) >= 50


@pytest.mark.parametrize("run, key", [
    pytest.param(5, "run", id="run=5"),
    pytest.param({"backends": 5}, "run.backends", id="backends=5"),
    pytest.param({"backends": [[1]]}, "run.backends", id="backends=[[1]]"),
    pytest.param({"backends": [{"a": 1}]}, "run.backends", id="backends=[{a=1}]"),
    pytest.param({"backends": "torch"}, "run.backends", id="backends=str"),
    pytest.param(None, "run.backends", id="no-run"),
])
def test_automatic_cpu_profile_over_a_malformed_run(workdir: Path, run: Any, key: str) -> None:
    """Without --profile, a suite with a ``cpu`` profile has it chosen from ``run.backends``."""
    doc = copy.deepcopy(BASE)
    doc["profiles"]["cpu"] = {"dataset": {"sizes": [4]}}
    doc["run"] = {**BASE["run"], **run} if isinstance(run, dict) else run
    if run is None:
        del doc["run"]
    path = workdir / "cpu.toml"
    path.write_text(dump_toml(doc))
    code, output = validate(path, workdir, None)
    notes = [line for line in output.splitlines() if line.startswith("no GPU present")]
    errors = "\n".join(line for line in output.splitlines() if line not in notes)
    case = Case(path.read_bytes(), ((key,),), True)
    check_output(path, case, code, errors)
