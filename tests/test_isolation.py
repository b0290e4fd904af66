"""A trial that kills its process costs that trial only; out-of-memory retries; NaN loss is "diverged"."""
from __future__ import annotations

import pytest

from conftest import TINY_SUITE, run_inprocess, write_suite
from zoo_bench.isolation import describe_exit
from zoo_bench.plugins import load_plugins

CRASH_SUITE = TINY_SUITE.replace('backbones = ["mini_cnn"]', 'backbones = ["tiny_cnn"]') + """
[strategies.crash]
how = ["segfault", "none", "abort", "exit"]
"""


@pytest.fixture()
def fault_registry():
    import fault_strategies

    return load_plugins(extra=[fault_strategies])


def test_isolated_native_crashes_become_error_rows_and_the_suite_goes_on(tmp_path, fault_registry, cache_dir):
    store, reporter = run_inprocess(write_suite(tmp_path, CRASH_SUITE), fault_registry, tmp_path, cache_dir,
                                    isolated=True)
    rows = {r["params"]["how"]: r for r in store.rows()}
    assert rows["none"]["status"] == "ok" and rows["none"]["test_accuracy"] is not None
    assert "killed by signal 11 (SIGSEGV)" in rows["segfault"]["error"]
    assert "killed by signal 6 (SIGABRT)" in rows["abort"]["error"]
    assert "exited with code 3" in rows["exit"]["error"]
    assert all(rows[k]["status"] == "error" for k in ("segfault", "abort", "exit"))
    assert "SIGSEGV" in (store.run_dir / "errors.log").read_text()
    assert len(reporter.epochs) >= 1  # epochs of the worker's trial reached the parent's reporter


def test_describe_exit():
    assert describe_exit(-9) == "killed by signal 9 (SIGKILL)"
    assert describe_exit(2) == "exited with code 2"


OOM_SUITE = TINY_SUITE.replace('backbones = ["mini_cnn"]', 'backbones = ["tiny_cnn"]').replace(
    "batch_size = 8", "batch_size = 16") + """
[strategies.oom_above]
fits = [4, 1]
"""


def test_out_of_memory_halves_the_batch_down_to_the_floor(tmp_path, fault_registry, cache_dir):
    store, reporter = run_inprocess(write_suite(tmp_path, OOM_SUITE), fault_registry, tmp_path, cache_dir)
    rows = {r["params"]["fits"]: r for r in store.rows()}
    assert rows[4]["status"] == "ok" and rows[4]["batch_size"] == 4
    assert [text for _, text in reporter.notes][:2] == ["out of memory: retrying with batch size 8",
                                                        "out of memory: retrying with batch size 4"]
    assert rows[1]["status"] == "error"
    assert rows[1]["error"] == "out of memory at batch size 2 (floor 2: run.min_batch_size)"


DIVERGE_SUITE = TINY_SUITE + """
[strategies.last_layer]
epochs = 4
optimizer = "sgd"
lr = [1e30, 1e-3]
"""


def test_a_nan_or_infinite_loss_ends_the_trial_as_diverged_and_resume_keeps_it(tmp_path, registry, cache_dir,
                                                                              tiny_weights):
    suite = write_suite(tmp_path, DIVERGE_SUITE)
    store, _ = run_inprocess(suite, registry, tmp_path, cache_dir)
    rows = {r["params"]["lr"]: r for r in store.rows()}
    bad = rows[1e30]
    assert bad["status"] == "diverged" and bad["diverged_epoch"] == 1
    assert "loss became" in bad["error"] and "in epoch 1" in bad["error"]
    assert rows[1e-3]["status"] == "ok"
    _, reporter = run_inprocess(suite, registry, tmp_path, cache_dir)  # resume: nothing to redo
    assert reporter.done == reporter.total == 2 and reporter.finished == []
