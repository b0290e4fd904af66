"""Shared fixtures: a tiny torch backbone plugin, suite writing, in-process runs."""
from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torchvision  # noqa: F401  (before any test imports TensorFlow: the other order segfaults)

from zoo_bench.plan.grid import expand
from zoo_bench.plugins import load_plugins
from zoo_bench.results.store import RunStore
from zoo_bench.run.prepare import RunOptions, prepare_run
from zoo_bench.run.runner import Runner
from zoo_bench.plan.suite import parse_suite

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).parent))


class QuietReporter:
    """Collects what the runner reports, prints nothing."""

    def __init__(self) -> None:
        self.epochs: list[Any] = []
        self.finished: list[dict] = []
        self.notes: list[tuple[str, str]] = []

    def start(self, total, done): self.total, self.done = total, done
    def trial_started(self, trial): self.started = getattr(self, "started", []) + [trial.id]
    def epoch(self, trial, index, total, stats): self.epochs.append((index, total, stats))
    def trial_finished(self, trial, row): self.finished.append(row)
    def note(self, trial, text): self.notes.append((trial.id, text))
    def close(self): pass


@pytest.fixture()
def registry():
    import tiny_backbone

    return load_plugins(extra=[tiny_backbone])


@pytest.fixture()
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "zb-cache"


@pytest.fixture()
def tiny_weights(tmp_path_factory, monkeypatch):
    """A real weights file for the tiny backbone, so 'pretrained' paths load from disk."""
    import tiny_backbone

    path = tmp_path_factory.getbasetemp() / "mini_cnn.pth"
    if not path.exists():
        tiny_backbone.save_weights(path)
    monkeypatch.setattr(tiny_backbone, "WEIGHTS", path)
    return path


def write_suite(tmp_path: Path, body: str, name: str = "suite.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


TINY_SUITE = """
[suite]
name = "tiny"
seeds = [0]
[dataset]
source = "synthetic"
classes = 2
train_per_class = 16
test_per_class = 8
image_size = 32
val_fraction = 0.25
sizes = [8]
[run]
backends = ["torch"]
backbones = ["mini_cnn"]
batch_size = 8
"""


def lite0_suite(name: str, strategies: str, backend: str = "torch", seeds: tuple[int, ...] = (0,),
                train_per_class: int = 10, test_per_class: int = 5, sizes: tuple[int, ...] = (8,)) -> str:
    """A small suite on generated 32 px images with EfficientNet-Lite0 (the one pretrained backbone here)."""
    return f"""
[suite]
name = "{name}"
seeds = {list(seeds)}
[dataset]
source = "synthetic"
train_per_class = {train_per_class}
test_per_class = {test_per_class}
image_size = 32
sizes = {list(sizes)}
[run]
backends = ["{backend}"]
backbones = ["efficientnet_lite0"]
image_size = 32
batch_size = 8
{strategies.strip()}
"""


def run_inprocess(suite_path: Path, registry, tmp_path: Path, cache_dir: Path, run_id: str = "r1",
                  data_root: Path | None = None, weights_dir: str | None = None, isolated: bool = False,
                  workers: int | None = None, threads: int | None = None, save_models: bool = False):
    """Run a suite like `zoo-bench run` does, from this process (trials in workers when ``isolated``
    or with ``workers``)."""
    suite = parse_suite(suite_path, registry)
    options = RunOptions(data_root=data_root or tmp_path, cache_dir=cache_dir, weights_dir=weights_dir, device="cpu",
                         save_models=save_models)
    prepared = prepare_run(suite, registry, options, tmp_path / "results" / suite.name / run_id)
    store = prepared.store
    reporter = QuietReporter()
    executor = None
    if isolated or workers:
        from zoo_bench.run.executors import PoolExecutor

        executor = PoolExecutor.for_run(suite, registry, options, prepared.listing, store.run_dir, reporter,
                                        workers=workers or 1, threads=threads)
    Runner(prepared, reporter, executor).run()
    store.unlock()
    return store, reporter


def copy_photos(root: Path, train: int, test: int) -> Path:
    """A folder data set at ``root``: the first ``train`` and ``test`` cats_dogs photos of each class
    (skips the test where ../shared/data is missing)."""
    if not (SHARED_DATA / "cats_dogs").is_dir():
        pytest.skip("needs ../shared/data/cats_dogs")
    for part, count in (("train", train), ("test", test)):
        for cls in ("cat", "dog"):
            (root / part / cls).mkdir(parents=True)
            for path in sorted((SHARED_DATA / "cats_dogs" / part / cls).iterdir())[:count]:
                shutil.copy(path, root / part / cls / path.name)
    return root


@pytest.fixture(scope="session")
def real_photos(tmp_path_factory):
    """A small folder data set of real cats_dogs photos: 10 train and 4 test photos per class."""
    return copy_photos(tmp_path_factory.mktemp("real_photos") / "cd", 10, 4)


def photo_suite(photos, backend: str, backbone: str, image_size: int, strategies: str) -> str:
    return f"""
[suite]
name = "photos"
seeds = [0]
[dataset]
source = "folder"
path = "{photos}"
val_fraction = 0.2
sizes = [10]
[run]
backends = ["{backend}"]
backbones = ["{backbone}"]
image_size = {image_size}
batch_size = 8
{strategies}
"""
