"""Classes too small for a size, or empty, are refused before anything runs, naming class and size."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_suite
from zoo_bench import cli

SUITE = """
[suite]
name = "sizes"
[dataset]
source = "folder"
path = "{root}"
sizes = [{sizes}]
[run]
backends = ["torch"]
backbones = ["tiny_cnn"]
[strategies.scratch]
"""


def make_set(root: Path, train: dict[str, int], test: dict[str, int]) -> Path:
    rng = np.random.default_rng(0)
    for part, counts in (("train", train), ("test", test)):
        for cls, n in counts.items():
            folder = root / part / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("train,test,sizes,expected", [
    ({"cat": 5, "dog": 3}, {"cat": 1, "dog": 1}, "2, 4", "dataset.sizes[1]: 4 images per class asked, but class "
                                                         "'dog' has only 3 train images"),
    ({"cat": 5, "dog": 0}, {"cat": 1, "dog": 1}, "2", "class 'dog' has only 0 train images"),
    ({"cat": 5, "dog": 5}, {"cat": 1, "dog": 0}, "2", "dataset.test: class 'dog' has no test images"),
])
def test_refused_before_any_trial(tmp_path, capsys, command, train, test, sizes, expected):
    root = make_set(tmp_path / "data", train, test)
    suite = write_suite(tmp_path, SUITE.format(root=root, sizes=sizes))
    args = [command, str(suite), "--cache-dir", str(tmp_path / "cache")]
    if command == "run":
        args += ["--results-dir", str(tmp_path / "results"), "--no-progress"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert all(line.startswith("error: ") for line in err.splitlines() if line.strip())
    assert not (tmp_path / "results").exists()  # nothing ran, no run folder
