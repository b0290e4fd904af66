"""The torch backend's fit: batches from images held as one tensor, the data share recorded, opt-in compile."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import TINY_SUITE, run_inprocess, write_suite
from zoo_bench import HeadSpec, OptimizerSpec


def test_pixel_epochs_record_the_time_spent_producing_batches(registry, tiny_weights):
    backend = registry.backends["torch"](device="cpu", precision="fp32")
    base = backend.build_base(registry.backbone("torch", "mini_cnn"), pretrained=True, image_size=32)
    model = backend.attach(base, backend.new_head(32, 2, HeadSpec((8,), 0.0)))
    backend.set_trainable(model, None, bn_inference=False)
    x = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    y = np.arange(40) % 2
    stats = backend.fit(model, x, y, epochs=2, optimizer=OptimizerSpec(), batch_size=8, augment=True)
    assert all(0 < s.data_seconds < s.seconds for s in stats)
    assert backend._resident(x).data_ptr() == x.ctypes.data  # on CPU the array itself: no copy


def test_rows_carry_the_data_share_and_the_compile_setting(tmp_path, registry, tiny_weights):
    body = TINY_SUITE.replace('batch_size = 8', 'batch_size = 8\ncompile = true') + (
        '[strategies.full]\nepochs = 3\n')
    store, _ = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, tmp_path / "cache")
    [row] = store.rows()
    assert row["status"] == "ok", row["error"]
    assert row["backend_settings"]["compile"] is True
    assert 0 < row["data_wait_fraction"] < 1
    assert all(h["data_s"] is not None for h in row["history"])
    assert row["first_epoch_s"] > row["epoch_time_s"]  # the compile time is in the first epoch, apart


def test_compile_is_refused_in_one_line_by_a_backend_without_it(tmp_path, registry):
    pytest.importorskip("keras")
    body = TINY_SUITE.replace('batch_size = 8', 'batch_size = 8\ncompile = true').replace(
        'backends = ["torch"]', 'backends = ["keras"]').replace('"mini_cnn"', '"efficientnet_lite0"') + (
        '[strategies.svm]\n')
    store, _ = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, tmp_path / "cache")
    [row] = store.rows()
    assert row["status"] == "error"
    assert row["error"].endswith("run.compile: backend 'keras' cannot compile its network; set compile = false "
                                 "or drop 'keras' from run.backends")


def test_large_host_blocks_stay_in_the_heap_on_cpu(registry):
    """glibc would return every freed batch-sized block to the kernel and fault it in again next batch."""
    import sys

    backend = registry.backends["torch"](device="cpu", precision="fp32")
    settings = backend.device().settings["malloc"]
    if sys.platform.startswith("linux") and settings is None:
        pytest.skip("not glibc")
    assert settings == f"M_MMAP_THRESHOLD={2**30}, M_TRIM_THRESHOLD={2**31 - 1}, M_TOP_PAD={64 * 2**20}"
