"""Faulty third-party plugins, installed as real distributions, against the real command line.

Each fault must give one line naming the plugin and its distribution, and zoo-bench must go on
working: first-party names stay, and each faulty plugin's good registration (``*_kept``) stays.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_suite
from zoo_bench import __version__
from zoo_bench import plugins as plugins_mod

FIXTURES = Path(__file__).parent / "fixtures" / "faulty_plugins"
ZOO_BENCH = Path(sys.executable).with_name("zoo-bench")
PLUGINS = {"fault_import": "zb_fault_import", "fault_duplicate": "zb_fault_duplicate",
           "fault_types": "zb_fault_types", "fault_hooks": "zb_fault_hooks", "fault_crash": "zb_fault_crash"}

ZB = f"(zoo-bench {__version__})"
DUP = "plugin 'fault_duplicate' (zb-fault-duplicate 1.0): "
HOOKS = "plugin 'fault_hooks' (zb-fault-hooks 1.0): "
TYPES = "plugin 'fault_types' (zb-fault-types 1.0): "
EXPECTED = [  # load order: first-party, then distributions by name
    DUP + f"zoo_bench_register_backends()[0]: backend 'torch' is already registered by plugin 'torch' {ZB}; ignored",
    DUP + "zoo_bench_register_backbones()[0]: backbone 'torch/tiny_cnn' is already registered by plugin 'torch' "
          f"{ZB}; ignored",
    DUP + "zoo_bench_register_strategies()[0]: strategy 'svm' is already registered by plugin 'strategies' "
          f"{ZB}; ignored",
    DUP + "zoo_bench_register_datasets()[0]: dataset 'synthetic' is already registered by plugin 'datasets' "
          f"{ZB}; ignored",
    DUP + "zoo_bench_register_downloads()[0]: download 'cats_dogs' is already registered by plugin 'datasets' "
          f"{ZB}; ignored",
    HOOKS + "zoo_bench_register_datasets(registry): hooks take no arguments; ignored",
    HOOKS + "unknown hook 'zoo_bench_register_strategy' (did you mean 'zoo_bench_register_strategies'?); ignored",
    HOOKS + "zoo_bench_register_backends() raised ValueError: backends are not ready; ignored",
    "plugin 'fault_import' (zb-fault-import 1.0): failed to load: RuntimeError: this plugin fails on import",
    TYPES + "zoo_bench_register_backends()[0]: an instance of object, not a Backend subclass; ignored",
    TYPES + "zoo_bench_register_backbones()[0]: backbone 'ghost_net' names backend 'no_such_backend', "
            "which no plugin registers (known: keras, torch); ignored",
    TYPES + "zoo_bench_register_strategies()[1]: class NotAStrategy, not a Strategy subclass; ignored",
    TYPES + "zoo_bench_register_strategies()[2]: an instance of TypesKept, not a Strategy subclass "
            "(return the class itself); ignored",
    TYPES + "zoo_bench_register_strategies()[3]: class NoName has no name (a non-empty str); ignored",
    TYPES + "zoo_bench_register_strategies()[4]: class Unfinished is abstract (missing run); ignored",
    TYPES + "zoo_bench_register_datasets() returned 'synthetic' (str), expected a list; ignored",
    TYPES + "zoo_bench_register_downloads() returned None, expected a list; ignored",
]
KEPT = ["duplicate_kept", "types_kept", "hooks_kept", "crashing_probe"]

SUITE = """
[suite]
name = "faults"
seeds = [0]
[dataset]
source = "synthetic"
classes = 2
train_per_class = 8
test_per_class = 4
image_size = 32
sizes = [4]
[run]
backends = ["torch"]
backbones = ["tiny_cnn"]
batch_size = 8
[strategies.scratch]
epochs = 1
"""


def install_plugin(site: Path, plugin: str, module: str, version: str = "1.0") -> str:
    """Install one fixture module into ``site`` as a distribution of its own; return its name."""
    dist = module.replace("_", "-")
    shutil.copy(FIXTURES / f"{module}.py", site / f"{module}.py")
    info = site / f"{module}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[zoo_bench]\n{plugin} = {module}\n")
    return dist


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder with every faulty plugin installed, for PYTHONPATH."""
    path = tmp_path_factory.mktemp("site")
    for plugin, module in PLUGINS.items():
        install_plugin(path, plugin, module)
    return path


def zoo_bench(site: Path, *args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the installed command with the faulty plugins importable."""
    full = {k: v for k, v in os.environ.items() if k != plugins_mod.DISABLE_AUTOLOAD_ENV}
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return subprocess.run([str(ZOO_BENCH), *map(str, args)], capture_output=True, text=True,
                          env={**full, **(env or {})}, timeout=300)


def error_lines(stderr: str) -> list[str]:
    return [line.removeprefix("error: ") for line in stderr.splitlines() if line.startswith("error: ")]


@pytest.fixture()
def on_path(site, monkeypatch):
    """The faulty plugins importable in this process; their modules forgotten afterwards."""
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv(plugins_mod.DISABLE_AUTOLOAD_ENV, raising=False)
    yield site
    for module in PLUGINS.values():
        sys.modules.pop(module, None)


def test_every_fault_is_one_line_and_first_party_wins(on_path):
    registry = plugins_mod.load_plugins()
    assert registry.load_errors == EXPECTED
    assert registry.strategies["svm"].__module__ == "zoo_bench_strategies.probes"
    assert registry.backends["torch"].__module__ == "zoo_bench_torch.backend"
    assert registry.datasets["synthetic"].__module__ == "zoo_bench_datasets.sources"
    assert registry.downloads["cats_dogs"].url != "https://example.invalid/x.zip"
    assert registry.backbones["torch"]["tiny_cnn"].weights == "none"
    assert set(KEPT) <= set(registry.strategies)
    assert "ghost_net" not in registry.backbone_names() and "unfinished" not in registry.strategies


def test_plugins_command_reports_each_fault_once(site):
    proc = zoo_bench(site, "plugins")
    assert proc.returncode == 1, proc.stderr  # fault_import failed to load
    assert "Traceback" not in proc.stderr
    assert error_lines(proc.stderr) == EXPECTED
    for word in ("efficientnet_lite0", "svm", "synthetic", "zb-fault-types", *KEPT):
        assert word in proc.stdout


def test_validate_works_with_faulty_plugins_installed(site, tmp_path):
    body = SUITE + "".join(f"[strategies.{name}]\n" for name in KEPT)
    path = write_suite(tmp_path, body)
    proc = zoo_bench(site, "validate", path, "--cache-dir", tmp_path / "c")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert error_lines(proc.stderr) == EXPECTED
    assert proc.stderr.splitlines()[-1].startswith(f"{path}: ok (5 trials")


def test_validate_names_a_plugin_that_failed_to_load_once_and_points_to_it_for_an_unknown_name(site, tmp_path):
    path = write_suite(tmp_path, SUITE + "[strategies.import_probe]\n")
    proc = zoo_bench(site, "validate", path, "--cache-dir", tmp_path / "c")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("'fault_import'") == 1
    assert error_lines(proc.stderr)[:-1] == EXPECTED
    assert error_lines(proc.stderr)[-1].startswith(f"{path}: strategies.import_probe: unknown strategy (allowed: ")
    assert error_lines(proc.stderr)[-1].endswith("; a plugin failed to load (see above) and may register it")


def test_autoload_switch_leaves_faulty_plugins_out(site, tmp_path):
    proc = zoo_bench(site, "plugins", env={plugins_mod.DISABLE_AUTOLOAD_ENV: "1"})
    assert proc.returncode == 0 and proc.stderr == ""
    assert "svm" in proc.stdout and "fault" not in proc.stdout


def test_a_strategy_that_raises_fails_only_its_own_trials(site, tmp_path):
    path = write_suite(tmp_path, SUITE + "[strategies.crashing_probe]\n")
    proc = zoo_bench(site, "run", path, "--run-id", "r", "--results-dir", tmp_path / "res",
                     "--cache-dir", tmp_path / "c", "--no-progress")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    rows = [json.loads(line) for line in (tmp_path / "res/faults/r/trials.jsonl").read_text().splitlines()]
    by_strategy = {r["strategy"]: r for r in rows}
    assert len(rows) == 2 and by_strategy["scratch"]["status"] == "ok"
    assert by_strategy["crashing_probe"]["status"] == "error"
    assert by_strategy["crashing_probe"]["error"] == "RuntimeError: probe exploded on purpose"
