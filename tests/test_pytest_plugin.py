"""`pytest --zoo-suite`: trials as pytest-benchmark benchmarks whose timings are epoch times."""
import json
import subprocess
import sys

import pytest

from conftest import lite0_suite, write_suite
from zoo_bench.pytest_plugin import EpochClock, benchmark_durations

pytest.importorskip("pytest_benchmark")


def test_epoch_clock_replays_durations_as_rounds():
    clock = EpochClock([0.5, 0.25])
    rounds = []
    for _ in range(2):
        start = clock()
        rounds.append(clock() - start)
    assert rounds == [0.5, 0.25]


def test_durations_skip_the_first_epoch():
    assert benchmark_durations({"epoch_seconds": [9.0, 1.0, 2.0]}) == [1.0, 2.0]
    assert benchmark_durations({"epoch_seconds": [], "train_time_s": 0.01}) == [0.01]


def test_suite_trials_run_as_benchmarks(tmp_path):
    suite = write_suite(tmp_path, lite0_suite("pt", "[strategies.svm]\n[strategies.last_layer]\nepochs = 4"))
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--zoo-suite", str(suite),
                           "--zoo-results-dir", str(tmp_path / "res"), "--zoo-run-id", "r", "--benchmark-json", str(out)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    benches = {b["extra_info"]["trial_id"].split("/")[2].split("[")[0]: b for b in json.loads(out.read_text())["benchmarks"]}
    assert set(benches) == {"svm", "last_layer"}
    head = benches["last_layer"]
    assert head["stats"]["rounds"] == 3  # 4 epochs, the first left out as in epoch_time_s
    assert 0 <= head["extra_info"]["test_accuracy"] <= 1 and head["extra_info"]["status"] == "ok"
    assert abs(head["stats"]["median"] - head["extra_info"]["epoch_time_s"]) < 1e-9
    assert (tmp_path / "res" / "pt" / "r" / "trials.jsonl").exists()
