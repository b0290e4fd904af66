"""Unfreezing named blocks, block ranges and layers, in both backends."""
from __future__ import annotations

import pytest

from conftest import TINY_SUITE, run_inprocess, write_suite
from zoo_bench import HeadSpec, ZooBenchError
from zoo_bench.unfreeze import resolve

BLOCKS = ["stem", "stage1", "stage2", "head_conv"]
LAYERS = ["blocks.0.0", "blocks.1.conv", "blocks.3.conv"]


def test_entries_resolve_to_blocks_and_layers():
    assert resolve(["stage2"], BLOCKS, LAYERS, "x").blocks == (2,)
    assert resolve(["-2:"], BLOCKS, LAYERS, "x").blocks == (2, 3)
    assert resolve(["1:3", "stem"], BLOCKS, LAYERS, "x").blocks == (0, 1, 2)
    parts = resolve(["blocks.0.0", "0"], BLOCKS, LAYERS, "x")  # "0": the last part of one layer's name
    assert parts.layers == ("blocks.0.0",) and parts.blocks == ()
    with pytest.raises(ZooBenchError, match=r"unfreeze: 'conv' names no block, block range or layer of x "
                                            r"\(blocks: stem, stage1, stage2, head_conv;"):
        resolve(["conv"], BLOCKS, LAYERS, "x")  # two layers end in "conv": ambiguous, refused
    with pytest.raises(ZooBenchError, match="'9:' names no block"):
        resolve(["9:"], BLOCKS, LAYERS, "x")


@pytest.mark.parametrize("backend_name", ["torch", "keras"])
def test_one_vgg16_layer_opens_in_both_backends(backend_name, registry):
    """Seed 003 opens block5_conv3 alone: 2,359,808 base parameters, plus its 33,027-parameter head."""
    if backend_name == "keras":
        pytest.importorskip("keras")
    backend = registry.backends[backend_name](device="cpu", precision="fp32")
    base = backend.build_base(registry.backbone(backend_name, "vgg16"), pretrained=False, image_size=64)
    blocks, layers = backend.unfreeze_units(base)
    assert blocks == [f"block{i}" for i in range(1, 6)]
    model = backend.attach(base, backend.new_head(512, 3, HeadSpec((64,), 0.0)))
    backend.set_trainable(model, None, True, parts=resolve(["block5_conv3"], blocks, layers, "vgg16"))
    assert backend.count_params(model)[0] == 2_359_808 + 33_027
    backend.set_trainable(model, None, True, parts=resolve(["block4", "-1:"], blocks, layers, "vgg16"))
    assert backend.count_params(model)[0] == 1_180_160 + 5 * 2_359_808 + 33_027  # conv4_1, conv4_2-5_3, head


def test_last_n_unfreezes_by_name_end_to_end(tmp_path, registry, tiny_weights):
    body = TINY_SUITE + ('[strategies.last_n]\nhead_epochs = 1\nfinetune_epochs = 1\n'
                         'unfreeze = [["block2"], ["block9"]]\n')
    store, reporter = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, tmp_path / "cache")
    ok, bad = store.rows()
    assert len(reporter.epochs) == 2  # the good trial's head and fine-tuning epochs: the bad name is refused first
    assert ok["status"] == "ok", ok["error"]
    assert "unfreeze=[\"block2\"]" in ok["trial_id"]
    assert bad["status"] == "error" and "unfreeze: 'block9' names no block" in bad["error"]


@pytest.mark.parametrize("backend_name", ["torch", "keras"])
def test_last_n_on_real_photos_with_every_new_key(tmp_path, registry, real_photos, backend_name):
    """Named blocks, augmentation, a schedule per phase, raised dropout and max pooling together, per backend."""
    if backend_name == "keras":
        pytest.importorskip("keras")
    from conftest import photo_suite

    body = photo_suite(real_photos, backend_name, "efficientnet_lite0", 96, (
        '[strategies.last_n]\nunfreeze = ["-2:"]\nhead_epochs = 2\nfinetune_epochs = 2\npooling = "max"\n'
        'rotation = 20\nzoom = 0.1\nbrightness = 0.2\nhead_schedule = "cosine"\nfinetune_warmup_epochs = 1\n'
        'finetune_dropout = 0.6\n'))
    store, _ = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, tmp_path / "cache")
    [row] = store.rows()
    assert row["status"] == "ok", row["error"]
    assert row["augmentation"] == "flip, rotation=20, zoom=0.1, brightness=0.2"
    lrs = [h["lr"] for h in row["history"]]
    assert lrs == pytest.approx([1e-3, 0.5e-3, 0.5e-4, 1e-4], rel=1e-5)  # cosine over 2, then warm-up 1 of 2
    # the last two blocks (the last stage and the 1x1 head conv) and the head are trainable, no more
    backend = registry.backends[backend_name](device="cpu", precision="fp32")
    base = backend.build_base(registry.backbone(backend_name, "efficientnet_lite0"), pretrained=False, image_size=96)
    head = backend.count_params(backend.new_head(1280, 2, HeadSpec((256,), 0.6)))[1]
    assert head < row["trainable_params"] < 0.5 * row["total_params"]
    assert row["total_params"] == backend.count_params(base)[1] + head
