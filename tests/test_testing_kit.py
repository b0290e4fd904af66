"""zoo_bench.testing: our own plugins keep the contract, and a broken plugin fails it on every fault."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

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
                                                         "last_n", "fpt", "full", "scratch", "bitfit", "norm_tune",
                                                         "lora", "vpt"}
    assert set(report.ran_on.values()) == {"torch"} and len(report.ran_on) == 13 and report.skipped == []


def test_the_strategies_keep_the_contract_on_the_numpy_reference_backend_too():
    import zoo_bench_strategies

    report = check_plugin(zoo_bench_strategies, strategy_backend="numpy")
    assert len(report.checked) == 13 and len(report.ran_on) == 9 and set(report.ran_on.values()) == {"numpy"}
    assert report.skipped == [f"strategy {name!r}: not run: it requires adapt(), which the numpy backend lacks; "
                              "install torch to run it" for name in ("bitfit", "norm_tune", "lora", "vpt")]


def test_without_torch_strategies_are_checked_on_the_numpy_backend(tmp_path):
    """torch made unimportable: check_plugin still runs every strategy, on the numpy reference backend, and a
    strategy that needs what that backend lacks fails in one line saying torch would check it."""
    plugin = tmp_path / "needs_logits.py"
    plugin.write_text(textwrap.dedent('''
        import numpy as np
        from zoo_bench import HeadSpec, Outcome, Strategy, hookimpl

        class NeedsLogits(Strategy):
            name = "needs_logits"
            def run(self, ctx, params):
                base = ctx.backend.build_base(ctx.spec, True, ctx.image_size)
                head = ctx.backend.new_head(ctx.backend.feature_dim(base), ctx.num_classes, HeadSpec((), 0.0))
                model = ctx.backend.attach(base, head)
                scores = ctx.backend.logits(model, ctx.test.images, ctx.batch_size)
                return Outcome(test_pred=scores.argmax(1), val_pred=np.zeros(len(ctx.val.labels), np.int64))

        @hookimpl
        def zoo_bench_register_strategies():
            return [NeedsLogits]
    '''))
    script = textwrap.dedent('''
        import sys

        class NoTorch:  # as if torch were not installed: importing it raises ModuleNotFoundError
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "torchvision", "timm"):
                    raise ModuleNotFoundError(f"No module named {name!r}")

        sys.meta_path.insert(0, NoTorch())
        import needs_logits, zoo_bench_strategies
        from zoo_bench.testing import check_plugin
        report = check_plugin(zoo_bench_strategies)
        print(len(report.ran_on), len(report.skipped), sorted(set(report.ran_on.values())), report.failures)
        print(check_plugin(needs_logits, raise_on_failure=False).failures)
        print("torch" in sys.modules)
    ''')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    first, second, torch_loaded = done.stdout.strip().splitlines()[-3:]
    assert first == "9 4 ['numpy'] []"
    assert "run() with its defaults on the numpy backend raised ZooBenchError: backend 'numpy' does not implement " \
           "logits()" in second and "checked with torch (pip install 'zoo-bench[torch]')" in second, second
    assert torch_loaded == "False"


def test_a_strategy_for_vision_transformers_only_is_checked_on_a_small_vision_transformer(tmp_path, monkeypatch):
    """``backbone_families = ("vit",)``: check_plugin runs it on timm's test_vit (fixed random weights, 32 px),
    never on the contract CNN."""
    pytest.importorskip("timm")
    plugin = tmp_path / "vit_only.py"
    plugin.write_text(textwrap.dedent('''
        import numpy as np
        from zoo_bench import HeadSpec, Outcome, Strategy, hookimpl

        class VitOnly(Strategy):
            name = "vit_only"
            backbone_families = ("vit",)
            def run(self, ctx, params):
                assert ctx.spec.family == "vit", ctx.spec.name
                base = ctx.new_base(pretrained=True)
                assert type(base.model).__name__ == "VisionTransformer", type(base.model)
                model = ctx.attach(base, ctx.new_head(ctx.feature_dim(base), (), 0.0))
                pred = ctx.backend.predict(model, ctx.test.images, ctx.batch_size)
                return Outcome(test_pred=pred, val_pred=ctx.backend.predict(model, ctx.val.images, ctx.batch_size))

        @hookimpl
        def zoo_bench_register_strategies():
            return [VitOnly]
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    import vit_only

    report = check_plugin(vit_only)
    assert report.ran_on == {"strategy 'vit_only'": "torch"} and report.skipped == []


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
