"""A third implementation of the Backend contract (numpy only, required verbs only) runs the feature
strategies unchanged and passes check_plugin: the contract is the whole contract."""
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_inprocess, write_suite
from zoo_bench import HeadSpec, OptimizerSpec
from zoo_bench.backend import OPTIONAL_VERBS
from zoo_bench.plugins import load_plugins
from zoo_bench.testing import check_plugin

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "numpy_backend"))
import zoo_bench_numpy_backend as numpy_plugin  # noqa: E402

SUITE = """
[suite]
name = "numpy"
seeds = [0, 1]
[dataset]
source = "synthetic"
classes = 3
train_per_class = 24
test_per_class = 12
image_size = 32
sizes = [16]
[run]
backends = ["numpy"]
backbones = ["grid_net"]
batch_size = 16
[strategies.svm]
[strategies.logreg]
[strategies.knn]
k = 3
[strategies.last_layer]
epochs = 30
lr = 0.01
hidden = []
pooling = ["avg", "flatten"]
"""


def test_it_has_no_optional_verb():
    backend = numpy_plugin.NumpyBackend()
    assert [v for v in OPTIONAL_VERBS if backend.supports(v)] == []


def test_the_head_learns_and_its_gradients_are_right():
    backend = numpy_plugin.NumpyBackend()
    backend.seed(0)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    head = backend.new_head(5, 2, HeadSpec((8,), 0.0))
    loss, grads, _ = backend._backward(head, x, y)
    w = head["layers"][0][0]
    w[0, 0] += 1e-3
    up = backend._backward(head, x, y)[0]
    w[0, 0] -= 2e-3
    down = backend._backward(head, x, y)[0]
    w[0, 0] += 1e-3
    assert grads[0][0, 0] == pytest.approx((up - down) / 2e-3, rel=1e-2, abs=1e-4)
    stats = backend.fit(head, x, y, inputs="features", epochs=40, optimizer=OptimizerSpec("adam", 0.05), batch_size=16)
    assert stats[-1].train_loss < stats[0].train_loss / 2 and (backend.predict(head, x, 16) == y).mean() > 0.9


def test_check_plugin_passes_on_it():
    report = check_plugin(numpy_plugin, raise_on_failure=False)
    assert report.failures == [] and "backbone 'grid_net' (backend numpy)" in report.checked


def test_the_feature_strategies_run_on_it_unchanged(tmp_path):
    registry = load_plugins(extra=[numpy_plugin])
    store, _ = run_inprocess(write_suite(tmp_path, SUITE), registry, tmp_path, tmp_path / "cache")
    rows = store.rows()
    assert {r["strategy"] for r in rows} == {"svm", "logreg", "knn", "last_layer"} and len(rows) == 10
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows if r["status"] != "ok"]
    assert all(r["device_name"] == "numpy" for r in rows)
    assert all(r["test_loss"] is None for r in rows if r["strategy"] == "last_layer")  # no logits: no loss
    accuracy = {(r["strategy"], r["seed"], r["params"].get("pooling", "avg")): r["test_accuracy"] for r in rows}
    assert min(accuracy.values()) > 0.6, accuracy  # 3 classes: chance is 1/3


def test_a_strategy_that_requires_a_verb_the_backend_lacks_is_not_run_with_a_line_saying_why(tmp_path):
    from zoo_bench.plan.suite import parse_suite
    from zoo_bench.run.prepare import RunOptions, prepare_run

    registry = load_plugins(extra=[numpy_plugin])
    suite = parse_suite(write_suite(tmp_path, SUITE.replace("[strategies.svm]", "[strategies.svm]\n[strategies.lora]")),
                        registry)
    prepared = prepare_run(suite, registry, RunOptions(data_root=tmp_path, cache_dir=tmp_path / "cache"),
                           tmp_path / "run")
    prepared.store.unlock()
    assert not any(t.strategy == "lora" for t in prepared.trials)
    assert [why for trial_id, why in prepared.not_applicable if "/lora[" in trial_id] == [
        "it requires adapt(), which backend 'numpy' lacks"] * 2
