"""zoo-bench: which pretrained backbone, and which way of transferring it, works best for your images.

The public API for plugin authors is what this module exports; everything else is private.
"""
from .adapters import Adapter
from .backend import Backend, BackboneSpec, Device, EpochStats, HeadSpec, OptimizerSpec
from .catalog import BackboneCatalog
from .context import TrialContext
from .dataset import DatasetSource, DownloadSpec, Listing
from .errors import (
    BackendUnavailableError, DataError, DivergedError, PluginError, SuiteError, UsageError,
    WeightsUnavailableError, ZooBenchError,
)
from .hookspecs import hookimpl
from .images import Batch
from .params import Param
from .strategy import Outcome, Strategy

__version__ = "0.1.0"

__all__ = [
    "Adapter", "Backend", "BackboneCatalog", "BackboneSpec", "BackendUnavailableError", "Batch", "DataError", "DatasetSource",
    "DivergedError", "Device", "DownloadSpec", "EpochStats", "HeadSpec", "Listing", "OptimizerSpec", "Outcome", "Param",
    "PluginError",
    "Strategy", "SuiteError", "TrialContext", "UsageError", "WeightsUnavailableError", "ZooBenchError",
    "hookimpl", "__version__",
]

from ._moved import install as _install_moved  # noqa: E402  (old module names keep importing, with a warning)

_install_moved()
