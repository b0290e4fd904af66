"""The command line as users meet it, in subprocesses (in-process where only the output matters): exit codes, one-line errors, a real run."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SHARED_DATA, write_suite

FIXTURE = Path(__file__).parent / "fixtures" / "cosine_probe"

SMALL = """
[suite]
name = "cli_small"
seeds = [0]
[dataset]
source = "synthetic"
classes = 2
train_per_class = 12
test_per_class = 6
image_size = 32
sizes = [6]
[run]
backends = ["torch"]
backbones = ["efficientnet_lite0"]
image_size = 32
batch_size = 8
"""


def zb(*args, env=None, cwd=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "zoo_bench.cli", *map(str, args)], capture_output=True,
                          text=True, env=full_env, cwd=cwd, timeout=600)


def test_validate_errors_are_one_line_each_exit_2_no_traceback(tmp_path):
    path = write_suite(tmp_path, SMALL.replace('"efficientnet_lite0"', '"efficientnet_lite9"')
                       + "[strategies.svm]\nC = \"big\"\n")
    proc = zb("validate", path, "--cache-dir", tmp_path / "c")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(lines) == 2
    assert lines[0].startswith(f"error: {path}: run.backbones[0]: unknown backbone 'efficientnet_lite9'")
    assert lines[1].startswith(f"error: {path}: strategies.svm.C: must be float")


def test_validate_warns_once_per_backbone_whose_weights_are_not_downloaded_yet_and_still_exits_0(
        tmp_path, monkeypatch, capsys):
    from zoo_bench.cli import main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no torchvision weights downloaded here
    body = SMALL.replace('["efficientnet_lite0"]', '["efficientnet_lite0", "mobilenet_v2"]')
    path = write_suite(tmp_path, body + "[strategies.svm]\n[strategies.last_layer]\nepochs = 1\n[strategies.scratch]\n")
    assert main(["validate", str(path), "--cache-dir", str(tmp_path / "c")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: backbone 'mobilenet_v2' (torch): its pretrained weights (torchvision:IMAGENET1K_V2) "
                        "are not on this machine yet; svm, last_layer will download them on first use, which fails "
                        "offline (--weights-dir or ZOO_BENCH_WEIGHTS_DIR names a folder that has them)"]


def test_dry_run_prints_the_grid_and_its_size(tmp_path):
    path = write_suite(tmp_path, SMALL + "[strategies.svm]\nC = [0.1, 1.0]\n[strategies.last_layer]\n")
    proc = zb("run", path, "--dry-run", "--no-profile")
    assert proc.returncode == 0
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "torch/efficientnet_lite0/svm[C=0.1,preprocess=none]/n=6/seed=0" and lines[-1] == "3 trials"


@pytest.mark.parametrize("args, message", [
    (["--isolation", "off", "--workers", "2"], "error: --isolation off runs every trial in this process; it cannot be "
                                               "combined with --workers, --gpus or --executor ray (which run trials in "
                                               "worker processes)"),
    (["--workers", "0"], "error: --workers 0: must be at least 1"),
    (["--executor", "ray", "--gpus", "0"], "error: --gpus picks GPUs of this machine for the local pool; with "
                                           "--executor ray, Ray places each unit on a free GPU (set [ray] num_gpus "
                                           "in the suite)"),
    (["--executor", "local", "--ray-address", "127.0.0.1:1"], "error: --ray-address joins a Ray cluster; it cannot "
                                                              "be combined with --executor local"),
])
def test_contradictory_worker_options_exit_2_before_anything_is_written(tmp_path, args, message):
    path = write_suite(tmp_path, SMALL + "[strategies.svm]\n")
    proc = zb("run", path, "--results-dir", tmp_path / "res", "--cache-dir", tmp_path / "c", *args)
    assert proc.returncode == 2 and proc.stderr.strip() == message
    assert not (tmp_path / "res").exists()


def test_run_show_and_exit_code_1_on_a_failed_trial(tmp_path):
    body = SMALL.replace('["efficientnet_lite0"]', '["efficientnet_lite0", "vgg16"]') + "[strategies.svm]\n"
    path = write_suite(tmp_path, body)
    env = {"TORCH_HOME": str(tmp_path / "th")}  # no vgg16 weights there, no network here or a fake proxy
    proc = zb("run", path, "--run-id", "t1", "--results-dir", tmp_path / "res", "--cache-dir", tmp_path / "c",
              "--no-progress", env={**env, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"})
    assert proc.returncode == 1, proc.stderr
    rows = [json.loads(line) for line in (tmp_path / "res/cli_small/t1/trials.jsonl").read_text().splitlines()]
    status = {r["backbone"]: r for r in rows}
    assert status["efficientnet_lite0"]["status"] == "ok"
    assert status["vgg16"]["status"] == "error" and "vgg16-397923af.pth" in status["vgg16"]["error"]
    show = zb("show", tmp_path / "res/cli_small/t1")
    assert show.returncode == 0 and "efficientnet_lite0" in show.stdout and "error" in show.stdout
    meta = json.loads((tmp_path / "res/cli_small/t1/run.json").read_text())
    assert meta["versions"]["torch"] and meta["cpu_count"] and meta["suite"]["suite"]["name"] == "cli_small"


def test_plugins_lists_distributions_and_registrations():
    proc = zb("plugins")
    assert proc.returncode == 0
    for word in ("strategies", "zoo-bench", "efficientnet_lite0", "kaggle-flat", "fpt"):
        assert word in proc.stdout


def test_third_party_plugin_installed_from_a_real_package(tmp_path):
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                              "--target", str(target), str(FIXTURE)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    env = {"PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    listing = zb("plugins", env=env)
    assert "zoo-bench-cosine-probe" in listing.stdout and "cosine_probe" in listing.stdout
    path = write_suite(tmp_path, SMALL + "[strategies.cosine_probe]\ncenter = [true, false]\n")
    proc = zb("run", path, "--run-id", "p", "--results-dir", tmp_path / "res", "--cache-dir", tmp_path / "c",
              "--no-progress", env=env)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(l) for l in (tmp_path / "res/cli_small/p/trials.jsonl").read_text().splitlines()]
    assert [r["strategy"] for r in rows] == ["cosine_probe"] * 2 and all(r["status"] == "ok" for r in rows)


def test_readme_shows_the_fixture_plugin_verbatim():
    readme = (REPO / "README.md").read_text()
    assert (FIXTURE / "zoo_bench_cosine_probe.py").read_text().strip() in readme
    assert 'cosine_probe = "zoo_bench_cosine_probe"' in readme


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path):
    proc = zb("run", REPO / "suites/quickstart.toml", "--run-id", "e2e", "--results-dir", tmp_path / "res",
              "--cache-dir", tmp_path / "c", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(l) for l in (tmp_path / "res/quickstart/e2e/trials.jsonl").read_text().splitlines()]
    assert {r["strategy"] for r in rows} == {"svm", "last_layer", "last_n", "fpt", "full", "scratch", "bitfit",
                                            "norm_tune", "lora"}
    assert all(r["status"] == "ok" for r in rows)
    assert (tmp_path / "res/quickstart/e2e/trials.parquet").exists()
    assert "n=40/class" in proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "cats_dogs").is_dir(), reason="needs ../shared/data/cats_dogs")
def test_real_weights_lite0_svm_on_50_photos_per_class(tmp_path):
    path = write_suite(tmp_path, """
        [suite]
        name = "real"
        seeds = [0]
        [dataset]
        source = "folder"
        path = "cats_dogs"
        sizes = [50]
        [run]
        backends = ["torch"]
        backbones = ["efficientnet_lite0"]
        [strategies.svm]
        """)
    proc = zb("run", path, "--run-id", "r", "--results-dir", tmp_path / "res", "--data-root", SHARED_DATA,
              "--no-progress", "--no-profile")
    assert proc.returncode == 0, proc.stderr[-2000:]
    [row] = [json.loads(l) for l in (tmp_path / "res/real/r/trials.jsonl").read_text().splitlines()]
    assert row["test_images"] == 2000 and row["train_images"] == 80
    assert row["test_accuracy"] >= 0.90
