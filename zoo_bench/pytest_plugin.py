"""pytest plugin: ``pytest --zoo-suite suites/ci.toml`` runs a suite's trials as pytest-benchmark benchmarks.

Each trial becomes one test; a trial with timed epochs is a benchmark whose rounds are its measured epoch
times (the epochs after the first, as in ``epoch_time_s``) and whose ``extra_info`` holds accuracy and the
other result fields, so ``--benchmark-autosave`` and ``--benchmark-compare-fail`` work as usual. A trial
whose timing cannot carry a comparison, a one-shot fit or epochs under the suite's ``[compare]
timing_floor_ms`` (:mod:`zoo_bench.results.timing`), still runs and passes or fails on its status but is
not a benchmark; the session's summary says which and why. With ``--zoo-suite`` only the suite's trials
are collected. Results are also written to a run folder.

A suite that cannot start (a bad suite, an unknown backbone, missing data) stops the session at its start
with one usage error, as the command line does, instead of failing every trial.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

# pytest loads this plugin in every session of an environment that has zoo-bench, so zoo-bench itself is
# imported only under --zoo-suite (tests/test_layout.py allows these function-level imports here).
SUITE_MODULE = Path(__file__).with_name("_pytest_suite.py")
SESSION = pytest.StashKey["ZooSession"]()


class ZooSession:
    """The suite, its trials and the runner of one pytest session, readied at its start."""

    def __init__(self, config: pytest.Config):
        from .plan.grid import expand
        from .plan.suite import parse_suite
        from .plugins import load_plugins
        from .results.store import new_run_id
        from .results.timing import TimingRule
        from .run.prepare import RunOptions, prepare_run
        from .run.runner import QuietReporter, Runner

        registry = load_plugins()
        self.suite = parse_suite(Path(config.getoption("--zoo-suite")), registry,
                                 profile=config.getoption("--zoo-profile"))
        self.trials = expand(self.suite)
        self.timing = TimingRule.from_suite(self.suite.raw)
        cache = Path(os.environ.get("ZOO_BENCH_CACHE_DIR", Path.home() / ".cache" / "zoo-bench"))
        options = RunOptions(data_root=data_root(config), cache_dir=cache,
                             weights_dir=os.environ.get("ZOO_BENCH_WEIGHTS_DIR"))
        run_id = config.getoption("--zoo-run-id") or new_run_id()
        run_dir = Path(config.getoption("--zoo-results-dir")) / self.suite.name / run_id
        self.runner = Runner(prepare_run(self.suite, registry, options, run_dir), QuietReporter())
        self.untimed: dict[str, str] = {}  # trial id -> why it is not a benchmark


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


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    if not config.getoption("--zoo-suite", None):
        return
    from .errors import SuiteError, ZooBenchError, one_line

    try:
        config.stash[SESSION] = ZooSession(config)
    except SuiteError as exc:  # every problem of the suite file, one line each, as `zoo-bench validate` prints them
        raise pytest.UsageError("zoo-bench: " + "\nzoo-bench: ".join(exc.problems)) from None
    except ZooBenchError as exc:
        raise pytest.UsageError(f"zoo-bench: {one_line(exc)}") from None


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    zoo = config.stash.get(SESSION, None)
    if zoo is None or not zoo.untimed:
        return
    terminalreporter.write_sep("-", f"zoo-bench: {len(zoo.untimed)} trial(s) ran but are not benchmarks")
    for trial_id, why in zoo.untimed.items():
        terminalreporter.write_line(f"{trial_id}: {why}")


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
    """The rounds a trial contributes: its epochs after the first, else all its epochs."""
    seconds = row.get("epoch_seconds") or []
    return seconds[1:] if len(seconds) > 1 else list(seconds)


def why_untimed(row: dict[str, Any], rule: Any) -> str | None:
    """Why a finished trial is not a benchmark (see the module docstring), or None; ``rule`` is a
    :class:`zoo_bench.results.timing.TimingRule`."""
    from .results.timing import untimed

    return untimed([row], rule) if benchmark_durations(row) else "a one-shot fit: no epochs to time"


def data_root(config: pytest.Config) -> Path:
    return Path(config.getoption("--zoo-data-root") or os.environ.get("ZOO_BENCH_DATA_ROOT", "data"))
