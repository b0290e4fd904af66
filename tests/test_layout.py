"""The package's import graph: layers that import only downwards, no circle, imports at the top.

Read from the source (AST), so it holds for every module, imported by a test or not. Each module belongs
to one layer; a module may import its own layer and those below. ``if TYPE_CHECKING:`` imports count
too (an annotation is a dependency); they are only exempt from being at the top of the file.
"""
from __future__ import annotations

import ast
import importlib
import re
import warnings
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "zoo_bench"

LAYERS: list[tuple[str, tuple[str, ...]]] = [  # lowest first; a name ending in "." takes its subpackage
    ("base", ("errors", "_moved")),
    ("contract helpers", ("params", "schedules", "metrics", "images", "augment", "unfreeze", "adapters")),
    ("plugin contract", ("backend", "catalog", "dataset", "strategy", "context", "hookspecs", "outcome_rules")),
    ("package and registry", ("", "plugins")),
    ("plan a grid", ("plan.",)),
    ("read results", ("results.",)),
    ("run a grid", ("run.",)),
    ("show results", ("show.",)),
    ("reference backend", ("reference_backend",)),
    ("front doors", ("cli", "testing", "pytest_plugin", "_pytest_suite")),
]
# the command line imports what one command needs, so `zoo-bench validate` starts fast; the pytest plugin loads in
# every pytest session of an environment with zoo-bench, and imports zoo-bench only under --zoo-suite
LAZY_ALLOWED = {"cli", "pytest_plugin"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def layer_of(module: str) -> int:
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            if module == name or (name.endswith(".") and module.startswith(name)) or module == name.rstrip("."):
                return index
    raise AssertionError(f"zoo_bench.{module} is in no layer of tests/test_layout.py: place it in one")


def imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, at the top of the file or for annotations only) for each intra-package
    import of ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    annotation_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                       for n in ast.walk(node)}
    top = {id(n) for n in tree.body}
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    package = [p for p in package if p]
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        top_or_annotation = id(node) in top or id(node) in annotation_only
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1] + ([node.module] if node.module else [])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "zoo_bench":
            base = node.module.split(".")[1:]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "zoo_bench":
                    found.append((".".join(alias.name.split(".")[1:]), node.lineno, top_or_annotation))
            continue
        else:
            continue
        names = [a.name for a in node.names] if isinstance(node, ast.ImportFrom) else []
        for name in names or [None]:
            target = ".".join(base + [name]) if name and ".".join(base + [name]) in MODULES else ".".join(base)
            if target != module:
                found.append((target, node.lineno, top_or_annotation))
    return found


EDGES = {m: imports(m) for m in MODULES}


def test_every_import_runs_downwards_or_within_its_layer():
    upward = [f"zoo_bench.{m or '__init__'} ({LAYERS[layer_of(m)][0]}) imports zoo_bench.{t or '__init__'} "
              f"({LAYERS[layer_of(t)][0]}) at line {line}"
              for m, found in EDGES.items() for t, line, _ in found if layer_of(t) > layer_of(m)]
    assert upward == []


def test_the_import_graph_has_no_circle():
    graph = {m: sorted({t for t, _, _ in found}) for m, found in EDGES.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, []):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert circles == []


def test_intra_package_imports_are_at_the_top_of_files():
    lazy = [f"zoo_bench.{m}: line {line} imports zoo_bench.{t} inside a function"
            for m, found in EDGES.items() if m not in LAZY_ALLOWED for t, line, at_top in found if not at_top]
    assert lazy == []


CORE = ("plan.", "results.", "run.", "show.", "cli")  # code that runs a grid and reads it, not a strategy
NOT_STRATEGY_PARAMETERS = {("plan.suite", "backbones")}  # the suite's own key beside a strategy's parameters


def parameters_read_by_name(source: str) -> list[tuple[int, str]]:
    """(line, name) of each ``params["name"]``, ``params.get("name")`` or ``.pop`` on a configuration."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in ("params", "p") \
                and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
            found.append((node.lineno, node.slice.value))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("get", "pop") \
                and isinstance(node.func.value, ast.Name) and node.func.value.id in ("params", "p", "param_dict") \
                and node.args and isinstance(node.args[0], ast.Constant):
            found.append((node.lineno, node.args[0].value))
    return found


def test_the_core_reads_a_configuration_only_through_its_strategy():
    """Pooling, head and augmentation come from ``Strategy.pooling/head/augmentation``, not parameter names."""
    assert parameters_read_by_name('x = params.get("pooling", "avg") + p["hidden"]') == [(1, "pooling"), (1, "hidden")]
    read = [f"zoo_bench.{m}:{line} reads parameter {name!r}" for m, path in MODULES.items() if m.startswith(CORE)
            for line, name in parameters_read_by_name(path.read_text()) if (m, name) not in NOT_STRATEGY_PARAMETERS]
    assert read == []


FRAMEWORKS = {"torch", "torchvision", "timm", "tensorflow", "keras", "jax"}


def test_zoo_bench_itself_imports_no_framework():
    """Frameworks belong to backend plugins; only the plugin authors' kit has a torch network of its own."""
    found = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            found += [(module, n) for n in names if n.split(".")[0] in FRAMEWORKS]
    assert {m for m, _ in found} <= {"testing"}, found


def test_no_module_uses_a_name_it_never_defined_or_imported():
    """A moved function whose import was left behind fails here, not on the one path that calls it."""
    from pyflakes import api, messages, reporter

    class Undefined(reporter.Reporter):
        def __init__(self):
            super().__init__(None, None)
            self.found = []

        def flake(self, message):
            if isinstance(message, (messages.UndefinedName, messages.UndefinedExport, messages.UndefinedLocal)):
                self.found.append(str(message))

        def syntaxError(self, *args):
            self.found.append(f"syntax error: {args}")

    found = Undefined()
    for folder in (PACKAGE, PACKAGE.parent / "plugins"):
        api.checkRecursive([str(folder)], found)
    assert found.found == []


def test_the_check_sees_an_upward_import_and_a_circle(tmp_path, monkeypatch):
    """The rules above fail on a planted fault (so they are not vacuous)."""
    assert layer_of("run.trials") > layer_of("plan.suite") > layer_of("plugins") > layer_of("backend")
    monkeypatch.setitem(EDGES, "plan.suite", EDGES["plan.suite"] + [("run.trials", 1, True)])
    with pytest.raises(AssertionError, match="plan.suite .plan a grid. imports zoo_bench.run.trials"):
        test_every_import_runs_downwards_or_within_its_layer()
    monkeypatch.setitem(EDGES, "plan.trial", EDGES["plan.trial"] + [("plan.grid", 1, True)])
    with pytest.raises(AssertionError, match="plan.grid"):
        test_the_import_graph_has_no_circle()


DOTTED = re.compile(r"\bzoo_bench(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
READMES = [PACKAGE.parent / "README.md", PACKAGE.parent / "results" / "README.md"]
OLD_NAMES = [  # dotted paths the READMEs named before the package was grouped into plan / results / run / show
    "zoo_bench.prepare.prepare_run", "zoo_bench.trials.TrialRunner.run", "zoo_bench.runner.Runner",
    "zoo_bench.results.load_run", "zoo_bench.selection.choose", "zoo_bench.evidence.analyse",
    "zoo_bench.params.Param", "zoo_bench.augment.sampling_matrix", "zoo_bench.schedules", "zoo_bench.testing",
    "zoo_bench.grid.Trial", "zoo_bench.compare.Gate", "zoo_bench.executors.ray_cluster.RayExecutor",
]


def resolve(dotted: str):
    """Import the longest module prefix of ``dotted`` and walk the rest as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_every_dotted_path_the_readmes_name_imports():
    from zoo_bench._moved import MOVED

    named = sorted({m for path in READMES for m in DOTTED.findall(path.read_text())})
    assert "zoo_bench.results.load_run" in named and len(named) >= 10
    old = [m for m in named if m in MOVED]  # named as old names (README "The code"): imported below, with a warning
    assert set(old) <= {".".join(n.split(".")[:3]) for n in OLD_NAMES} | set(MOVED)
    for dotted in (m for m in named if m not in MOVED):
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)  # the READMEs name today's homes
            resolve(dotted)


@pytest.mark.filterwarnings("ignore:zoo_bench.*moved to:DeprecationWarning")
@pytest.mark.parametrize("dotted", OLD_NAMES)
def test_old_dotted_paths_keep_importing_the_same_object(dotted):
    old = resolve(dotted)
    module = dotted.split(".")[1]
    from zoo_bench._moved import MOVED

    new_module = MOVED.get(f"zoo_bench.{module}")
    if new_module is not None:
        assert resolve(new_module + dotted[len("zoo_bench." + module):]) is old


def test_an_old_module_name_warns_once_naming_its_new_home():
    import subprocess
    import sys

    code = ("import warnings; warnings.simplefilter('always')\n"
            "import zoo_bench.selection, zoo_bench.selection\nfrom zoo_bench.selection import choose\n"
            "import zoo_bench.results.selection as new; assert choose is new.choose and zoo_bench.selection is new")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("DeprecationWarning") == 1
    assert "zoo_bench.selection moved to zoo_bench.results.selection; import it from there" in proc.stderr
