"""The README's backbone and data-source plugins are real packages: installed, checked and run here."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_suite

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]
EXAMPLES = {"small_vgg": "zoo_bench_small_vgg", "csv_source": "zoo_bench_csv_source"}

SUITE = """
[suite]
name = "examples"
seeds = [0]
[dataset]
source = "csv"
path = "shapes"
sizes = [6]
[run]
backends = ["torch"]
backbones = ["small_vgg"]
batch_size = 8
[strategies.svm]
[strategies.last_n]
n = 1
head_epochs = 1
finetune_epochs = 1
[strategies.scratch]
epochs = 1
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("examples-site")
    for folder in EXAMPLES:
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--target",
                               str(target), str(FIXTURES / folder)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
    return target


def shapes(root: Path) -> Path:
    """Bright squares against bright discs, 10 train and 4 test images a class, listed in CSV files."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for part, n in (("train", 10), ("test", 4)):
        rows = []
        for label in ("disc", "square"):
            for i in range(n):
                x = rng.integers(0, 60, (64, 64, 3)).astype(np.uint8)
                yy, xx = np.mgrid[:64, :64]
                mask = ((yy - 32) ** 2 + (xx - 32) ** 2 < 300) if label == "disc" else ((abs(yy - 32) < 15) & (abs(xx - 32) < 15))
                x[mask] = 220
                Image.fromarray(x).save(root / f"{part}_{label}{i}.png")
                rows.append(f"{part}_{label}{i}.png,{label}")
        (root / f"{part}.csv").write_text("\n".join(rows) + "\n")
    return root


def test_the_readme_shows_each_example_plugin_verbatim():
    readme = (REPO / "README.md").read_text()
    for folder, module in EXAMPLES.items():
        assert (FIXTURES / folder / f"{module}.py").read_text().strip() in readme, module
        assert f'{folder} = "{module}"' in readme


def test_the_example_plugins_keep_the_contract(site, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    import zoo_bench_csv_source
    import zoo_bench_small_vgg

    from zoo_bench.testing import check_plugin

    assert check_plugin(zoo_bench_small_vgg, image_size=32).checked == ["backbone 'small_vgg' (backend torch)"]
    report = check_plugin(zoo_bench_csv_source, datasets={"csv": shapes(tmp_path / "shapes")})
    assert report.checked == ["dataset 'csv'"]


def test_the_example_plugins_run_a_suite_from_the_command_line(site, tmp_path):
    import torch
    from torch import nn

    sys.path.insert(0, str(site))
    try:
        import zoo_bench_small_vgg
    finally:
        sys.path.remove(str(site))
    weights = tmp_path / "weights"
    weights.mkdir()
    torch.manual_seed(7)
    torch.save(nn.Sequential(*zoo_bench_small_vgg.blocks()).state_dict(), weights / "small_vgg.pth")
    shapes(tmp_path / "data" / "shapes")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    suite = write_suite(tmp_path, SUITE)

    def run(run_id: str, *more: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
        proc = subprocess.run([sys.executable, "-m", "zoo_bench.cli", "run", str(suite), "--run-id", run_id,
                               "--results-dir", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "c"),
                               "--data-root", str(tmp_path / "data"), "--no-progress", "--no-profile", *more],
                              capture_output=True, text=True, env=env, timeout=600)
        lines = (tmp_path / "res/examples" / run_id / "trials.jsonl").read_text().splitlines()
        return proc, [json.loads(line) for line in lines]

    proc, rows = run("no-weights")
    assert proc.returncode == 1 and {r["strategy"]: r["status"] for r in rows}["scratch"] == "ok"
    assert {r["error"] for r in rows if r["status"] == "error"} == {
        "small_vgg: set --weights-dir (or ZOO_BENCH_WEIGHTS_DIR) to the folder holding small_vgg.pth"}
    proc, rows = run("r", "--weights-dir", str(weights))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {r["strategy"] for r in rows} == {"svm", "last_n", "scratch"} and all(r["status"] == "ok" for r in rows)
    assert {r["weights"] for r in rows if r["strategy"] != "scratch"} == {"small-vgg-v1"}
