"""Head pooling avg | max | flatten in both backends: features, parameter counts, suite keys."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import TINY_SUITE, run_inprocess, write_suite
from zoo_bench import HeadSpec
from zoo_bench.plan.grid import expand
from zoo_bench.plan.suite import parse_suite


def backend_of(name: str, registry):
    if name == "keras":
        pytest.importorskip("keras")
    return registry.backends[name](device="cpu", precision="fp32")


@pytest.mark.parametrize("backend_name", ["torch", "keras"])
def test_head_parameter_counts_match_the_articles(backend_name, registry):
    """Seed 003: VGG16, global average pooling, Dense(64), softmax over 3 classes: 33,027 trainable.
    Seed 004: VGG16 at 150 px, Flatten (4x4x512), Dense(256), 2 classes: 2,097,922 (its sigmoid
    output has one unit, 2,097,665)."""
    backend = backend_of(backend_name, registry)
    spec = registry.backbone(backend_name, "vgg16")
    base = backend.build_base(spec, pretrained=False, image_size=224)
    model = backend.attach(base, backend.new_head(backend.feature_dim(base), 3, HeadSpec((64,), 0.0)))
    backend.set_trainable(model, 0, bn_inference=True)
    assert backend.count_params(model)[0] == 33_027
    base = backend.build_base(spec, pretrained=False, image_size=150)
    dim = backend.feature_dim(base, pooling="flatten")
    assert dim == 4 * 4 * 512
    model = backend.attach(base, backend.new_head(dim, 2, HeadSpec((256,), 0.5)), pooling="flatten")
    backend.set_trainable(model, 0, bn_inference=True)
    trainable, total = backend.count_params(model)
    assert trainable == 2_097_922 and total == 14_714_688 + 2_097_922


@pytest.mark.parametrize("backend_name", ["torch", "keras"])
def test_max_and_flatten_features_are_the_feature_map_pooled(backend_name, registry):
    backend = backend_of(backend_name, registry)
    backend.seed(0)
    spec = registry.backbone(backend_name, "efficientnet_lite0")
    base = backend.build_base(spec, pretrained=False, image_size=64)
    x = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    avg = backend.features(base, x, 2)
    mx = backend.features(base, x, 2, pooling="max")
    flat = backend.features(base, x, 2, pooling="flatten")
    assert avg.shape == mx.shape == (3, 1280) and flat.shape == (3, 2 * 2 * 1280)
    assert backend.feature_dim(base, pooling="flatten") == 5120
    cells = flat.reshape(3, 1280, 4) if backend_name == "torch" else flat.reshape(3, 4, 1280).transpose(0, 2, 1)
    assert np.allclose(cells.mean(axis=2), avg, atol=1e-4) and np.allclose(cells.max(axis=2), mx, atol=1e-5)
    model = backend.attach(base, backend.new_head(5120, 2, HeadSpec((), 0.0)), pooling="flatten")
    assert backend.logits(model, x, 2).shape == (3, 2)


def test_pooling_as_a_suite_key(tmp_path, registry, tiny_weights):
    body = TINY_SUITE + ('[strategies.svm]\npooling = ["avg", "max"]\n[strategies.last_layer]\nepochs = 2\n'
                         'pooling = "flatten"\n[strategies.full]\nepochs = 1\npooling = "max"\n')
    suite_path = write_suite(tmp_path, body)
    ids = [t.id for t in expand(parse_suite(suite_path, registry))]
    assert ids[0] == "torch/mini_cnn/svm[C=1.0,preprocess=none]/n=8/seed=0"  # avg, the default, stays out of ids
    assert "svm[C=1.0,pooling=max,preprocess=none]" in ids[1] and "pooling=flatten" in ids[2] and "pooling=max" in ids[3]
    store, _ = run_inprocess(suite_path, registry, tmp_path, tmp_path / "cache")
    rows = store.rows()
    assert [r["status"] for r in rows] == ["ok"] * 4, [r["error"] for r in rows]
    svm_avg, svm_max, head, full = rows
    assert svm_max["feature_time_s"] > 0  # max-pooled features are not the cached averages
    assert svm_avg["trainable_params"] == svm_max["trainable_params"]
    assert head["trainable_params"] > svm_avg["trainable_params"]  # flatten widens the head's input


def test_transformers_refuse_max_and_flatten(tmp_path, registry):
    pytest.importorskip("timm")
    body = TINY_SUITE.replace('backbones = ["mini_cnn"]', 'backbones = ["timm:test_vit.r160_in1k"]').replace(
        "image_size = 32\nval", "image_size = 32\nval") + '[strategies.scratch]\nepochs = 1\npooling = "max"\n'
    body = body.replace("batch_size = 8", "batch_size = 8\nimage_size = 160")
    store, _ = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, tmp_path / "cache")
    [row] = store.rows()
    assert row["status"] == "error"
    assert "pooling 'max' needs a backbone whose features are a feature map" in row["error"]
    assert "\n" not in row["error"]
