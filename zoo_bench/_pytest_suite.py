"""The test module ``pytest --zoo-suite`` collects: one test per trial of the suite, a benchmark where timed."""
from __future__ import annotations

import pytest

from zoo_bench.pytest_plugin import SESSION, EpochClock, benchmark_durations, why_untimed

EXTRA_FIELDS = ("test_accuracy", "val_accuracy", "epoch_time_s", "first_epoch_s", "feature_time_s",
                "train_images_per_s", "peak_memory_mb", "trainable_params", "total_params", "skipped_images",
                "device_name", "precision", "wall_s", "status", "error")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "zoo_trial" in metafunc.fixturenames:
        trials = metafunc.config.stash[SESSION].trials
        metafunc.parametrize("zoo_trial", trials, ids=[t.id for t in trials])


@pytest.fixture(scope="session")
def zoo_session(pytestconfig):
    zoo = pytestconfig.stash[SESSION]
    yield zoo
    zoo.runner.store.write_table()


def test_trial(zoo_trial, zoo_session, request):
    row = zoo_session.runner.run_one(zoo_trial)
    extra = {"trial_id": zoo_trial.id, **{k: row.get(k) for k in EXTRA_FIELDS}}
    for key, value in extra.items():
        request.node.user_properties.append((key, value))  # in --junitxml too, timed or not
    if row["status"] == "ok":
        why = why_untimed(row, zoo_session.timing)
        if why:
            zoo_session.untimed[zoo_trial.id] = why
        else:
            benchmark = request.getfixturevalue("benchmark")
            benchmark.extra_info.update(extra)
            durations = benchmark_durations(row)
            benchmark._timer = EpochClock(durations)  # the timings are the trial's own epoch times
            benchmark.pedantic(lambda: None, rounds=len(durations), iterations=1, warmup_rounds=0)
    assert row["status"] == "ok", row["error"]
