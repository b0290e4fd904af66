"""pytest plugin: ``pytest --zoo-suite suites/ci.toml`` runs a suite's trials as pytest-benchmark benchmarks.

Each trial becomes one test whose benchmark timings are the trial's measured epoch times (the epochs
after the first, as in ``epoch_time_s``), and whose ``extra_info`` holds accuracy and the other result
fields, so ``--benchmark-autosave`` and ``--benchmark-compare-fail`` work as usual. With
``--zoo-suite`` only the suite's trials are collected. Results are also written to a run folder.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

SUITE_MODULE = Path(__file__).with_name("_pytest_suite.py")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("zoo-bench")
    group.addoption("--zoo-suite", help="run this zoo-bench suite's trials as benchmarks")
    group.addoption("--zoo-profile", help="apply this profile of the suite")
    group.addoption("--zoo-data-root", help="data root (default: ZOO_BENCH_DATA_ROOT or ./data)")
    group.addoption("--zoo-results-dir", default="results", help="where the run folder goes (default: results)")
    group.addoption("--zoo-run-id", help="run folder name (default: a new time-stamped id)")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--zoo-suite", None):
        config.args[:] = [str(SUITE_MODULE)]  # collect the suite's trials, nothing else


class EpochClock:
    """A timer for pytest-benchmark that replays measured epoch durations, one per round."""

    def __init__(self, durations: list[float]):
        self.durations = list(durations)
        self.now = 0.0
        self.calls = 0

    def __call__(self) -> float:
        if self.calls % 2 == 1:  # every second call ends a round: advance by the next epoch
            self.now += self.durations[(self.calls // 2) % len(self.durations)]
        self.calls += 1
        return self.now


def benchmark_durations(row: dict[str, Any]) -> list[float]:
    """The timings a trial contributes: epochs after the first, else all epochs, else its fit time."""
    seconds = row.get("epoch_seconds") or []
    if len(seconds) > 1:
        return seconds[1:]
    if seconds:
        return seconds
    return [row["train_time_s"]] if row.get("train_time_s") else [row.get("wall_s") or 0.0]


def data_root(config: pytest.Config) -> Path:
    return Path(config.getoption("--zoo-data-root") or os.environ.get("ZOO_BENCH_DATA_ROOT", "data"))
