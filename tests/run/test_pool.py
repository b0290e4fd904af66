"""The local pool: units in parallel worker processes, the same results as in this process, crashes contained."""
from __future__ import annotations

from datetime import datetime

import pytest

from conftest import lite0_suite, run_inprocess, write_suite
from zoo_bench.plugins import load_plugins


@pytest.fixture()
def fault_registry():
    import fault_strategies

    return load_plugins(extra=[fault_strategies])


def spans(rows):
    """(start, end) of each row's trial, in seconds since the epoch."""
    out = []
    for r in rows:
        end = datetime.fromisoformat(r["finished_at"]).timestamp()
        out.append((end - r["wall_s"], end))
    return out


SLEEP = lite0_suite("sleepy", "[strategies.sleep]\nseconds = 1.5", seeds=(0, 1)).replace(
    'backbones = ["efficientnet_lite0"]', 'backbones = ["efficientnet_lite0", "tiny_cnn"]')


def test_two_workers_run_two_units_at_the_same_time(tmp_path, fault_registry, cache_dir):
    store, reporter = run_inprocess(write_suite(tmp_path, SLEEP), fault_registry, tmp_path, cache_dir, workers=2,
                                    threads=1)
    rows = store.rows()
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    assert {r["worker_threads"] for r in rows} == {1}
    by_unit = {b: spans([r for r in rows if r["backbone"] == b]) for b in ("efficientnet_lite0", "tiny_cnn")}
    overlaps = [min(e1, e2) - max(s1, s2) for s1, e1 in by_unit["efficientnet_lite0"] for s2, e2 in by_unit["tiny_cnn"]]
    assert max(overlaps) > 1.0  # trials of the two units ran side by side, not one after the other
    assert len(reporter.finished) == 4


REAL = lite0_suite("same", "[strategies.svm]\n[strategies.last_layer]\nepochs = 3\n"
                           "[strategies.scratch]\nbackbones = [\"tiny_cnn\"]\nepochs = 2", seeds=(0, 1)).replace(
    'backbones = ["efficientnet_lite0"]', 'backbones = ["efficientnet_lite0", "tiny_cnn"]').replace(
    "[strategies.svm]", "[strategies.svm]\nbackbones = [\"efficientnet_lite0\"]").replace(
    "[strategies.last_layer]", "[strategies.last_layer]\nbackbones = [\"efficientnet_lite0\"]")


def test_a_pool_gives_the_same_results_as_this_process(tmp_path, registry, cache_dir):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    here, _ = run_inprocess(write_suite(tmp_path / "a", REAL), registry, tmp_path / "a", cache_dir)
    pool, _ = run_inprocess(write_suite(tmp_path / "b", REAL), registry, tmp_path / "b", cache_dir, workers=2,
                            threads=1)
    a = {r["trial_id"]: r for r in here.rows()}
    b = {r["trial_id"]: r for r in pool.rows()}
    assert a.keys() == b.keys() and len(a) == 6
    for trial_id in a:
        assert a[trial_id]["status"] == b[trial_id]["status"] == "ok", trial_id
        assert a[trial_id]["test_accuracy"] == b[trial_id]["test_accuracy"], trial_id
        assert a[trial_id]["confusion"] == b[trial_id]["confusion"], trial_id


CRASHY = lite0_suite("crashy", "[strategies.crash]\nhow = [\"segfault\", \"none\"]\nbackbones = [\"tiny_cnn\"]\n"
                               "[strategies.sleep]\nseconds = 0.1\nbackbones = [\"efficientnet_lite0\"]",
                     seeds=(0, 1)).replace('backbones = ["efficientnet_lite0"]\nimage_size',
                                           'backbones = ["efficientnet_lite0", "tiny_cnn"]\nimage_size')


def test_a_crash_in_a_pool_fails_its_trial_and_the_unit_goes_on(tmp_path, fault_registry, cache_dir):
    store, _ = run_inprocess(write_suite(tmp_path, CRASHY), fault_registry, tmp_path, cache_dir, workers=2)
    rows = store.rows()
    assert len(rows) == 6, [r["trial_id"] for r in rows]
    crashed = [r for r in rows if r["strategy"] == "crash" and r["params"]["how"] == "segfault"]
    assert len(crashed) == 2 and all("killed by signal 11 (SIGSEGV)" in r["error"] for r in crashed)
    others = [r for r in rows if r not in crashed]
    assert all(r["status"] == "ok" for r in others), [r["error"] for r in others]
    assert (store.run_dir / "errors.log").read_text().count("SIGSEGV") == 2


def test_a_single_backbone_suite_is_split_across_idle_workers(tmp_path, fault_registry, cache_dir):
    one = lite0_suite("one", "[strategies.sleep]\nseconds = 1.5", seeds=(0, 1, 2, 3))
    store, _ = run_inprocess(write_suite(tmp_path, one), fault_registry, tmp_path, cache_dir, workers=2, threads=1)
    rows = sorted(store.rows(), key=lambda r: r["seed"])
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    first, second = spans(rows[:2]), spans(rows[2:])  # the unit's halves: seeds 0-1 and 2-3
    assert max(min(e1, e2) - max(s1, s2) for s1, e1 in first for s2, e2 in second) > 0.5


def test_units_split_for_idle_workers_but_never_inside_a_head_sweep(tmp_path, registry):
    from zoo_bench.run.executors import make_units
    from zoo_bench.plan.grid import expand
    from zoo_bench.plan.suite import parse_suite
    from zoo_bench.run.sweeps import group_sweeps, strategy_sweep_params

    body = "[strategies.svm]\n[strategies.last_layer]\nlr = [0.001, 0.01, 0.1]"
    suite = parse_suite(write_suite(tmp_path, lite0_suite("split", body, seeds=(0, 1))), registry)
    trials = expand(suite)
    ordered, sweeps = group_sweeps(trials, strategy_sweep_params(registry))
    assert [len(u.trials) for u in make_units(ordered, sweeps, 1)] == [8]
    units = make_units(ordered, sweeps, 16)
    assert len(units) == 4  # per seed: the svm trial, and the sweep of 3 heads kept whole
    assert sorted(t.id for u in units for t in u.trials) == sorted(t.id for t in trials)
    for unit in units:
        for trial in unit.trials:
            if trial.id in sweeps:  # every member of its sweep runs in the same unit
                members = {t.id for t in trials if t.seed == trial.seed and t.strategy == trial.strategy}
                assert members <= {t.id for t in unit.trials}
                assert unit.sweeps[trial.id] == sweeps[trial.id]
    assert sorted(len(u.trials) for u in make_units(ordered, sweeps, 3)) == [2, 3, 3]  # the most trials split first


def test_a_worker_that_cannot_see_the_data_fails_its_unit_in_one_line(tmp_path, registry):
    from conftest import QuietReporter
    from zoo_bench.run.executors import PoolExecutor
    from zoo_bench.run.prepare import RunOptions, prepare_run
    from zoo_bench.run.runner import Runner
    from zoo_bench.plan.suite import parse_suite

    suite = parse_suite(write_suite(tmp_path, lite0_suite("blind", "[strategies.svm]")), registry)
    options = RunOptions(data_root=tmp_path, cache_dir=tmp_path / "cache", device="cpu")
    prepared = prepare_run(suite, registry, options, tmp_path / "results" / "blind" / "r")
    (tmp_path / "cache" / "synthetic").rename(tmp_path / "elsewhere")  # the data is listed, then gone
    reporter = QuietReporter()
    pool = PoolExecutor.for_run(suite, registry, options, prepared.listing, prepared.store.run_dir, reporter)
    Runner(prepared, reporter, pool).run()
    (row,) = prepared.store.rows()
    missing = prepared.listing.train[0][0]
    assert row["error"] == (f"the worker process for torch/efficientnet_lite0 could not start: node "
                            f"{__import__('socket').gethostname()} cannot see the data: {missing} does not exist "
                            "(every node needs the data set, weights and results folders at the driver's paths)")
