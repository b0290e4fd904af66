"""Preparing a run, the one way every caller does it: data listed, sizes checked, folder locked, run.json written.

``prepare_run`` is what ``zoo-bench run``, the pytest plugin and the tests call before any trial runs;
``zoo_bench.run.runner.Runner`` then drives the trials through an executor (``zoo_bench.run.executors``).
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..backend import FAMILIES, Backend
from ..dataset import Listing, listing_problems
from ..errors import DataError, SuiteError, ZooBenchError, one_line
from ..params import with_defaults
from ..plan.grid import expand
from ..plan.providers import latest_providers, provider_changes, providers
from ..plan.sampling import subset
from ..plan.suite import Suite
from ..plan.trial import Trial
from ..plugins import Registry
from ..results.store import RunStore, now_iso
from .download import get


@dataclass
class RunOptions:
    """Settings from the command line and environment that are not part of the suite."""

    data_root: Path
    cache_dir: Path
    weights_dir: str | None = None
    device: str | None = None
    precision: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    save_models: bool = False  # each trial's trained model into the run folder's models/ (zoo_bench.run.saved_models)
    activation_maps: int = 0  # Grad-CAM figures of this many test images per trial, in activation_maps/


def dataset_root(suite: Suite, data_root: Path) -> Path:
    """The data set folder: ``dataset.path`` as is when absolute, else under the data root."""
    path = Path(suite.dataset.get("path") or "")
    return path if path.is_absolute() else data_root / path


def list_dataset(suite: Suite, registry: Registry, options: RunOptions, console=None) -> Listing:
    """List the suite's images, downloading them first when the suite asks and they are missing."""
    source = registry.datasets[suite.dataset["source"]]()
    root = dataset_root(suite, options.data_root)
    if suite.dataset.get("download") and not root.exists():
        spec = registry.downloads.get(root.name)
        if spec is None:
            raise DataError(f"{suite.path}: dataset.download: no download named {root.name!r} "
                            f"(known: {', '.join(sorted(registry.downloads)) or 'none'})")
        get(spec, root.parent, options.cache_dir, console=console)
    name = suite.dataset["source"]
    try:
        listing = source.list(root, suite.dataset, options.cache_dir)
    except (ValueError, TypeError, OSError) as exc:  # a source's own check that is not a DataError yet
        raise DataError(f"{suite.path}: dataset: source {name!r}: {one_line(exc)}") from None
    except DataError as exc:
        hint = ""
        if not root.exists():
            known = f"; or run: zoo-bench data get {root.name}" if root.name in registry.downloads else ""
            hint = (f" (data root {options.data_root}: set --data-root or ZOO_BENCH_DATA_ROOT, "
                    f"or put the images in {root}{known})")
        key = "" if str(exc).startswith("dataset.") else "dataset: "  # the source named the key itself
        raise DataError(f"{suite.path}: {key}{exc}{hint}") from None
    except ZooBenchError:  # already one line with its own key (weights, usage): kept as it is
        raise
    except Exception as exc:  # a plugin's fault: one line naming it, never a traceback
        raise DataError(f"{suite.path}: dataset: source {name!r} from plugin {registry.owner('dataset', name)} "
                        f"raised {one_line(exc)}") from None
    problems = listing_problems(listing, check_files=False)  # files: each unreadable one is skipped and listed
    if problems:
        raise DataError(f"{suite.path}: dataset: source {name!r} from plugin {registry.owner('dataset', name)} "
                        f"broke the Listing contract: {problems[0]}")
    return listing


def check_sizes(suite: Suite, listing: Listing) -> None:
    """Every size must fit in every class's train part (one line per problem)."""
    counts = {listing.classes[c]: len(p) for c, p in listing.per_class("train").items()}
    smallest = min(counts, key=counts.get)
    problems = [
        f"{suite.path}: dataset.sizes[{i}]: {size} images per class asked, but class {smallest!r} has only "
        f"{counts[smallest]} train images (allowed: up to {counts[smallest]})"
        for i, size in enumerate(suite.sizes) if size > counts[smallest]
    ]
    empty = [c for c, p in listing.per_class("test").items() if not p]
    problems += [f"{suite.path}: dataset.test: class {listing.classes[c]!r} has no test images" for c in empty]
    if problems:
        raise SuiteError(problems)


def git_commit(path: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _pkg_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def run_metadata(suite: Suite, run_id: str, backends: dict[str, Backend | Exception], trials: int,
                 classes: list[str] | None = None, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """What run.json records: the suite as run, class order, selection, versions, devices, machine, commit."""
    devices = {}
    for name, backend in backends.items():
        if isinstance(backend, Backend):
            d = backend.device()
            devices[name] = {"kind": d.kind, "name": d.name, "precision": d.precision, "settings": d.settings,
                             "versions": backend.versions()}
        else:
            devices[name] = {"error": str(backend)}
    return {
        "run_id": run_id, "suite_name": suite.name, "suite_file": str(suite.path), "profile": suite.profile,
        "suite": suite.raw, "trials": trials, "started_at": now_iso(), "classes": classes,
        "selection": selection_meta(suite), "dataset_provenance": provenance or None,
        "versions": {"python": platform.python_version(), "zoo-bench": __version__,
                     **{p: _pkg_version(p) for p in ("torch", "torchvision", "tensorflow", "keras", "scikit-learn",
                                                     "numpy")}},
        "devices": devices, "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "git_commit": git_commit(Path(__file__).resolve().parent.parent), "argv": sys.argv,
    }


def weights_to_download(trials: list[Trial], registry: Registry, weights_dir: str | None) -> list[str]:
    """One warning per backbone whose pretrained weights exist but are not on this machine yet, naming the
    pretrained strategies among ``trials`` that need them: their first trial downloads the weights, or
    fails offline. (A backbone with no weights at all is refused when the suite is read.)"""
    users: dict[tuple[str, str], list[str]] = {}
    for t in trials:
        if registry.strategies[t.strategy].pretrained:
            names = users.setdefault((t.backend, t.backbone), [])
            if t.strategy not in names:
                names.append(t.strategy)
    lines = []
    for (backend, backbone), names in users.items():
        try:
            spec = registry.backbone(backend, backbone)
        except Exception:  # a catalogue that cannot resolve here: its trials report it
            continue
        if spec is not None and spec.present(weights_dir) is False:
            lines.append(f"backbone {backbone!r} ({backend}): its pretrained weights ({spec.weights}) are not on "
                         f"this machine yet; {', '.join(names)} will download them on first use, which fails "
                         "offline (--weights-dir or ZOO_BENCH_WEIGHTS_DIR names a folder that has them)")
    return lines


def selection_meta(suite: Suite) -> dict[str, Any] | None:
    """How tuned tables pick a configuration: the metric and the parameters tuned per strategy."""
    if suite.select_metric is None:
        return None
    return {"metric": suite.select_metric, "tuned": {k: list(v) for k, v in suite.tuned.items()},
            "defaults": suite.tuned_defaults, "refit": suite.refit, "folds": suite.folds, "repeats": suite.repeats,
            "one_se": suite.one_se, "fold_pixels": suite.fold_pixels,
            "simpler": suite.simpler}


def make_backends(suite: Suite, registry: Registry, options: RunOptions) -> dict[str, Backend | Exception]:
    """One backend instance per backend the suite names, or the error that stops its trials."""
    out: dict[str, Backend | Exception] = {}
    for name in suite.backends:
        cls = registry.backends[name]
        try:
            out[name] = cls(device=options.device or suite.device, precision=options.precision or suite.precision,
                            weights_dir=options.weights_dir, cache_dir=str(options.cache_dir))
            if suite.compile:
                if not cls.compiles:
                    raise ZooBenchError(f"{suite.path}: run.compile: backend {name!r} cannot compile its network; "
                                        f"set compile = false or drop {name!r} from run.backends")
                out[name].compile = True
        except ZooBenchError as exc:
            out[name] = exc
        except Exception as exc:  # a faulty backend plugin fails its own trials, not the run
            out[name] = ZooBenchError(f"backend {name} could not start: {one_line(exc)}")
    return out



@dataclass
class PreparedRun:
    """Everything a run needs before its first trial, in plain objects the driver and workers share."""

    suite: Suite
    registry: Registry
    options: RunOptions
    listing: Listing
    store: RunStore
    backends: dict[str, Backend | Exception]
    trials: list[Trial]
    run_id: str
    healed_bytes: int = 0  # bytes of an unfinished last line an interrupted write had left, now removed
    not_applicable: list[tuple[str, str]] = field(default_factory=list)  # (trial id, why): not run
    provider_changes: list[str] = field(default_factory=list)  # names another plugin answers to since run.json


def prepare_run(suite: Suite, registry: Registry, options: RunOptions, run_dir: Path, *,
                trials: list[Trial] | None = None, lock: bool = True, console: Any = None) -> PreparedRun:
    """List and check the data, open (and lock) the run folder, start the backends, write run.json.

    ``trials``: the part of the grid to run (default: all of it). ``lock``: take the folder's lock,
    so a second ``run`` of the same run id fails at once instead of writing beside this one.
    """
    trials = expand(suite) if trials is None else trials
    listing = list_dataset(suite, registry, options, console=console)
    check_sizes(suite, listing)
    trials, not_applicable = applicable(trials, suite, registry, listing)
    store = RunStore(run_dir)
    if lock:
        store.lock()
    healed = store.heal()
    backends = make_backends(suite, registry, options)
    before = latest_providers(store.meta())
    meta = {**run_metadata(suite, run_dir.name, backends, len(trials), listing.classes, listing.provenance),
            "providers": providers(suite, registry)}
    store.write_meta(meta)
    return PreparedRun(suite, registry, options, listing, store, backends, trials, run_dir.name, healed,
                       not_applicable, provider_changes(before, meta["providers"], str(run_dir / "run.json")))


def applicable(trials: list[Trial], suite: Suite, registry: Registry, listing: Listing
               ) -> tuple[list[Trial], list[tuple[str, str]]]:
    """The trials whose configuration means something at their size (``Strategy.inapplicable``) and whose
    backend has the verbs the strategy ``requires`` and whose backbone is of a family it runs on, and (trial
    id, why) for the others: ``knn`` with ``k`` above the training images, ``lora`` on a backend without
    ``adapt``, ``vpt`` on a CNN."""

    train_images: dict[int, int] = {}
    keep: list[Trial] = []
    dropped: list[tuple[str, str]] = []
    for trial in trials:
        cls = registry.strategies.get(trial.strategy)
        if cls is not None and trial.size not in train_images:  # the same count for every seed
            train_images[trial.size] = len(subset(listing, trial.size, 0, suite.dataset["val_fraction"]).train)
        why = None if cls is None else cls.inapplicable(with_defaults(trial.param_dict, cls.params),
                                                        train_images[trial.size])
        backend_cls = registry.backends.get(trial.backend)
        lacking = [] if cls is None or backend_cls is None else [
            verb for verb in getattr(cls, "requires", ()) if not backend_cls.implements(verb)]
        if why is None and lacking:
            why = f"it requires {', '.join(lacking)}(), which backend {trial.backend!r} lacks"
        if why is None and cls is not None and getattr(cls, "backbone_families", ()):
            why = unsuited(cls, registry, trial.backend, trial.backbone)
        if why is None:
            keep.append(trial)
        else:
            dropped.append((trial.id, why))
    return keep, dropped


def unsuited(cls: type, registry: Registry, backend: str, backbone: str) -> str | None:
    """Why ``backbone`` is not of a family strategy ``cls`` runs on (``Strategy.backbone_families``), or None."""
    spec = registry.backbone(backend, backbone)
    if spec is None or spec.family in cls.backbone_families:
        return None
    return (f"{cls.name} runs on {' or '.join(FAMILIES.get(f, f) for f in cls.backbone_families)} only; "
            f"{backbone} is not one")
