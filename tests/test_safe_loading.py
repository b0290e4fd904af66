"""Weight files are read without running code from them; result and cache files hold plain data."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo_bench import WeightsUnavailableError


class Payload:
    """Unpickling this runs a command: what a booby-trapped weight file does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_torch_weights_with_code_are_refused_in_one_line(tmp_path):
    from zoo_bench_torch.models import safe_load

    marker = tmp_path / "ran"
    path = tmp_path / "resnet50.pth"
    torch.save({"conv.weight": torch.zeros(2), "trap": Payload(marker)}, path)
    with pytest.raises(WeightsUnavailableError, match=r"resnet50: refusing to load .*resnet50.pth: it holds more than"):
        safe_load(path, "resnet50")
    assert not marker.exists()
    clean = tmp_path / "clean.pth"
    torch.save({"conv.weight": torch.arange(3.0)}, clean)
    assert torch.equal(safe_load(clean, "x")["conv.weight"], torch.arange(3.0))


def _legacy_save(obj, path: Path) -> None:
    torch.save(obj, path, _use_new_zipfile_serialization=False)


def test_legacy_pth_reader_matches_torch_and_refuses_code(tmp_path):
    from zoo_bench_keras.pth_reader import load_legacy_state_dict

    state = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(4, dtype=torch.float64)}
    good = tmp_path / "good.pth"
    _legacy_save(state, good)
    read = load_legacy_state_dict(good)
    assert np.array_equal(read["a"], state["a"].numpy()) and np.array_equal(read["b"], state["b"].numpy())

    marker = tmp_path / "ran"
    bad = tmp_path / "bad.pth"
    _legacy_save({"a": torch.zeros(1), "trap": Payload(marker)}, bad)
    with pytest.raises(pickle.UnpicklingError, match="unexpected object"):
        load_legacy_state_dict(bad)
    header = tmp_path / "header.pth"  # the trap in the first header, before the state dict
    header.write_bytes(pickle.dumps(Payload(marker)) + good.read_bytes())
    with pytest.raises(pickle.UnpicklingError):
        load_legacy_state_dict(header)
    assert not marker.exists()


def test_result_and_cache_files_hold_no_pickles(tmp_path, registry, cache_dir, tiny_weights):
    """Every file a run writes is JSON, Parquet, text or an npz whose arrays load without pickle."""
    from conftest import TINY_SUITE, run_inprocess, write_suite

    store, _ = run_inprocess(write_suite(tmp_path, TINY_SUITE + "[strategies.svm]\n"), registry, tmp_path,
                             tmp_path / "own-cache")
    store.write_table()
    suffixes = {p.suffix for p in store.run_dir.iterdir()}
    assert suffixes <= {".json", ".jsonl", ".parquet", ".log", ".txt", ""}, suffixes
    entries = list((tmp_path / "own-cache").rglob("*.npz"))
    assert entries
    for entry in entries:
        with np.load(entry, allow_pickle=False) as data:
            for name in data.files:
                assert data[name].dtype != object
