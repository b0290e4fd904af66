"""The test module ``pytest --zoo-suite`` collects: one benchmark per trial of the suite."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from zoo_bench.plan.grid import expand
from zoo_bench.plugins import load_plugins
from zoo_bench.pytest_plugin import EpochClock, benchmark_durations, data_root
from zoo_bench.run.prepare import RunOptions, prepare_run
from zoo_bench.results.store import new_run_id
from zoo_bench.run.runner import QuietReporter, Runner
from zoo_bench.plan.suite import parse_suite

EXTRA_FIELDS = ("test_accuracy", "val_accuracy", "epoch_time_s", "first_epoch_s", "feature_time_s",
                "train_images_per_s", "peak_memory_mb", "trainable_params", "total_params", "skipped_images",
                "device_name", "precision", "wall_s", "status", "error")


def _suite(config):
    registry = load_plugins()
    return registry, parse_suite(Path(config.getoption("--zoo-suite")), registry,
                                 profile=config.getoption("--zoo-profile"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "zoo_trial" in metafunc.fixturenames:
        _, suite = _suite(metafunc.config)
        trials = expand(suite)
        metafunc.parametrize("zoo_trial", trials, ids=[t.id for t in trials])


@pytest.fixture(scope="session")
def zoo_runner(pytestconfig):
    registry, suite = _suite(pytestconfig)
    cache = Path(os.environ.get("ZOO_BENCH_CACHE_DIR", Path.home() / ".cache" / "zoo-bench"))
    options = RunOptions(data_root=data_root(pytestconfig), cache_dir=cache,
                         weights_dir=os.environ.get("ZOO_BENCH_WEIGHTS_DIR"))
    run_id = pytestconfig.getoption("--zoo-run-id") or new_run_id()
    run_dir = Path(pytestconfig.getoption("--zoo-results-dir")) / suite.name / run_id
    runner = Runner(prepare_run(suite, registry, options, run_dir), QuietReporter())
    yield runner
    runner.store.write_table()


def test_trial(zoo_trial, zoo_runner, benchmark):
    row = zoo_runner.run_one(zoo_trial)
    benchmark.extra_info.update({"trial_id": zoo_trial.id, **{k: row.get(k) for k in EXTRA_FIELDS}})
    durations = benchmark_durations(row)
    benchmark._timer = EpochClock(durations)  # the timings are the trial's own epoch times
    benchmark.pedantic(lambda: None, rounds=len(durations), iterations=1, warmup_rounds=0)
    assert row["status"] == "ok", row["error"]
