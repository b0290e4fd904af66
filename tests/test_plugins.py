"""Plugin discovery: broken plugins reported by name, duplicates named, first-party via entry points."""
from importlib import metadata
from types import ModuleType

import pytest

from zoo_bench import PluginError, Strategy, hookimpl
from zoo_bench import plugins as plugins_mod


def fake_ep(name: str, value: str) -> metadata.EntryPoint:
    return metadata.EntryPoint(name=name, value=value, group="zoo_bench")


def test_first_party_plugins_come_from_entry_points():
    registry = plugins_mod.load_plugins()
    names = {p.name for p in registry.plugins}
    assert {"torch", "strategies", "datasets"} <= names
    assert registry.owners[("strategy", "svm")] == "strategies"
    assert "efficientnet_lite0" in registry.backbones["torch"]


def test_a_plugin_that_fails_to_import_is_reported_and_others_load(monkeypatch):
    real = plugins_mod._entry_points()
    monkeypatch.setattr(plugins_mod, "_entry_points", lambda: real + [fake_ep("broken", "no_such_module_zb")])
    registry = plugins_mod.load_plugins()
    assert registry.load_errors == [
        "plugin 'broken' (unknown) failed to load: ModuleNotFoundError: No module named 'no_such_module_zb'"]
    assert "svm" in registry.strategies


def test_duplicate_names_name_both_plugins():
    class Svm2(Strategy):
        name = "svm"

        def run(self, ctx, params):
            raise NotImplementedError

    module = ModuleType("dup_plugin")
    module.zoo_bench_register_strategies = hookimpl(lambda: [Svm2])
    with pytest.raises(PluginError, match="strategy 'svm' is registered by two plugins: 'strategies' and 'dup_plugin'"):
        plugins_mod.load_plugins(extra=[module])


def test_misspelled_hook_fails_loudly():
    module = ModuleType("typo_plugin")
    module.zoo_bench_register_strategy = hookimpl(lambda: [])
    with pytest.raises(Exception, match="zoo_bench_register_strategy"):
        plugins_mod.load_plugins(extra=[module])


def test_autoload_switch_keeps_first_party_only(monkeypatch):
    real = plugins_mod._entry_points.__wrapped__ if hasattr(plugins_mod._entry_points, "__wrapped__") else None
    monkeypatch.setenv(plugins_mod.DISABLE_AUTOLOAD_ENV, "1")
    monkeypatch.setattr(metadata, "entry_points", lambda group: [fake_ep("torch", "zoo_bench_torch"),
                                                                  fake_ep("thirdparty", "some_plugin")])
    assert [ep.name for ep in plugins_mod._entry_points()] == ["torch"]
    assert real is None
