"""A trial that kills its process costs that trial only; out-of-memory retries; NaN loss is "diverged"."""
from __future__ import annotations

import pytest

from conftest import TINY_SUITE, run_inprocess, write_suite
from zoo_bench.run.executors import describe_exit
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
    assert rows[1]["error"] == ("out of memory at batch size 2 (floor 2: run.min_batch_size): OutOfMemoryError: "
                                "CUDA out of memory. Tried to allocate at batch 2")


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


def test_a_worker_that_cannot_start_fails_its_backbone_at_once_with_the_cause(tmp_path, fault_registry, cache_dir):
    from conftest import QuietReporter
    from zoo_bench.run.executors import PoolExecutor, WorkerSetup, make_units
    from zoo_bench.plan.grid import expand
    from zoo_bench.run.prepare import RunOptions, list_dataset
    from zoo_bench.plan.suite import parse_suite

    suite = parse_suite(write_suite(tmp_path, CRASH_SUITE), fault_registry)
    options = RunOptions(data_root=tmp_path, cache_dir=cache_dir, device="cpu")
    setup = WorkerSetup(suite, options, list_dataset(suite, fault_registry, options),
                        tmp_path, extra_plugins=("no_such_plugin_module_zb",))
    pool = PoolExecutor(setup, QuietReporter())
    trials = expand(suite)[:2]
    for unit in make_units([trials[0]], {}) + make_units([trials[1]], {}):  # the same backbone twice
        pool.submit(unit)
    results = list(pool.results())
    pool.close()
    first, second = (r.row for r in results)
    expected = ("the worker process for torch/tiny_cnn could not start: "
                "ModuleNotFoundError: No module named 'no_such_plugin_module_zb'")
    assert first["error"] == second["error"] == expected
    assert second["wall_s"] == 0.0  # not started again
    assert "Traceback" in results[0].traceback and results[1].traceback is None  # errors.log gets it once


def test_diverged_epoch_counts_the_head_phase_too(tmp_path, registry, cache_dir, tiny_weights):
    body = TINY_SUITE + """
[strategies.last_n]
head_epochs = 2
finetune_epochs = 2
finetune_optimizer = "sgd"
finetune_lr = 1e30
"""
    store, _ = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, cache_dir)
    [row] = store.rows()
    assert row["status"] == "diverged" and row["diverged_epoch"] == 3


def test_a_failed_base_build_is_not_cached_as_a_base():
    from types import SimpleNamespace

    from zoo_bench.context import FeatureCache

    calls = []

    def build_base(spec, pretrained, image_size):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory")
        return "base"

    backend = SimpleNamespace(name="b", build_base=build_base)
    spec = SimpleNamespace(name="s", weights="w")
    cache = FeatureCache()
    with pytest.raises(RuntimeError):
        cache.frozen_base(backend, spec, 32)
    assert cache.frozen_base(backend, spec, 32) == "base"


def test_plots_and_report_of_a_run_where_everything_diverged(tmp_path):
    from zoo_bench.show.document import write_report
    from zoo_bench.show.plots import plot_run
    from zoo_bench.results.store import to_dataframe

    df = to_dataframe([{"trial_id": "t/b/last_layer/n=4/seed=0", "backend": "torch", "backbone": "b",
                        "strategy": "last_layer", "params": {}, "size_per_class": 4, "seed": 0,
                        "status": "diverged", "error": "loss became nan in epoch 1", "diverged_epoch": 1}])
    assert plot_run(df, tmp_path / "plots", "t") == []
    text = write_report(df, {"suite_name": "t"}, tmp_path / "r.md", "md").read_text()
    assert "1 diverged" in text
