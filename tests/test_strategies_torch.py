"""Every strategy on the torch backend with a tiny CNN, plus the backend's freezing rules."""
import copy

import numpy as np
import pytest

from conftest import TINY_SUITE, run_inprocess, write_suite
from zoo_bench.backend import OptimizerSpec

STRATEGIES = {
    "svm": "",
    "last_layer": "epochs = 3",
    "last_n": "n = 1\nhead_epochs = 2\nfinetune_epochs = 2",
    "fpt": "head_epochs = 2\nfinetune_epochs = 2",
    "full": "epochs = 2",
    "scratch": "epochs = 2",
}


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_strategy_runs_end_to_end(strategy, tmp_path, registry, tiny_weights):
    body = TINY_SUITE + f"[strategies.{strategy}]\n{STRATEGIES[strategy]}\n"
    # a cache of its own: features cached on disk by another test would make feature_time_s 0
    store, reporter = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, tmp_path / "cache")
    [row] = store.rows()
    assert row["status"] == "ok", row["error"]
    assert 0.0 <= row["test_accuracy"] <= 1.0 and row["test_images"] == 16
    assert row["train_images"] == 12 and row["val_images"] == 4
    assert row["total_params"] >= row["trainable_params"] > 0
    if strategy == "svm":
        assert row["epochs"] == 0 and row["epoch_time_s"] is None and row["train_time_s"] > 0
    else:
        assert row["epochs"] == len(reporter.epochs) and row["epoch_time_s"] > 0
    if strategy in ("svm", "last_layer"):
        assert row["feature_time_s"] > 0 and row["trainable_params"] < row["total_params"]
    if strategy in ("full", "scratch", "fpt"):
        assert row["trainable_params"] == row["total_params"]


def test_frozen_strategies_reuse_cached_features(tmp_path, registry, tiny_weights):
    body = TINY_SUITE + "[strategies.svm]\n[strategies.last_layer]\nepochs = 2\n"
    store, _ = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, tmp_path / "cache")
    svm, head = store.rows()
    assert svm["feature_time_s"] > 0
    assert head["feature_time_s"] == 0.0  # every image's features were already computed for svm
    # the next run of the same images (a resumed or repeated run, another worker) reads them from disk
    again, _ = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, tmp_path / "cache", run_id="r2")
    svm2, head2 = again.rows()
    assert svm2["feature_time_s"] == 0.0 and svm2["test_accuracy"] == svm["test_accuracy"]
    assert head2["test_accuracy"] == head["test_accuracy"] and head2["val_loss"] == head["val_loss"]


def test_damaged_feature_files_are_recomputed(tmp_path, registry, tiny_weights):
    body = TINY_SUITE + "[strategies.svm]\n"
    store, _ = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, tmp_path / "cache")
    files = sorted((tmp_path / "cache" / "features").rglob("*.npz"))
    assert len(files) == 32  # 12 train, 4 validation and 16 test images of the tiny suite
    for f in files[:3]:
        f.write_bytes(f.read_bytes()[:-7])  # truncated
    again, _ = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, tmp_path / "cache", run_id="r2")
    [first], [second] = store.rows(), again.rows()
    assert second["feature_time_s"] > 0 and second["test_accuracy"] == first["test_accuracy"]


def _tiny_model(registry, last_blocks, bn_inference):
    from zoo_bench_torch.backend import TorchBackend

    backend = TorchBackend(device="cpu")
    spec = registry.backbones["torch"]["mini_cnn"]
    base = backend.build_base(spec, pretrained=True, image_size=32)
    model = backend.attach(base, backend.new_head(32, 2, __import__("zoo_bench").HeadSpec((8,), 0.0)))
    backend.set_trainable(model, last_blocks, bn_inference)
    return backend, model


def _fit(backend, model):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (16, 32, 32, 3), dtype=np.uint8)
    y = np.array([0, 1] * 8)
    before = copy.deepcopy(model.state_dict())
    backend.fit(model, x, y, epochs=1, optimizer=OptimizerSpec("sgd", 0.1), batch_size=8)
    return before, model.state_dict()


def test_last_n_trains_only_the_last_blocks_and_keeps_bn_statistics(registry, tiny_weights):
    backend, model = _tiny_model(registry, last_blocks=1, bn_inference=True)
    assert backend.count_params(model)[0] < backend.count_params(model)[1]
    before, after = _fit(backend, model)
    assert all(before[k].equal(after[k]) for k in before if k.startswith(("base.blocks.0", "base.blocks.1")))
    assert not before["base.blocks.2.0.weight"].equal(after["base.blocks.2.0.weight"])
    assert all(before[k].equal(after[k]) for k in before if "running_mean" in k)


def test_unfrozen_bn_in_inference_mode_keeps_statistics(registry, tiny_weights):
    backend, model = _tiny_model(registry, last_blocks=None, bn_inference=True)
    before, after = _fit(backend, model)
    assert not before["base.blocks.0.0.weight"].equal(after["base.blocks.0.0.weight"])
    assert all(before[k].equal(after[k]) for k in before if "running_mean" in k)


def test_training_bn_updates_statistics(registry, tiny_weights):
    backend, model = _tiny_model(registry, last_blocks=None, bn_inference=False)
    before, after = _fit(backend, model)
    assert not before["base.blocks.0.1.running_mean"].equal(after["base.blocks.0.1.running_mean"])


def test_recalibration_replaces_lagging_bn_statistics(registry, tiny_weights):
    backend, model = _tiny_model(registry, last_blocks=None, bn_inference=False)
    bn = model.base.blocks[0][1]
    x = np.random.default_rng(1).integers(0, 255, (16, 32, 32, 3), dtype=np.uint8)
    bn.running_mean.fill_(100.0)
    backend.recalibrate_batchnorm(model, x, batch_size=8)
    assert float(bn.running_mean.abs().max()) < 100.0 and bn.momentum == 0.1 and not bn.training
