"""last_n fine-tunes the blocks above a cut on cached activations of the frozen blocks below it."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import TINY_SUITE, photo_suite, run_inprocess, write_suite
from zoo_bench import HeadSpec, OptimizerSpec


def last_n(extra: str) -> str:
    return "[strategies.last_n]\nhead_epochs = 2\nfinetune_epochs = 2\n" + extra


def test_cut_splits_below_the_first_trainable_block(registry):
    backend = registry.backends["torch"](device="cpu", precision="fp32")
    base = backend.build_base(registry.backbone("torch", "efficientnet_lite0"), pretrained=False, image_size=64)
    model = backend.attach(base, backend.new_head(1280, 2, HeadSpec((8,), 0.0)))
    backend.set_trainable(model, 2, bn_inference=True)
    cut = backend.cut(model)
    assert (cut.index, cut.blocks, cut.describe()) == (7, 9, "7/9")
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    acts = backend.activations(cut.lower, images, 2)
    assert acts.shape == (3, *cut.shape) and acts.dtype == np.float32
    model.eval()
    whole = backend.logits(model, images, 2)
    assert np.allclose(backend.logits(cut.upper, acts, 2), whole, atol=1e-5)  # the same network, split
    mirrored = backend.activations(cut.lower, images, 2, flip=True)
    assert np.allclose(mirrored, backend.activations(cut.lower, images[:, :, ::-1], 2), atol=1e-6)
    backend.set_trainable(model, None, bn_inference=True)
    assert backend.cut(model) is None  # nothing frozen: nothing to cache


def test_frozen_blocks_run_in_inference_mode_while_training(registry):
    """Stochastic depth (torchvision's EfficientNet-B0) and dropout below the cut stay off, so cached
    activations are what the pixel path computes."""
    backend = registry.backends["torch"](device="cpu", precision="fp32")
    base = backend.build_base(registry.backbone("torch", "efficientnet_b0"), pretrained=False, image_size=64)
    model = backend.attach(base, backend.new_head(1280, 2, HeadSpec((8,), 0.0)))
    backend.set_trainable(model, 1, bn_inference=True)
    model.train()
    frozen = [m for b in base.blocks[:-1] for m in b.modules()]
    assert frozen and not any(m.training for m in frozen)
    bn = backend.torch.nn.BatchNorm2d
    assert all(m.training for m in base.blocks[-1].modules() if not isinstance(m, bn))  # its BatchNorm: inference


def test_fit_draws_one_view_per_image_and_epoch_and_computes_only_those(registry):
    """Under a flip a step sees either view of each image, each computed once, when first drawn."""
    from zoo_bench.backend import CutViews

    backend = registry.backends["torch"](device="cpu", precision="fp32")
    head = backend.new_head(4, 2, HeadSpec((), 0.0))
    y = np.array([0, 1, 0, 1, 0, 1])
    fetched: list[tuple[int, bool]] = []

    def fetch(indices, flip):
        fetched.extend((int(i), flip) for i in indices)
        return np.full((len(indices), 4, 1, 1), float(flip), np.float32)

    seen = []

    class Spy(backend.torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = head

        def forward(self, xb):
            seen.append(xb[:, 0, 0, 0].clone())
            return self.head(xb.flatten(1))

    backend.seed(0)
    backend.fit(Spy(), CutViews(6, (4, 1, 1), True, fetch), y, epochs=1, optimizer=OptimizerSpec("sgd", 0.0),
                batch_size=6)
    assert len(fetched) == 6 and sorted(i for i, _ in fetched) == list(range(6))  # one view each, the drawn one
    backend.fit(Spy(), CutViews(6, (4, 1, 1), True, fetch), y, epochs=4, optimizer=OptimizerSpec("sgd", 0.0),
                batch_size=6)
    views = backend.torch.cat(seen[1:]).numpy()
    assert len(views) == 24 and 0 < views.mean() < 1  # both views drawn, about half each
    assert len(set(fetched[6:])) == len(fetched[6:]) <= 12  # no view computed twice


@pytest.mark.parametrize("augment", ["none", "flip"])
def test_last_n_on_real_photos_gives_what_pixels_give(tmp_path, registry, real_photos, augment):
    """Cached activations against every block each epoch: same scores without augmentation, and the
    same accuracy with a flip (the two paths draw their flips differently)."""
    rows = {}
    for cache in ("true", "false"):
        (tmp_path / cache).mkdir()
        body = photo_suite(real_photos, "torch", "efficientnet_lite0", 96,
                           last_n(f'augment = "{augment}"\ncache_cut = {cache}\n'))
        store, _ = run_inprocess(write_suite(tmp_path / cache, body), registry, tmp_path / cache, tmp_path / "cache")
        [rows[cache]] = store.rows()
    cached, pixels = rows["true"], rows["false"]
    assert cached["status"] == pixels["status"] == "ok", (cached["error"], pixels["error"])
    assert (cached["cut"], pixels["cut"]) == ("8/9", None)
    assert cached["cut_time_s"] > 0 and pixels["cut_time_s"] is None
    assert cached["trainable_params"] == pixels["trainable_params"]
    assert [h["input"] for h in cached["history"]] == ["features"] * 2 + ["cut"] * 2
    if augment == "none":
        assert cached["test_loss"] == pytest.approx(pixels["test_loss"], rel=1e-3, abs=1e-4)
        assert [h["train_loss"] for h in cached["history"]] == pytest.approx(
            [h["train_loss"] for h in pixels["history"]], rel=1e-3, abs=1e-4)
    assert abs(cached["test_accuracy"] - pixels["test_accuracy"]) <= 0.125  # one test photo of eight


def test_warps_fall_back_to_pixels_and_trials_share_activations(tmp_path, registry, tiny_weights):
    body = TINY_SUITE + last_n('augment = "none"\nfinetune_lr = [1e-4, 1e-3]\n[strategies.fpt]\nhead_epochs = 1\n'
                               'finetune_epochs = 1\n')
    store, _ = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, tmp_path / "cache")
    rows = {(r["strategy"], r["params"].get("finetune_lr")): r for r in store.rows()}
    first, second = rows["last_n", 1e-4], rows["last_n", 1e-3]
    [fpt] = [r for (name, _), r in rows.items() if name == "fpt"]
    assert all(r["status"] == "ok" for r in rows.values())
    assert first["cut"] == second["cut"] == "2/3" and fpt["cut"] is None  # fpt trains every block
    assert second["cut_time_s"] < first["cut_time_s"]  # the second trial computes nothing new
    (tmp_path / "w").mkdir()
    warped = TINY_SUITE + last_n('rotation = 10\n')
    store, _ = run_inprocess(write_suite(tmp_path / "w", warped), registry, tmp_path / "w", tmp_path / "cache")
    [row] = store.rows()
    assert row["status"] == "ok" and row["cut"] is None  # a rotation needs the pixels every epoch
