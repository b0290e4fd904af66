"""timm backbones: naming, timm's preprocessing and pooled features, block groups, offline weights, every strategy."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

# CI installs timm (.ci/run), so there a missing timm fails these tests instead of skipping them.
timm = __import__("timm") if os.environ.get("CI") else pytest.importorskip("timm")
import torch  # noqa: E402

from conftest import SHARED_DATA, write_suite  # noqa: E402
from zoo_bench import WeightsUnavailableError  # noqa: E402
from zoo_bench.images import ImageCache  # noqa: E402
from zoo_bench.plugins import load_plugins  # noqa: E402
from zoo_bench.plan.suite import SuiteError, parse_suite  # noqa: E402
from zoo_bench_torch import TorchBackend  # noqa: E402
from zoo_bench_torch.timm_weights import save_random_weights  # noqa: E402

VIT, CNN = "test_vit.r160_in1k", "test_convnext.r160_in1k"
FAMILIES = ["test_vit", "test_convnext", "test_efficientnet", "test_resnet", "test_nfnet", "test_byobnet"]
needs_photos = pytest.mark.skipif(not (SHARED_DATA / "cats_dogs").is_dir(), reason="needs ../shared/data/cats_dogs")


def photos(n: int = 4) -> list[str]:
    return [str(p) for kind in ("cat", "dog") for p in sorted((SHARED_DATA / "cats_dogs" / "test" / kind).iterdir())[:n]]


def test_names_resolve_to_timm_configs_and_refuse_what_does_not_exist():
    registry = load_plugins()
    spec = registry.backbone("torch", f"timm:{VIT}")
    cfg = timm.get_pretrained_cfg(VIT)
    assert (spec.image_size, spec.mean, spec.std) == (cfg.input_size[-1], tuple(cfg.mean), tuple(cfg.std))
    assert (spec.crop_pct, spec.interpolation, spec.weights) == (cfg.crop_pct, cfg.interpolation, f"timm:{VIT}")
    # a bare architecture is timm's default tag, recorded in full
    assert registry.backbone("torch", "timm:convnext_tiny").weights == f"timm:{timm.get_pretrained_cfg('convnext_tiny').architecture}.{timm.get_pretrained_cfg('convnext_tiny').tag}"
    assert registry.backbone("torch", "timm:test_vit_relpos.untrained").weights == "none"
    for bad in ("timm:no_such_net", "timm:test_vit.no_such_tag", "timm:"):
        assert registry.backbone("torch", bad) is None
    assert registry.backbone("keras", f"timm:{VIT}") is None


@pytest.mark.parametrize("backbone, expected", [
    ("timm:no_such_net", "unknown backbone 'timm:no_such_net': timm has no model 'no_such_net'"),
    ("timm/test_vit", "no '/' in a backbone name"),
])
def test_validate_names_the_problem_in_one_line(tmp_path, backbone, expected):
    path = write_suite(tmp_path, f"""
        [suite]
        name = "t"
        [dataset]
        source = "synthetic"
        sizes = [4]
        [run]
        backends = ["torch"]
        backbones = ["{backbone}"]
        [strategies.svm]
        """)
    with pytest.raises(SuiteError) as err:
        parse_suite(path, load_plugins())
    assert expected in str(err.value)


def test_validate_refuses_timm_on_keras(tmp_path):
    path = write_suite(tmp_path, f"""
        [suite]
        name = "t"
        [dataset]
        source = "synthetic"
        sizes = [4]
        [run]
        backends = ["torch", "keras"]
        backbones = ["timm:{VIT}"]
        [strategies.svm]
        """)
    with pytest.raises(SuiteError) as err:
        parse_suite(path, load_plugins())
    assert f"run.backbones[0]: backbone 'timm:{VIT}' exists for backend 'torch' only, not 'keras'" in str(err.value)


@pytest.mark.parametrize("arch", FAMILIES)
def test_groups_cover_every_parameter_once_and_run_in_forward_order(arch):
    """timm's coarse groups are the last_n blocks: together they hold every parameter of the pooled
    feature exactly once, and running the model visits group 1's modules, then group 2's, and so on."""
    spec = load_plugins().backbone("torch", f"timm:{arch}")
    base = TorchBackend(device="cpu").build_base(spec, pretrained=False, image_size=spec.image_size).eval()
    groups = base.groups()
    ids = [id(p) for g in groups for p in g.parameters]
    assert len(ids) == len(set(ids)) == len(list(base.model.parameters())) and len(groups) >= 3
    order: list[int] = []
    handles = [m.register_forward_pre_hook(lambda *_, k=k: order.append(k))
               for k, g in enumerate(groups) for m in g.modules]
    with torch.no_grad():
        base(torch.zeros(1, 3, spec.image_size, spec.image_size))
    for h in handles:
        h.remove()
    assert order == sorted(order) and set(order) == {k for k, g in enumerate(groups) if g.modules}, order


@pytest.mark.parametrize("arch, last", [("test_vit", "blocks.5+norm"), ("test_convnext", "stages.3+head"),
                                         ("test_efficientnet", "blocks.4+conv_head+bn2"), ("test_resnet", "layer4")])
def test_the_last_block_is_the_last_stage_with_what_follows_it(arch, last):
    """A norm that timm's matcher leaves unmatched (ConvNeXt's head norm) joins the last stage, so
    last_n = 1 trains a stage, not one norm layer."""
    spec = load_plugins().backbone("torch", f"timm:{arch}")
    groups = TorchBackend(device="cpu").build_base(spec, pretrained=False, image_size=spec.image_size).groups()
    assert groups[-1].name == last and sum(p.numel() for p in groups[-1].parameters) > 4 * 64


@needs_photos
@pytest.mark.parametrize("mode", ["center", "squash", "border"])
def test_each_timm_crop_mode_gives_timms_own_eval_pixels(mode):
    from PIL import Image

    from zoo_bench.images import Resize

    mean = (0.48, 0.46, 0.41)
    policy = Resize(96, 0.875, "bicubic", mode, tuple(round(255 * v) for v in mean))
    transform = timm.data.create_transform(input_size=(3, 96, 96), crop_pct=0.875, crop_mode=mode,
                                           interpolation="bicubic", mean=mean, std=(1, 1, 1))
    files = photos(3)
    ours = torch.from_numpy(ImageCache(None).load([(f, 0) for f in files], policy).images).permute(0, 3, 1, 2) / 255
    theirs = torch.stack([transform(Image.open(f).convert("RGB")) for f in files]) + torch.tensor(mean).view(1, 3, 1, 1)
    assert ours.shape == theirs.shape and (ours - theirs).abs().max() < 1e-6  # the same 8-bit pixels


@pytest.mark.parametrize("arch", ["test_vit", "test_convnext"])
def test_last_n_trains_exactly_the_last_groups_and_the_head(arch):
    backend = TorchBackend(device="cpu")
    spec = load_plugins().backbone("torch", f"timm:{arch}")
    base = backend.build_base(spec, pretrained=False, image_size=spec.image_size)
    model = backend.attach(base, backend.new_head(backend.feature_dim(base), 2, __import__("zoo_bench").HeadSpec()))
    backend.set_trainable(model, 2, bn_inference=False)
    groups = base.groups()
    model(torch.rand(2, 3, spec.image_size, spec.image_size) * 255).sum().backward()
    for k, group in enumerate(groups):
        got = {p.grad is not None and bool(p.grad.abs().sum() > 0) for p in group.parameters if p.requires_grad}
        assert all(p.requires_grad == (k >= len(groups) - 2) for p in group.parameters), k
        assert all(p.grad is None for p in group.parameters if not p.requires_grad)
        assert k < len(groups) - 2 or True in got
    assert all(p.requires_grad for p in model.head.parameters())


def test_frozen_batchnorm_of_a_timm_cnn_stays_in_inference_mode():
    backend = TorchBackend(device="cpu")
    spec = load_plugins().backbone("torch", "timm:test_resnet")
    base = backend.build_base(spec, pretrained=False, image_size=64)
    model = backend.attach(base, backend.new_head(backend.feature_dim(base), 2, __import__("zoo_bench").HeadSpec()))
    backend.set_trainable(model, 1, bn_inference=False)
    model.train()
    bns = [m for g in base.groups() for m in g.modules if isinstance(m, torch.nn.BatchNorm2d)]
    first, last = base.groups()[0].modules, base.groups()[-1].modules
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in first) and bns
    assert all(not m.training for m in first if isinstance(m, torch.nn.BatchNorm2d))
    assert all(m.training for m in last if isinstance(m, torch.nn.BatchNorm2d))


@needs_photos
@pytest.mark.parametrize("arch", [VIT, CNN])
def test_saved_weights_load_as_pretrained_and_give_timms_own_features_on_real_photos(tmp_path, arch):
    """The offline path: a model's weights saved as safetensors under WEIGHTS_DIR/timm/ load back as
    the pretrained backbone; zoo-bench's pooled features are timm's forward_head(pre_logits=True) of
    that model, and zoo-bench's pixels are timm's own eval transform of the photos (crop_pct, bicubic)."""
    from PIL import Image

    path = save_random_weights(arch, str(tmp_path), seed=3)
    assert path == tmp_path / "timm" / f"{arch}.safetensors"
    torch.manual_seed(3)
    reference = timm.create_model(arch, pretrained=False).eval()
    spec = load_plugins().backbone("torch", f"timm:{arch}")
    assert spec.weights_present(str(tmp_path)) and not spec.weights_present(str(tmp_path / "elsewhere"))
    backend = TorchBackend(device="cpu", weights_dir=str(tmp_path))
    base = backend.build_base(spec, pretrained=True, image_size=spec.image_size)

    files = photos()
    ours = ImageCache(None).load([(f, 0) for f in files], spec.resize()).images
    transform = timm.data.create_transform(**timm.data.resolve_data_config(model=reference))
    theirs = torch.stack([transform(Image.open(f).convert("RGB")) for f in files])
    pixels = torch.from_numpy(ours).permute(0, 3, 1, 2).float() / 255
    unnormalised = theirs * torch.tensor(spec.std).view(1, 3, 1, 1) + torch.tensor(spec.mean).view(1, 3, 1, 1)
    assert (pixels - unnormalised).abs().max() < 1e-6  # the same 8-bit pixels as timm's transform

    features = backend.features(base, ours, batch_size=4)
    normalised = (pixels - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference.forward_head(reference.forward_features(normalised), pre_logits=True)
        logits = reference(normalised)
    assert features.shape == (len(files), reference.head_hidden_size) and features.dtype == np.float32
    torch.testing.assert_close(torch.from_numpy(features), expected, rtol=1e-5, atol=1e-5)
    # the classifier is dropped, not changed: the saved classifier on our features gives timm's logits
    torch.testing.assert_close(reference.get_classifier()(torch.from_numpy(features)), logits, rtol=1e-5, atol=1e-5)


def test_missing_weights_offline_is_one_line_naming_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    spec = load_plugins().backbone("torch", f"timm:{VIT}")
    with pytest.raises(WeightsUnavailableError) as err:
        TorchBackend(device="cpu", weights_dir=str(tmp_path / "w")).build_base(spec, True, spec.image_size)
    text = str(err.value)
    assert "\n" not in text and f"weights file {VIT}.safetensors missing" in text
    assert f"put it at {tmp_path / 'w' / 'timm' / (VIT + '.safetensors')}" in text
    with pytest.raises(WeightsUnavailableError) as err:  # no weights in timm at all
        TorchBackend(device="cpu").build_base(load_plugins().backbone("torch", "timm:test_vit_relpos.untrained"),
                                              True, 160)
    assert "has no pretrained weights in timm" in str(err.value)


def test_weights_that_do_not_fit_the_model_are_refused_in_one_line(tmp_path):
    save_random_weights(CNN, str(tmp_path))
    (tmp_path / "timm" / f"{CNN}.safetensors").rename(tmp_path / "timm" / f"{VIT}.safetensors")
    spec = load_plugins().backbone("torch", f"timm:{VIT}")
    with pytest.raises(WeightsUnavailableError) as err:
        TorchBackend(device="cpu", weights_dir=str(tmp_path)).build_base(spec, True, spec.image_size)
    assert f"timm:{VIT}: the weights in {tmp_path / 'timm' / (VIT + '.safetensors')} do not load" in str(err.value)
    assert "\n" not in str(err.value)


@needs_photos
@pytest.mark.slow
def test_every_strategy_runs_on_a_timm_cnn_and_a_timm_vit_on_real_photos(tmp_path):
    """suites/timm_tiny.toml as a user runs it offline: stand-in weights first, then `zoo-bench run`."""
    import shutil
    import subprocess
    import sys

    from conftest import REPO

    weights = tmp_path / "weights"
    subprocess.run([sys.executable, "-m", "zoo_bench_torch.timm_weights", VIT, CNN, "--weights-dir", str(weights)],
                   check=True, capture_output=True)
    data = tmp_path / "data" / "cats_dogs"  # 12 photos per class and part: the suite's full grid in seconds
    for part in ("train", "test"):
        for kind in ("cat", "dog"):
            (data / part / kind).mkdir(parents=True)
            for f in sorted((SHARED_DATA / "cats_dogs" / part / kind).iterdir())[:12]:
                shutil.copy(f, data / part / kind / f.name)
    proc = subprocess.run([str(REPO / ".venv/bin/zoo-bench") if (REPO / ".venv/bin/zoo-bench").exists() else "zoo-bench",
                           "run", str(REPO / "suites/timm_tiny.toml"), "--weights-dir", str(weights),
                           "--data-root", str(tmp_path / "data"), "--results-dir", str(tmp_path / "res"),
                           "--run-id", "r", "--no-progress", "--cache-dir", str(tmp_path / "cache")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "res/timm_tiny/r/trials.jsonl").read_text().splitlines()]
    assert {(r["backbone"], r["strategy"]) for r in rows if r["status"] == "ok"} == {
        (f"timm:{b}", s) for b in (VIT, CNN) for s in ("svm", "last_layer", "last_n", "fpt", "full", "scratch",
                                                       "bitfit", "norm_tune", "lora")} | {(f"timm:{VIT}", "vpt")}
    assert f"not run: torch/timm:{CNN}/vpt[" in proc.stderr
    assert f"vpt runs on timm vision transformers (timm:vit_*, timm:deit_*) only; timm:{CNN} is not one" in proc.stderr
    for r in rows:
        assert (r["image_size"], r["crop_pct"], r["interpolation"]) == (160, 0.95, "bicubic")
        assert r["weights"] == ("none" if r["strategy"] == "scratch" else r["backbone"])
        assert r["test_images"] == 24
    last_n = {r["backbone"]: r for r in rows if r["strategy"] == "last_n"}
    assert all(r["trainable_params"] < r["total_params"] for r in last_n.values())


def test_features_of_two_weight_files_under_one_name_never_share_the_disk_cache(tmp_path):
    """Stand-in weights and real ones live at the same path under the same name; the feature cache
    keys on the file's fingerprint, so one file's features are never served for the other."""
    from zoo_bench.context import FeatureCache
    from zoo_bench.images import Batch

    spec = load_plugins().backbone("torch", f"timm:{VIT}")
    x = np.random.default_rng(0).integers(0, 255, (2, 160, 160, 3), dtype=np.uint8)
    batch = Batch(images=x, labels=np.array([0, 1]), paths=["a.jpg", "b.jpg"])
    got = []
    for seed in (1, 2):
        save_random_weights(VIT, str(tmp_path / "w"), seed=seed)
        backend = TorchBackend(device="cpu", weights_dir=str(tmp_path / "w"))
        cache = FeatureCache(tmp_path / "features")
        feats, seconds = cache.features(backend, spec, 160, batch, 2)
        assert cache.disk_hits == 0 and seconds > 0
        got.append(feats)
    assert not np.allclose(got[0], got[1])
    again = FeatureCache(tmp_path / "features")
    feats, _ = again.features(TorchBackend(device="cpu", weights_dir=str(tmp_path / "w")), spec, 160, batch, 2)
    assert again.disk_hits == 2 and np.array_equal(feats, got[1])
