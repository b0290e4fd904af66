"""Parameter-efficient fine-tuning in torch (zoo_bench.adapters, zoo_bench_torch.adapters): exactly what the
adapter names trains, the counts are the hand counts, and LoRA merges into the same function."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from zoo_bench import Adapter, HeadSpec, OptimizerSpec, ZooBenchError
from zoo_bench.plugins import load_plugins
from zoo_bench.testing import CONTRACT_SPEC
from zoo_bench_torch.adapters import LoRA, merged
from zoo_bench_torch.backend import TorchBackend

# The contract CNN: per block a 3 x 3 conv without bias, BatchNorm, a pointwise conv with bias; channels
# 3 -> 8 -> 16 -> 16; a linear head 16 -> 2.
PLAIN = (216 + 16 + 72) + (1152 + 32 + 272) + (2304 + 32 + 272) + 34  # 4402
HEAD = 34
BIASES = (8 + 16 + 16) * 2  # BatchNorm shifts and the pointwise convs' biases
NORMS = (8 + 16 + 16) * 2  # BatchNorm scales and shifts


def adapted(kind: str, **options):
    backend = TorchBackend(device="cpu", precision="fp32")
    backend.seed(0)
    base = backend.build_base(CONTRACT_SPEC, True, 32)
    model = backend.attach(base, backend.new_head(backend.feature_dim(base), 2, HeadSpec((), 0.0)))
    backend.adapt(model, Adapter(kind, **options))
    return backend, model


def images(n: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 2


def changed_by_training(backend, model, epochs: int = 2) -> set[str]:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = images()
    backend.fit(model, x, y, inputs="images", epochs=epochs, optimizer=OptimizerSpec("adam", 0.05), batch_size=8)
    return {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}


@pytest.mark.parametrize("kind, trainable", [("bias", BIASES + HEAD), ("norm", NORMS + HEAD),
                                             ("lora", 2 * (8 + 8 + 16 + 16 + 16 + 16) + HEAD)])
def test_trainable_counts_are_the_hand_counts(kind, trainable):
    backend, model = adapted(kind, rank=2) if kind == "lora" else adapted(kind)
    extra = 2 * (8 + 8 + 16 + 16 + 16 + 16) if kind == "lora" else 0
    assert backend.count_params(model) == (trainable, PLAIN + extra)


def test_bitfit_trains_only_biases_and_the_head_and_batchnorm_statistics_stay():
    backend, model = adapted("bias")
    changed = changed_by_training(backend, model)
    assert changed == {"base.blocks.0.1.bias", "base.blocks.0.3.bias", "base.blocks.1.1.bias", "base.blocks.1.3.bias",
                       "base.blocks.2.1.bias", "base.blocks.2.3.bias", "head.0.weight", "head.0.bias"}


@pytest.mark.parametrize("update_stats", [False, True])
def test_norm_tune_trains_only_the_norm_layers_and_their_statistics_only_when_asked(update_stats):
    backend, model = adapted("norm", update_stats=update_stats)
    changed = changed_by_training(backend, model)
    norms = {f"base.blocks.{b}.1.{w}" for b in range(3) for w in ("weight", "bias")}
    stats = {f"base.blocks.{b}.1.{s}" for b in range(3) for s in ("running_mean", "running_var", "num_batches_tracked")}
    assert changed == norms | {"head.0.weight", "head.0.bias"} | (stats if update_stats else set())


def test_lora_trains_only_its_low_rank_updates_and_the_head():
    backend, model = adapted("lora", rank=2)
    assert sum(isinstance(m, LoRA) for m in model.modules()) == 3  # the three pointwise convolutions
    changed = changed_by_training(backend, model)
    updates = {f"base.blocks.{b}.3.{part}.weight" for b in range(3) for part in ("down", "up")}
    assert changed == updates | {"head.0.weight", "head.0.bias"}


def test_a_merged_lora_model_computes_what_the_unmerged_one_does_and_loads_into_the_plain_model():
    backend, model = adapted("lora", rank=3, alpha=6.0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRA):
                m.up.weight.normal_(0, 0.5)  # as after training: B is no longer zero
    model.eval()
    x = torch.rand(4, 3, 32, 32) * 255
    plain = merged(model)
    assert not any(isinstance(m, LoRA) for m in plain.modules())
    without = backend.attach(backend.build_base(CONTRACT_SPEC, True, 32), backend.new_head(16, 2, HeadSpec((), 0.0)))
    without.load_state_dict({k: v for k, v in plain.state_dict().items()})
    without.eval()
    assert (model(x) - without(x)).abs().max() < 1e-5  # the merged weights in the plain network
    assert not torch.equal(plain.base.blocks[0][3].weight, model.base.blocks[0][3].layer.weight)  # the update is in it
    rebuilt = backend.attach(backend.build_base(CONTRACT_SPEC, False, 32), backend.new_head(16, 2, HeadSpec((), 0.0)))
    assert set(rebuilt.state_dict()) == set(plain.state_dict())


def test_a_lora_target_that_matches_nothing_names_the_layers_there_are():
    with pytest.raises(ZooBenchError, match=r"lora target '\*qkv' matches no linear layer or pointwise convolution "
                                            r"\(there are: blocks.0.3, blocks.1.3, blocks.2.3\)"):
        adapted("lora", targets=("*qkv",))


def test_lora_on_a_timm_vit_adapts_attention_qkv_and_projections():
    backend = TorchBackend(device="cpu")
    spec = load_plugins().backbone("torch", "timm:test_vit")
    base = backend.build_base(spec, pretrained=False, image_size=spec.image_size)
    model = backend.attach(base, backend.new_head(backend.feature_dim(base), 2, HeadSpec()))
    backend.adapt(model, Adapter("lora", rank=4))
    wrapped = [name for name, m in model.base.named_modules() if isinstance(m, LoRA)]
    assert wrapped and all(name.endswith(("attn.qkv", "attn.proj")) for name in wrapped)
    assert len(wrapped) == 2 * sum(1 for name, _ in model.base.named_modules() if name.endswith("attn"))
    model(torch.rand(2, 3, spec.image_size, spec.image_size) * 255).sum().backward()
    assert {n for n, p in model.named_parameters() if p.grad is not None} == {
        n for n, p in model.named_parameters() if p.requires_grad}


def test_our_lora_computes_what_peft_does():
    peft = pytest.importorskip("peft")
    layer = torch.nn.Linear(12, 6)
    ours = LoRA(layer, rank=4, alpha=8.0, dropout=0.0)
    torch.nn.init.normal_(ours.up.weight)
    theirs = peft.inject_adapter_in_model(
        peft.LoraConfig(r=4, lora_alpha=8, target_modules=["layer"], lora_dropout=0.0),
        torch.nn.Sequential(__import__("collections").OrderedDict(layer=torch.nn.Linear(12, 6))))
    theirs.layer.base_layer.load_state_dict(layer.state_dict())
    theirs.layer.lora_A["default"].weight.data.copy_(ours.down.weight)
    theirs.layer.lora_B["default"].weight.data.copy_(ours.up.weight)
    x = torch.randn(5, 12)
    assert torch.allclose(ours(x), theirs(x), atol=1e-6)


def vit_model(seed: int = 0):
    """timm's test_vit (6 blocks of width 64, patch 16) with random weights at 32 px, and a linear head."""
    pytest.importorskip("timm")
    backend = TorchBackend(device="cpu", precision="fp32")
    backend.seed(seed)
    spec = load_plugins().backbone("torch", "timm:test_vit")
    base = backend.build_base(spec, pretrained=False, image_size=32)
    return backend, spec, backend.attach(base, backend.new_head(backend.feature_dim(base), 2, HeadSpec((), 0.0)))


@pytest.mark.parametrize("deep, layers", [(True, 6), (False, 1)])
def test_vpt_trains_only_its_prompts_and_the_head_and_counts_them_by_hand(deep, layers):
    from zoo_bench_torch.adapters import Prompts

    backend, _, model = vit_model()
    _, plain = backend.count_params(model)
    backend.adapt(model, Adapter("prompt", prompts=4, deep=deep))
    assert isinstance(model.base.prompts, Prompts) and model.base.prompts.tokens.shape == (layers, 4, 64)
    assert backend.count_params(model) == (layers * 4 * 64 + 64 * 2 + 2, plain + layers * 4 * 64)
    assert changed_by_training(backend, model) == {"base.prompts.tokens", "head.0.weight", "head.0.bias"}


def test_prompt_tuning_runs_timms_own_forward_and_keeps_the_prompts_out_of_the_pooled_features():
    """With no prompts, Prompts.features is timm's forward_features to the bit; with prompts, the class token
    sees them through attention and the pooled features keep their width."""
    from zoo_bench_torch.adapters import Prompts

    _, _, model = vit_model()
    vit = model.base.model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(Prompts(torch.zeros(6, 0, 64)).features(vit, x), vit.forward_features(x))
        prompted = Prompts.initial(vit, 3, deep=True).features(vit, x)
    assert prompted.shape == vit.forward_features(x).shape  # (2, 1 + 4 patches, 64): the prompts dropped
    assert not torch.allclose(prompted[:, 0], vit.forward_features(x)[:, 0])


def test_prompts_are_saved_beside_the_weights_and_the_rebuilt_model_predicts_the_same(tmp_path):
    backend, spec, model = vit_model()
    backend.adapt(model, Adapter("prompt", prompts=2, deep=False))
    with torch.no_grad():
        model.base.prompts.tokens.normal_()
    x = images(6)[0]
    assert backend.save_weights(model, tmp_path) == ["model.safetensors", "prompts.safetensors"]
    _, _, rebuilt = vit_model(seed=1)
    assert "base.prompts.tokens" not in rebuilt.state_dict()
    backend.load_weights(rebuilt, tmp_path)
    assert rebuilt.base.prompts.tokens.shape == (1, 2, 64)
    assert np.abs(backend.logits(rebuilt, x, 3) - backend.logits(model, x, 3)).max() < 1e-5
    assert set(model.state_dict()) == set(rebuilt.state_dict())  # the weights file is the plain network's


def test_prompts_on_a_cnn_are_refused_in_one_line():
    with pytest.raises(ZooBenchError, match=r"^prompts need a timm vision transformer \(timm's VisionTransformer: "
                                            r"timm:vit_\*, timm:deit_\*\); this backbone is not a timm model$"):
        adapted("prompt")
    backend = TorchBackend(device="cpu")
    spec = load_plugins().backbone("torch", "timm:test_convnext")
    base = backend.build_base(spec, pretrained=False, image_size=32)
    model = backend.attach(base, backend.new_head(backend.feature_dim(base), 2, HeadSpec()))
    with pytest.raises(ZooBenchError, match=r"; this backbone is a timm ConvNeXt$"):
        backend.adapt(model, Adapter("prompt"))
