"""`pytest --zoo-suite`: trials as pytest-benchmark benchmarks whose timings are epoch times."""
import json
import subprocess
import sys

import pytest

from conftest import lite0_suite, write_suite
from zoo_bench.pytest_plugin import EpochClock, benchmark_durations, why_untimed
from zoo_bench.results.timing import TimingRule

pytest.importorskip("pytest_benchmark")


def test_epoch_clock_replays_durations_as_rounds():
    clock = EpochClock([0.5, 0.25])
    rounds = []
    for _ in range(2):
        start = clock()
        rounds.append(clock() - start)
    assert rounds == [0.5, 0.25]


def test_durations_skip_the_first_epoch_and_a_one_shot_fit_or_a_too_short_trial_is_no_benchmark():
    assert benchmark_durations({"epoch_seconds": [9.0, 1.0, 2.0]}) == [1.0, 2.0]
    assert benchmark_durations({"epoch_seconds": [], "train_time_s": 0.01}) == []
    rule = TimingRule(floor_ms=5.0)
    assert why_untimed({"epoch_seconds": [], "train_time_s": 0.01}, rule) == "a one-shot fit: no epochs to time"
    assert why_untimed({"epoch_seconds": [0.01, 0.003, 0.003], "epoch_time_s": 0.003}, rule) == (
        "epochs of 3.0 ms are under the 5 ms floor: too short to time reliably")
    assert why_untimed({"epoch_seconds": [0.05, 0.02, 0.03], "epoch_time_s": 0.025}, rule) is None


def test_suite_trials_run_as_benchmarks(tmp_path):
    # floor 0: the head's millisecond epochs count as timed here; svm, a one-shot fit, is never a benchmark
    suite = write_suite(tmp_path, lite0_suite("pt", "[compare]\ntiming_floor_ms = 0\n[strategies.svm]\n"
                                                    "[strategies.last_layer]\nepochs = 4"))
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--zoo-suite", str(suite),
                           "--zoo-results-dir", str(tmp_path / "res"), "--zoo-run-id", "r", "--benchmark-json", str(out)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    benches = {b["extra_info"]["trial_id"].split("/")[2].split("[")[0]: b for b in json.loads(out.read_text())["benchmarks"]}
    assert set(benches) == {"last_layer"}
    assert "zoo-bench: 1 trial(s) ran but are not benchmarks" in proc.stdout
    assert "/svm[C=1.0,preprocess=none]/n=8/seed=0: a one-shot fit: no epochs to time" in proc.stdout, proc.stdout
    head = benches["last_layer"]
    assert head["stats"]["rounds"] == 3  # 4 epochs, the first left out as in epoch_time_s
    assert 0 <= head["extra_info"]["test_accuracy"] <= 1 and head["extra_info"]["status"] == "ok"
    assert abs(head["stats"]["median"] - head["extra_info"]["epoch_time_s"]) < 1e-9
    assert (tmp_path / "res" / "pt" / "r" / "trials.jsonl").exists()


@pytest.mark.parametrize("case", ["missing data", "unknown backbone"])
def test_a_suite_that_cannot_start_stops_the_session_with_one_usage_error(tmp_path, case):
    body = lite0_suite("pt", "[strategies.svm]")
    if case == "missing data":
        body = body.replace('source = "synthetic"\ntrain_per_class = 10\ntest_per_class = 5\nimage_size = 32',
                            'source = "folder"\npath = "no_such_set"')
        expected = "no_such_set"
    else:
        body = body.replace('backbones = ["efficientnet_lite0"]', 'backbones = ["no_such_net"]')
        expected = "no_such_net"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--zoo-suite",
                           str(write_suite(tmp_path, body)), "--zoo-data-root", str(tmp_path / "data"),
                           "--zoo-results-dir", str(tmp_path / "res")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out  # pytest's usage error
    errors = [line for line in out.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("ERROR: zoo-bench: ") and expected in errors[0], out
    assert "Traceback" not in out
