"""zoo_bench.testing: our own plugins keep the contract, and a broken plugin fails it on every fault."""
from __future__ import annotations

import pytest

from zoo_bench.testing import ContractError, check_plugin


def test_the_torch_and_keras_plugins_keep_the_contract_with_torchvision_style_and_timm_backbones():
    import zoo_bench_torch

    names = ["tiny_cnn", "efficientnet_lite0"]
    try:
        import timm  # noqa: F401
        names += ["timm:test_vit.r160_in1k", "timm:test_convnext.r160_in1k", "timm:test_efficientnet.r160_in1k"]
    except ImportError:
        pass
    report = check_plugin(zoo_bench_torch, backbones=names, image_size=64)
    assert not report.failures
    # a name is checked on every backend that has it: EfficientNet-Lite0 on torch and on Keras
    assert set(report.checked) == {f"backbone {n!r} (backend torch)" for n in names} | {
        "backbone 'efficientnet_lite0' (backend keras)"}


def test_the_strategies_plugin_keeps_the_contract():
    import zoo_bench_strategies

    report = check_plugin(zoo_bench_strategies)
    assert {c.split("'")[1] for c in report.checked} == {"svm", "logreg", "knn", "last_layer", "frozen_pixels",
                                                         "last_n", "fpt", "full", "scratch"}


def test_a_third_party_style_backbone_plugin_keeps_the_contract():
    import tiny_backbone

    assert check_plugin(tiny_backbone).checked == ["backbone 'mini_cnn' (backend torch)"]


def test_a_broken_plugin_fails_on_every_fault_it_has():
    from fixtures import broken_contract_plugin

    with pytest.raises(ContractError) as err:
        check_plugin(broken_contract_plugin)
    text = str(err.value)
    for fault in ("backbone 'sloppy_net' (backend sloppy): features dtype is float64, expected float32",
                  "features shape is (12, 5), expected (12, 4)",
                  "the same seed built a different base",
                  "a fit with last_blocks=0 changed the base",
                  "predict gave float64 (12,), expected int64",
                  "zoo_bench_register_strategies()[1]: strategy 'bad_default': the default of epochs breaks its own "
                  "rule: 0 is out of range (allowed: >= 1 and <= 10); ignored",
                  "test_pred is int64 of shape (5,), expected integer classes of shape (6,)"):
        assert fault in text, text
    report = check_plugin(broken_contract_plugin, raise_on_failure=False)
    assert len(report.failures) >= 5
