"""Contract checks for plugin authors: the same checks on every backend, backbone and strategy.

One import and one call in the plugin's own test suite::

    import my_plugin
    from zoo_bench.testing import check_plugin

    def test_my_plugin_keeps_the_zoo_bench_contract():
        check_plugin(my_plugin)  # raises ContractError listing every broken rule

What is checked (on small random images, random weights, CPU):

* the plugin loads with no problem (hook names, types, names not taken);
* each backbone it registers (or the ``backbones`` named, e.g. members of its catalogue), with its
  backend: the base builds; ``block_count`` >= 1; features are float32 ``(N, feature_dim)`` and
  finite; the same seed gives the same base and features; with ``last_blocks=0`` only the head
  trains and a fit leaves the base's features unchanged (weights and BatchNorm statistics frozen);
  ``last_blocks=None`` trains everything; ``predict`` gives int64 classes in range (and ``logits``,
  where implemented, ``(N, classes)``); the same seed gives the same fit;
* each strategy it registers: every parameter default is allowed by its own ``Param`` rules,
  ``search_space`` and ``sweep_params`` name real parameters; run with its defaults (epoch counts
  capped at 2) on a small torch CNN, or, where torch is not installed (or ``strategy_backend="numpy"``),
  on the numpy reference backend (:mod:`zoo_bench.reference_backend`: features, heads and whole-model
  fits, no cut and no optional verb), what it returns keeps the Outcome rules a trial checks too
  (:func:`zoo_bench.outcome_rules.outcome_problems`: an Outcome; one class in range per test image;
  scores of the right shape; validation predictions unless it declares ``val_predictions = False``;
  trainable <= total parameters), and the same seed gives the same predictions. A strategy that
  ``requires`` an optional verb the backend at hand lacks is skipped (``report.skipped`` says why); one
  that runs on a family of backbones only (``backbone_families``) runs on a small network of it (``vit``:
  timm's ``test_vit`` at 32 px, fixed random weights), and is skipped where that cannot be built.

* each data source it registers: its options are a dict; listed from a folder the caller names
  (``check_plugin(..., datasets={"name": folder})``), it returns a :class:`zoo_bench.Listing` whose class
  indices are in range and whose files exist.

Every exception a plugin raises becomes a failure line of the report; the other checks go on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import numpy as np

from .backend import Backend, BackboneSpec, HeadSpec, OptimizerSpec
from .context import FeatureCache, TrialContext
from .dataset import listing_problems
from .images import Batch
from .outcome_rules import outcome_problems
from .plugins import Registry, load_plugins
from .reference_backend import GRID_NET, NumpyBackend
from .strategy import Outcome

CLASSES = 2
PER_CLASS = 6


class ContractError(AssertionError):
    """One or more contract rules broken; the message lists each on its own line."""


@dataclass
class ContractReport:
    """What was checked and what failed."""

    checked: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    ran_on: dict[str, str] = field(default_factory=dict)  # strategy subject -> the backend it ran on
    skipped: list[str] = field(default_factory=list)  # what could not run on the backend at hand, and why

    def fail(self, subject: str, why: str) -> None:
        self.failures.append(f"{subject}: {why}")


def _images(size: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two classes a small model can tell apart: bright left half or bright right half, plus noise."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 80, (n, size, size, 3)).astype(np.uint8)
    y = np.arange(n) % CLASSES
    half = size // 2
    for i, label in enumerate(y):
        if label:
            x[i, :, half:] += 150
        else:
            x[i, :, :half] += 150
    return x, y.astype(np.int64)


def _guard(report: ContractReport, subject: str, what: str, fn: Callable[[], Any]) -> Any:
    """Run one step; an exception is a failure of that step, and the checks of this subject go on."""
    try:
        return fn()
    except Exception as exc:  # a plugin may raise anything; the report says which step and what
        text = str(exc).strip().splitlines()
        report.fail(subject, f"{what} raised {type(exc).__name__}: {text[0][:200] if text else ''}")
        return None


def check_backbone(backend_cls: type, spec: BackboneSpec, report: ContractReport, image_size: int | None = None,
                   weights_dir: str | None = None) -> None:
    """The backbone rules of the module docstring, through the Backend API only."""
    subject = f"backbone {spec.name!r} (backend {spec.backend})"
    report.checked.append(subject)
    backend: Backend | None = _guard(report, subject, "creating the backend on cpu",
                                     lambda: backend_cls(device="cpu", precision="fp32", weights_dir=weights_dir))
    if backend is None:
        return
    size = image_size or spec.image_size
    x, y = _images(size, CLASSES * PER_CLASS, seed=1)

    def build(seed: int) -> Any:
        backend.seed(seed)
        return backend.build_base(spec, pretrained=False, image_size=size)

    base = _guard(report, subject, "build_base(pretrained=False)", lambda: build(0))
    if base is None:
        return
    blocks = _guard(report, subject, "block_count", lambda: backend.block_count(base))
    if blocks is not None and (not isinstance(blocks, int) or blocks < 1):
        report.fail(subject, f"block_count is {blocks!r}, expected an int >= 1")
    dim = _guard(report, subject, "feature_dim", lambda: backend.feature_dim(base))
    feats = _guard(report, subject, "features", lambda: backend.features(base, x, 4))
    if feats is None or dim is None:
        return
    if not isinstance(feats, np.ndarray) or feats.dtype != np.float32:
        report.fail(subject, f"features dtype is {getattr(feats, 'dtype', type(feats).__name__)}, expected float32")
    if getattr(feats, "shape", None) != (len(x), dim):
        report.fail(subject, f"features shape is {getattr(feats, 'shape', None)}, expected {(len(x), dim)} "
                             "(images, feature_dim)")
        if not isinstance(feats, np.ndarray):
            return
    if not np.isfinite(feats).all():
        report.fail(subject, "features are not all finite")
    again = _guard(report, subject, "a second build with the same seed", lambda: backend.features(build(0), x, 4))
    if again is not None and not np.array_equal(np.asarray(again), feats):
        report.fail(subject, "the same seed built a different base (features differ): not deterministic")

    def fitted(last_blocks: int | None, seed: int) -> tuple[Any, Any, np.ndarray]:
        b = build(seed)
        model = backend.attach(b, backend.new_head(dim, CLASSES, HeadSpec((8,), 0.0)))
        backend.set_trainable(model, last_blocks, bn_inference=False)
        counts = backend.count_params(model)
        backend.seed(seed)
        backend.fit(model, x, y, inputs="images", epochs=1, optimizer=OptimizerSpec("sgd", 0.05), batch_size=4)
        return b, model, np.asarray(counts)

    frozen = _guard(report, subject, "fit with last_blocks=0", lambda: fitted(0, 0))
    if frozen is not None:
        b, model, (trainable, total) = frozen
        if not 0 < trainable < total:
            report.fail(subject, f"with last_blocks=0 {trainable} of {total} parameters are trainable; "
                                 "expected the head's only")
        after = _guard(report, subject, "features after a head-only fit", lambda: backend.features(b, x, 4))
        if after is not None and not np.allclose(after, feats, atol=1e-5):
            report.fail(subject, "a fit with last_blocks=0 changed the base (weights or BatchNorm statistics "
                                 "of frozen blocks)")
        pred = _guard(report, subject, "predict", lambda: backend.predict(model, x, 4))
        if pred is not None:
            pred = np.asarray(pred)
            if pred.dtype != np.int64 or pred.shape != (len(x),) or not ((pred >= 0) & (pred < CLASSES)).all():
                report.fail(subject, f"predict gave {pred.dtype} {pred.shape}, expected int64 ({len(x)},) "
                                     f"in 0..{CLASSES - 1}")
        if backend.supports("logits"):
            try:
                logits = backend.logits(model, x, 4)
                if np.asarray(logits).shape != (len(x), CLASSES):
                    report.fail(subject, f"logits shape is {np.asarray(logits).shape}, expected {(len(x), CLASSES)}")
            except Exception as exc:
                report.fail(subject, f"logits raised {type(exc).__name__}: {str(exc)[:200]}")
        twin = _guard(report, subject, "the same fit again", lambda: fitted(0, 0))
        if twin is not None and pred is not None:
            if not np.array_equal(np.asarray(backend.predict(twin[1], x, 4)), pred):
                report.fail(subject, "the same seed gave a different fit (predictions differ): not deterministic")
    everything = _guard(report, subject, "fit with last_blocks=None", lambda: fitted(None, 0))
    if everything is not None and everything[2][0] != everything[2][1]:
        report.fail(subject, f"with last_blocks=None {everything[2][0]} of {everything[2][1]} parameters "
                             "are trainable; expected all")


def contract_cnn(pretrained: bool, image_size: int, weights_dir: str | None) -> tuple:
    """A 3-block CNN whose "pretrained" weights are a fixed random draw: strategies run on it in seconds.

    Each block has what a strategy may single out: a 3 x 3 convolution without bias, BatchNorm, and a
    pointwise convolution with a bias (BitFit's biases, the norm layers, LoRA's targets)."""
    import torch
    from torch import nn

    state = torch.random.get_rng_state()
    if pretrained:
        torch.manual_seed(1234)  # the same weights every time, like a weights file
    blocks = [nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                            nn.Conv2d(cout, cout, 1), nn.ReLU(), nn.MaxPool2d(2))
              for cin, cout in ((3, 8), (8, 16), (16, 16))]
    if pretrained:
        torch.random.set_rng_state(state)
    return blocks, ["block1", "block2", "block3"], 16


CONTRACT_SPEC = BackboneSpec(name="contract_cnn", backend="torch", image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3,
                             builder=partial(contract_cnn), weights="contract-fixed-random",
                             description="fixed random 3-block CNN for strategy contract checks")


CONTRACT_FAMILIES = {"vit": "timm:test_vit"}  # BackboneSpec.family -> the small network a strategy of it runs on


def _fixed_random(builder: Callable[..., Any], pretrained: bool, image_size: int, weights_dir: str | None) -> Any:
    """``builder``'s network with random weights, the same draw every time when "pretrained"."""
    import torch

    state = torch.random.get_rng_state()
    if pretrained:
        torch.manual_seed(1234)
    try:
        return builder(pretrained=False, image_size=image_size, weights_dir=None)
    finally:
        if pretrained:
            torch.random.set_rng_state(state)


def family_spec(registry: Registry, families: tuple[str, ...]) -> tuple[BackboneSpec | None, str]:
    """A small torch network of the first of ``families`` with fixed random "pretrained" weights, at 32 px,
    for a strategy that runs on that family only (``vpt``: timm's ``test_vit``); (None, why) where there is none."""
    from dataclasses import replace

    family = families[0]
    name = CONTRACT_FAMILIES.get(family)
    if name is None:
        return None, f"zoo_bench.testing has no small {family!r} network to run it on"
    try:
        spec = registry.backbone("torch", name)
    except Exception as exc:  # its catalogue's library missing (timm)
        return None, f"it runs on {family!r} backbones only and {name} cannot be built here ({str(exc).splitlines()[0]})"
    if spec is None:
        return None, f"it runs on {family!r} backbones only and {name} is not in this registry"
    return replace(spec, name=f"contract_{family}", image_size=32, weights="contract-fixed-random",
                   builder=partial(_fixed_random, spec.builder), weights_present=None), ""


def _capped(defaults: dict[str, Any]) -> dict[str, Any]:
    return {k: min(v, 2) if "epochs" in k and isinstance(v, int) and not isinstance(v, bool) else v
            for k, v in defaults.items()}


def _strategy_backend(registry: Registry, wanted: str | None) -> tuple[type | None, BackboneSpec, str]:
    """The backend a strategy runs on: torch's small CNN where torch is installed, else the numpy
    reference backend; ``wanted`` names one of the two. Returns (backend class or None, spec, why not)."""
    if wanted not in (None, "torch", "numpy"):
        raise ValueError(f"strategy_backend must be 'torch' or 'numpy', not {wanted!r}")
    torch_cls = registry.backends.get("torch")
    torch_ok = torch_cls is not None and torch_cls.available()[0]
    if wanted == "numpy" or (wanted is None and not torch_ok):
        return NumpyBackend, GRID_NET, ""
    if not torch_ok:
        return None, CONTRACT_SPEC, "cannot run: the torch backend is not available here (pip install 'zoo-bench[torch]')"
    return torch_cls, CONTRACT_SPEC, ""


def check_strategy(cls: type, registry: Registry, report: ContractReport, backend: str | None = None) -> None:
    """The strategy rules of the module docstring, run on ``backend`` ("torch", "numpy"; None: torch
    where it is installed, else numpy)."""
    subject = f"strategy {cls.name!r}"
    report.checked.append(subject)
    specs = _guard(report, subject, "param_specs()", cls.param_specs)
    if specs is None:
        return
    for key, param in specs.items():
        problem = _guard(report, subject, f"checking the default of {key}", lambda p=param: p.problem(p.default))
        if problem:
            report.fail(subject, f"the default of {key} is not allowed by its own rules: {problem}")
    for what, names in (("search_space", list(getattr(cls, "search_space", {}) or {})),
                        ("sweep_params", list(getattr(cls, "sweep_params", ()) or ()))):
        unknown = [n for n in names if n not in specs]
        if unknown:
            report.fail(subject, f"{what} names parameters it does not have: {', '.join(unknown)}")
    backend_cls, spec, why_not = _strategy_backend(registry, backend)
    if backend_cls is None:
        report.fail(subject, why_not)
        return
    lacking = [verb for verb in getattr(cls, "requires", ()) if not backend_cls.implements(verb)]  # as planning asks
    if lacking:
        report.skipped.append(f"{subject}: not run: it requires {', '.join(lacking)}(), which the {backend_cls.name} "
                              f"backend lacks" + ("; install torch to run it" if backend_cls is NumpyBackend else ""))
        return
    families = tuple(getattr(cls, "backbone_families", ()) or ())
    if families and spec.family not in families:
        spec, why_not = family_spec(registry, families) if backend_cls is not NumpyBackend else (
            None, f"it runs on {' or '.join(families)} backbones only, which the numpy backend does not build")
        if spec is None:
            report.skipped.append(f"{subject}: not run: {why_not}")
            return
    report.ran_on[subject] = backend_cls.name
    params = _capped({k: p.default for k, p in specs.items()})
    first = _guard(report, subject, f"run() with its defaults on the {backend_cls.name} backend",
                   lambda: _run_strategy(cls, backend_cls, spec, params))
    if first is None:
        if backend_cls is NumpyBackend and backend is None:
            report.fail(subject, "it was run on the numpy reference backend because torch is not installed; "
                                 "a strategy that needs more than features, heads and whole-model fits is "
                                 "checked with torch (pip install 'zoo-bench[torch]')")
        return
    outcome, n_test, n_val = first
    problems = outcome_problems(outcome, n_test, n_val, CLASSES, needs_val=bool(getattr(cls, "val_predictions", True)))
    for problem in problems:
        report.fail(subject, problem)
    if problems:
        return
    second = _guard(report, subject, "run() again with the same seed",
                    lambda: _run_strategy(cls, backend_cls, spec, params))
    if second is not None and not (isinstance(second[0], Outcome)
                                   and np.array_equal(np.asarray(second[0].test_pred), np.asarray(outcome.test_pred))):
        report.fail(subject, "the same seed gave different test predictions: not deterministic")


def _run_strategy(cls: type, backend_cls: type, spec: BackboneSpec, params: dict[str, Any]) -> tuple[Any, int, int]:
    backend = backend_cls(device="cpu", precision="fp32")
    parts = {}
    for name, (n, seed) in {"train": (CLASSES * PER_CLASS, 1), "val": (CLASSES * 2, 2), "test": (CLASSES * 3, 3)}.items():
        x, y = _images(32, n, seed)
        parts[name] = Batch(images=x, labels=y if name != "test" else np.full(n, -1, np.int64),
                            paths=[f"contract/{name}/{i}" for i in range(n)])
    backend.seed(0)
    ctx = TrialContext(backend=backend, spec=spec, image_size=32, batch_size=4, num_classes=CLASSES, seed=0,
                       train=parts["train"], val=parts["val"], test=parts["test"], feature_cache=FeatureCache())
    return cls().run(ctx, dict(params)), len(parts["test"].labels), len(parts["val"].labels)


def check_dataset(cls: type, report: ContractReport, root: Any = None, config: dict[str, Any] | None = None,
                  cache_dir: Any = None) -> None:
    """The data-source rules: its options' defaults have plain types; listed from ``root`` (when given),
    it returns a Listing whose labels are in range and whose files exist."""
    import tempfile
    from pathlib import Path

    subject = f"dataset {cls.name!r}"
    report.checked.append(subject)
    options = getattr(cls, "options", {})
    if not isinstance(options, dict):
        report.fail(subject, f"options is {type(options).__name__}, expected a dict of [dataset] keys and defaults")
    if root is None:
        return
    source = _guard(report, subject, "creating the source", cls)
    if source is None:
        return
    with tempfile.TemporaryDirectory() as scratch:
        config = {"source": cls.name, **(options if isinstance(options, dict) else {}), **(config or {})}
        listing = _guard(report, subject, f"list({root})",
                         lambda: source.list(Path(root), config, Path(cache_dir or scratch)))
    if listing is None:
        return
    for problem in listing_problems(listing, check_files=True):
        report.fail(subject, problem)


def check_plugin(module: Any, backbones: list[str] | None = None, image_size: int | None = None,
                 weights_dir: str | None = None, raise_on_failure: bool = True,
                 datasets: dict[str, Any] | None = None, strategy_backend: str | None = None) -> ContractReport:
    """Load ``module`` as a plugin and check everything it registers (see the module docstring).

    ``backbones`` names the backbones to check instead of all the plugin registers (members of a
    catalogue, or a few of many); ``image_size`` overrides their input size to keep checks fast.
    ``datasets`` maps a data source's name to the folder to list (or to ``(folder, [dataset] options)``);
    a source without one has its options checked only. ``strategy_backend`` ("torch" or "numpy") names
    the backend strategies run on; by default torch where it is installed, else the numpy reference
    backend (``report.ran_on`` says which each ran on).
    Raises :class:`ContractError` listing every failure unless ``raise_on_failure`` is False.
    """
    registry = load_plugins(extra=[module])
    report = ContractReport()
    name = getattr(module, "__name__", repr(module))
    info = next((p for p in registry.plugins if p.module == name or p.name == name), None)
    if info is None or info.error:
        report.fail(f"plugin {name}", f"failed to load: {info.error if info else 'not found'}")
    else:
        report.failures += [f"plugin {name}: {problem}" for problem in info.problems]
    mine = registry.plugin(info.name) if info and not info.error else None
    owned = (mine.registers if mine else {})
    if backbones is None:
        backbones = [label.split("/", 1)[1] for label in owned.get("backbone", [])]
        pairs = [tuple(label.split("/", 1)) for label in owned.get("backbone", [])]
    else:
        pairs = []
        for b in backbones:
            try:
                found = [be for be in registry.backends if registry.backbone(be, b) is not None]
            except Exception as exc:  # a catalogue that cannot resolve here (its library missing)
                report.fail(f"backbone {b!r}", f"cannot be resolved: {str(exc).splitlines()[0] if str(exc) else exc!r}")
                continue
            if not found:
                report.fail(f"backbone {b!r}", "no backend has it")
            pairs += [(be, b) for be in found]
    for backend_name, backbone in pairs:
        spec = registry.backbone(backend_name, backbone)
        cls = registry.backends[backend_name]
        ok, why = cls.available()
        if not ok:
            report.fail(f"backbone {backbone!r} (backend {backend_name})", f"backend unavailable: {why}")
            continue
        _guard(report, f"backbone {backbone!r} (backend {backend_name})", "checking it",
               lambda: check_backbone(cls, spec, report, image_size=image_size, weights_dir=weights_dir))
    for strategy in owned.get("strategy", []):
        _guard(report, f"strategy {strategy!r}", "checking it",
               lambda: check_strategy(registry.strategies[strategy], registry, report, strategy_backend))
    for dataset in owned.get("dataset", []):
        where = (datasets or {}).get(dataset)
        root, config = where if isinstance(where, tuple) else (where, None)
        _guard(report, f"dataset {dataset!r}", "checking it",
               lambda: check_dataset(registry.datasets[dataset], report, root, config))
    if raise_on_failure and report.failures:
        raise ContractError(f"{len(report.failures)} contract rule(s) broken:\n" + "\n".join(report.failures))
    return report


__all__ = ["ContractError", "ContractReport", "check_backbone", "check_dataset", "check_plugin", "check_strategy"]
