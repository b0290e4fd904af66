"""Plugin discovery: faults reported one line each and never fatal, first-party plugins win clashes."""
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest

from zoo_bench import Strategy, __version__, hookimpl
from zoo_bench import plugins as plugins_mod
from zoo_bench_strategies.probes import Svm


def fake_ep(name: str, value: str) -> metadata.EntryPoint:
    return metadata.EntryPoint(name=name, value=value, group="zoo_bench")


class Svm2(Strategy):
    name = "svm"

    def run(self, ctx, params):
        raise NotImplementedError


class Extra(Strategy):
    name = "extra_probe"

    def run(self, ctx, params):
        raise NotImplementedError


def plugin_module(name: str, **hooks) -> ModuleType:
    """An in-memory plugin module with the given attributes."""
    module = ModuleType(name)
    for attr, value in hooks.items():
        setattr(module, attr, value)
    return module


def test_first_party_plugins_come_from_entry_points():
    registry = plugins_mod.load_plugins()
    names = {p.name for p in registry.plugins}
    assert {"torch", "strategies", "datasets"} <= names
    assert registry.owners[("strategy", "svm")] == "strategies"
    assert "efficientnet_lite0" in registry.backbones["torch"]
    assert registry.load_errors == []


def test_a_plugin_that_fails_to_import_is_reported_and_others_load(monkeypatch):
    real = plugins_mod._entry_points()
    monkeypatch.setattr(plugins_mod, "_entry_points", lambda: real + [fake_ep("broken", "no_such_module_zb")])
    registry = plugins_mod.load_plugins()
    assert registry.load_errors == [
        "plugin 'broken' (unknown): failed to load: ModuleNotFoundError: No module named 'no_such_module_zb'"]
    assert "svm" in registry.strategies


def test_a_duplicate_name_keeps_the_first_and_names_both_plugins():
    module = plugin_module("dup_plugin", zoo_bench_register_strategies=hookimpl(lambda: [Svm2, Extra]))
    registry = plugins_mod.load_plugins(extra=[module])
    assert registry.load_errors == [
        "plugin 'dup_plugin' (in-process): zoo_bench_register_strategies()[0]: strategy 'svm' is already "
        f"registered by plugin 'strategies' (zoo-bench {__version__}); ignored"]
    assert registry.strategies["svm"] is Svm and registry.strategies["extra_probe"] is Extra


def test_first_party_wins_even_when_a_third_party_is_found_first(monkeypatch):
    monkeypatch.setitem(sys.modules, "early_dup_zb",
                        plugin_module("early_dup_zb", zoo_bench_register_strategies=hookimpl(lambda: [Svm2])))
    real = list(metadata.entry_points(group="zoo_bench"))
    monkeypatch.setattr(metadata, "entry_points", lambda group: [fake_ep("aaa_early", "early_dup_zb"), *real])
    registry = plugins_mod.load_plugins()
    assert registry.strategies["svm"] is Svm
    assert [line.split(":")[0] for line in registry.load_errors] == ["plugin 'aaa_early' (unknown)"]


def test_misspelled_hooks_suggest_the_closest_name_and_the_rest_loads():
    module = plugin_module("typo_plugin", zoo_bench_register_strategy=hookimpl(lambda: [Extra]),
                           zoo_bench_register_backbone=lambda: [],
                           zoo_bench_register_strategies=hookimpl(lambda: [Extra]))
    registry = plugins_mod.load_plugins(extra=[module])
    assert registry.load_errors == [
        "plugin 'typo_plugin' (in-process): unknown hook 'zoo_bench_register_backbone' "
        "(did you mean 'zoo_bench_register_backbones'?); ignored",
        "plugin 'typo_plugin' (in-process): unknown hook 'zoo_bench_register_strategy' "
        "(did you mean 'zoo_bench_register_strategies'?); ignored"]
    assert registry.strategies["extra_probe"] is Extra and "svm" in registry.strategies


def test_specname_names_the_hook_and_arguments_are_refused():
    def my_strategies():
        return [Extra]

    def zoo_bench_register_datasets(registry):
        return []

    named = hookimpl(specname="zoo_bench_register_strategies")(my_strategies)
    module = plugin_module("named_plugin", my_strategies=named,
                           zoo_bench_register_datasets=hookimpl(zoo_bench_register_datasets),
                           zoo_bench_register_downloads=[])
    registry = plugins_mod.load_plugins(extra=[module])
    assert registry.load_errors == [
        "plugin 'named_plugin' (in-process): zoo_bench_register_datasets(registry): hooks take no arguments; ignored",
        "plugin 'named_plugin' (in-process): zoo_bench_register_downloads is [] (list), not a function; ignored"]
    assert registry.strategies["extra_probe"] is Extra


def write_distribution(site: Path, dist: str, plugin: str, module: str) -> None:
    """A dist-info folder declaring one entry point (the module itself need not exist)."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[zoo_bench]\n{plugin} = {module}\n")


def test_two_distributions_with_one_plugin_name_load_the_first_only(tmp_path, monkeypatch):
    write_distribution(tmp_path / "a", "zb-clash-a", "clash", "clash_a_zb")
    write_distribution(tmp_path / "b", "zb-clash-b", "clash", "clash_b_zb")
    monkeypatch.setitem(sys.modules, "clash_a_zb", plugin_module("clash_a_zb"))
    third = [ep for path in (tmp_path / "b", tmp_path / "a")
             for dist in metadata.distributions(path=[str(path)]) for ep in dist.entry_points]
    real = list(metadata.entry_points(group="zoo_bench"))
    monkeypatch.setattr(metadata, "entry_points", lambda group: [*third, *real])
    registry = plugins_mod.load_plugins()
    assert registry.load_errors == [
        "plugin 'clash' (zb-clash-b 1.0): failed to load: the name is taken by plugin 'clash' (zb-clash-a 1.0)"]


def test_autoload_switch_keeps_first_party_only(monkeypatch):
    monkeypatch.setenv(plugins_mod.DISABLE_AUTOLOAD_ENV, "1")
    monkeypatch.setattr(metadata, "entry_points", lambda group: [fake_ep("torch", "zoo_bench_torch"),
                                                                  fake_ep("thirdparty", "some_plugin")])
    assert [ep.name for ep in plugins_mod._entry_points()] == ["torch"]


def test_a_backbone_whose_resize_cannot_be_applied_is_refused_at_registration():
    import types

    from zoo_bench import BackboneSpec, hookimpl
    from zoo_bench.plugins import load_plugins

    module = types.ModuleType("odd_resize_plugin")

    @hookimpl
    def zoo_bench_register_backbones():
        base = dict(backend="torch", image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3, builder=lambda **_: None)
        return [BackboneSpec(name="fuzzy", interpolation="fuzzy", **base),
                BackboneSpec(name="wide", crop_pct=1.5, **base),
                BackboneSpec(name="fine", crop_pct=0.9, interpolation="bicubic", crop_mode="squash", **base)]

    module.zoo_bench_register_backbones = zoo_bench_register_backbones
    registry = load_plugins(extra=[module])
    errors = "\n".join(registry.load_errors)
    assert "backbone 'fuzzy': interpolation 'fuzzy' (allowed: bilinear, bicubic" in errors
    assert "backbone 'wide': crop_pct must be in (0, 1], got 1.5" in errors
    assert "fine" in registry.backbones["torch"] and "fuzzy" not in registry.backbones["torch"]


def test_a_duplicate_strategy_name_is_named_in_the_suite_error_with_both_plugins(tmp_path):
    import types

    import tiny_backbone
    from conftest import TINY_SUITE, write_suite
    from zoo_bench import Outcome, Strategy, SuiteError, hookimpl
    from zoo_bench.plan.suite import parse_suite

    def plugin(module: str, params: dict) -> types.ModuleType:
        cls = type("Nearest", (Strategy,), {"name": "nearest", "params": params, "pretrained": False,
                                            "run": lambda self, ctx, p: Outcome(test_pred=ctx.test.labels * 0)})
        mod = types.ModuleType(module)
        mod.zoo_bench_register_strategies = hookimpl(lambda: [cls])
        return mod

    registry = plugins_mod.load_plugins(extra=[tiny_backbone, plugin("first_knn", {}), plugin("second_knn", {"k": 5})])
    assert registry.load_errors == ["plugin 'second_knn' (in-process): zoo_bench_register_strategies()[0]: strategy "
                                    "'nearest' is already registered by plugin 'first_knn' (in-process); ignored"]
    with pytest.raises(SuiteError) as err:
        parse_suite(write_suite(tmp_path, TINY_SUITE + "[strategies.nearest]\nk = 3\n"), registry)
    assert str(err.value).endswith(
        "strategies.nearest.k: unknown parameter (it takes no parameters); strategy 'nearest' is plugin 'first_knn' "
        "(in-process)'s: plugin 'second_knn' (in-process) also registers it and was ignored (first-party plugins "
        "first, then by distribution name)")


def test_run_json_records_each_provider_and_a_resume_says_when_another_plugin_answers(tmp_path):
    import json
    import types

    import tiny_backbone
    from conftest import TINY_SUITE, write_suite
    from zoo_bench import Outcome
    from zoo_bench.run.prepare import prepare_run
    from zoo_bench.run.runner import RunOptions
    from zoo_bench.plan.suite import parse_suite

    def plugin(module: str) -> types.ModuleType:
        cls = type("Nearest", (Strategy,), {"name": "nearest", "pretrained": False,
                                            "run": lambda self, ctx, p: Outcome(test_pred=ctx.test.labels * 0)})
        mod = types.ModuleType(module)
        mod.zoo_bench_register_strategies = hookimpl(lambda: [cls])
        return mod

    path = write_suite(tmp_path, TINY_SUITE + "[strategies.nearest]\n")
    options = RunOptions(data_root=tmp_path, cache_dir=tmp_path / "c", device="cpu")
    runs = []
    for module in ("knn_one", "knn_two"):
        registry = plugins_mod.load_plugins(extra=[tiny_backbone, plugin(module)])
        runs.append(prepare_run(parse_suite(path, registry), registry, options, tmp_path / "r", lock=False))
    meta = json.loads((tmp_path / "r" / "run.json").read_text())
    assert meta["providers"]["strategy"] == {"nearest": "'knn_one' (in-process)"}  # the first start's
    assert meta["resumes"][-1]["providers"]["strategy"] == {"nearest": "'knn_two' (in-process)"}
    assert meta["providers"]["backbone"] == {"torch/mini_cnn": "'tiny_backbone' (in-process)"}
    assert meta["providers"]["backend"]["torch"].startswith("'torch' (zoo-bench ")
    assert runs[0].provider_changes == []
    assert runs[1].provider_changes == [
        f"{tmp_path / 'r' / 'run.json'}: strategy 'nearest' was provided by plugin 'knn_one' (in-process); now by "
        "plugin 'knn_two' (in-process): its numbers may not compare"]
