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
