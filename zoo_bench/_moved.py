"""Modules that moved into the subpackages keep importing under their old names, with a warning.

``import zoo_bench.selection`` (or ``from zoo_bench.runner import Runner``) gives the very module now at
``zoo_bench.results.selection`` (``zoo_bench.run.runner``): one module object under two names, so a
monkeypatch or an ``isinstance`` check through either name sees the same thing. A DeprecationWarning
names the new home, once per process (the old name stays in ``sys.modules`` after the first import).
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

MOVED = {  # old module -> its home since the package was grouped into plan / results / run / show
    "zoo_bench.suite": "zoo_bench.plan.suite",
    "zoo_bench.grid": "zoo_bench.plan.grid",
    "zoo_bench.sampling": "zoo_bench.plan.sampling",
    "zoo_bench.stats": "zoo_bench.results.stats",
    "zoo_bench.selection": "zoo_bench.results.selection",
    "zoo_bench.evidence": "zoo_bench.results.evidence",
    "zoo_bench.compare": "zoo_bench.results.compare",
    "zoo_bench.ranks": "zoo_bench.results.ranks",
    "zoo_bench.prepare": "zoo_bench.run.prepare",
    "zoo_bench.runner": "zoo_bench.run.runner",
    "zoo_bench.trials": "zoo_bench.run.trials",
    "zoo_bench.sweeps": "zoo_bench.run.sweeps",
    "zoo_bench.memory": "zoo_bench.run.memory",
    "zoo_bench.download": "zoo_bench.run.download",
    "zoo_bench.saved_models": "zoo_bench.run.saved_models",
    "zoo_bench.activation_maps": "zoo_bench.run.activation_maps",
    "zoo_bench.executors": "zoo_bench.run.executors",
    "zoo_bench.executors.base": "zoo_bench.run.executors.base",
    "zoo_bench.executors.pool": "zoo_bench.run.executors.pool",
    "zoo_bench.executors.worker": "zoo_bench.run.executors.worker",
    "zoo_bench.executors.ray_cluster": "zoo_bench.run.executors.ray_cluster",
    "zoo_bench.report": "zoo_bench.show.report",
    "zoo_bench.plots": "zoo_bench.show.plots",
    "zoo_bench.document": "zoo_bench.show.document",
    "zoo_bench.confusion": "zoo_bench.show.confusion",
    "zoo_bench.zoo_list": "zoo_bench.show.zoo_list",
}


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module name and loads it as its new module."""

    def find_spec(self, fullname: str, path, target=None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        is_package = any(name.startswith(fullname + ".") for name in MOVED)  # its submodules moved with it
        return importlib.util.spec_from_loader(fullname, self, is_package=is_package)

    def create_module(self, spec) -> ModuleType | None:
        return None  # a placeholder; exec_module puts the real module in its place

    def exec_module(self, module: ModuleType) -> None:
        new = MOVED[module.__name__]
        warnings.warn(f"{module.__name__} moved to {new}; import it from there (the old name will go)",
                      DeprecationWarning, stacklevel=2)
        sys.modules[module.__name__] = importlib.import_module(new)  # the import system returns this entry


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(f, MovedModules) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedModules())  # before the path finder, which would load a second copy
