"""The plugin contract. These docstrings are the plugin reference.

A plugin is an importable module (or package) named by an entry point in the group ``zoo_bench``::

    [project.entry-points.zoo_bench]
    my_plugin = "my_plugin_module"

The module defines any of the hooks below, decorated with :data:`zoo_bench.hookimpl`.
Every hook is called with no arguments and returns a list; names must be unique across plugins.
"""
from __future__ import annotations

import pluggy

PROJECT = "zoo_bench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def zoo_bench_register_backends() -> list[type]:
    """Return :class:`zoo_bench.Backend` subclasses.

    A backend runs models in one framework (``torch``, ``keras``...). Its class attribute ``name``
    is what suites write under ``run.backends``. Import the framework inside the backend's methods,
    not at module level, so that listing plugins never needs it installed.
    """


@hookspec
def zoo_bench_register_backbones() -> list:
    """Return :class:`zoo_bench.BackboneSpec` objects.

    Each spec names its backend (``spec.backend``) and a backbone name unique within that backend,
    so a plugin can add a model to a backend that another plugin provides. The spec carries the
    input size, normalisation and a builder the backend calls.
    """


@hookspec
def zoo_bench_register_backbone_catalogs() -> list:
    """Return :class:`zoo_bench.BackboneCatalog` objects: whole families of backbones.

    A catalogue named ``timm`` makes every ``timm:NAME`` a backbone of its backend without
    registering each one; it resolves a name to a :class:`zoo_bench.BackboneSpec` when a suite uses
    it, and lists its members for ``zoo-bench list backbones`` without building them.
    """


@hookspec
def zoo_bench_register_strategies() -> list[type]:
    """Return :class:`zoo_bench.Strategy` subclasses.

    A strategy is a way of transferring a backbone (``svm``, ``fpt``...). It declares its
    parameters with defaults in ``params`` and speaks only to the Backend API through the
    :class:`zoo_bench.TrialContext` it is given, so it runs on every backend unchanged.
    """


@hookspec
def zoo_bench_register_datasets() -> list[type]:
    """Return :class:`zoo_bench.DatasetSource` subclasses.

    A data-set source turns a suite's ``[dataset]`` table into lists of (image file, class) pairs
    for the train and test parts. Its ``options`` declare the extra keys it accepts.
    """


@hookspec
def zoo_bench_register_downloads() -> list:
    """Return :class:`zoo_bench.DownloadSpec` objects for ``zoo-bench data get NAME``.

    Each names a public archive (URL, SHA-256) and a ``prepare`` function that lays the
    unpacked archive out under the data root.
    """
