"""Head sweeps in runs: grouping, and each trial's row the same whether its head trained alone or in a sweep."""
import pytest

from conftest import TINY_SUITE, lite0_suite, run_inprocess, write_suite
from zoo_bench.plan.trial import Trial
from zoo_bench.run.sweeps import HeadSweeps, group_sweeps, params_key

HEAD = ("lr", "weight_decay", "dropout")


def trial(strategy: str, lr: float, seed: int = 0, epochs: int = 3) -> Trial:
    return Trial("torch", "b", strategy, (("epochs", epochs), ("lr", lr)), 8, seed)


def test_group_sweeps_runs_each_sweep_back_to_back_and_lists_own_params_first():
    trials = [trial("last_layer", 1e-3, seed=0), trial("last_layer", 1e-3, seed=1), trial("svm", 1.0),
              trial("last_layer", 1e-2, seed=0), trial("last_layer", 1e-2, seed=1), trial("last_layer", 1e-2, epochs=5)]
    ordered, sweeps = group_sweeps(trials, {"last_layer": HEAD})
    assert [t.id for t in ordered] == [t.id for t in [trials[0], trials[3], trials[1], trials[4], trials[2], trials[5]]]
    assert [q["lr"] for q in sweeps[trials[0].id]] == [1e-3, 1e-2]
    assert [q["lr"] for q in sweeps[trials[3].id]] == [1e-2, 1e-3]
    assert trials[2].id not in sweeps and trials[5].id not in sweeps  # svm; a different epoch count stands alone


def test_head_sweeps_hold_several_sweeps_hand_each_result_out_once_and_drop_the_oldest():
    cache = HeadSweeps()
    cache.put("a", {params_key({"lr": 1}): "one", params_key({"lr": 2}): "two"})
    assert cache.take("a", {"lr": 1}) == "one" and cache.take("a", {"lr": 1}) is None
    cache.put("b", {params_key({"lr": 3}): "three"})  # a fold's sweep beside the cell's own
    assert cache.take("a", {"lr": 2}) == "two" and cache.take("b", {"lr": 3}) == "three"
    for i in range(HeadSweeps.LIMIT + 1):
        cache.put(("k", i), {params_key({"lr": i}): i})
    assert cache.take(("k", 0), {"lr": 0}) is None and cache.take(("k", 1), {"lr": 1}) == 1


HEADS = """
[strategies.last_layer]
epochs = 4
lr = [0.0001, 0.001, 0.01]
weight_decay = [0.0, 0.0001]
restore_best = true
patience = 2
"""
SUITES = {"mini_cnn": TINY_SUITE + HEADS, "lite0": lite0_suite("tiny", HEADS)}  # workers cannot see mini_cnn's weights

SAME = ("status", "test_accuracy", "val_accuracy", "best_epoch", "epochs", "confusion")


@pytest.mark.parametrize("backbone, isolated", [("mini_cnn", False), ("lite0", True)])
def test_a_swept_head_equals_its_solo_fit(backbone, isolated, tmp_path, registry, cache_dir, tiny_weights):
    (tmp_path / "sweep").mkdir()
    sweep = SUITES[backbone]
    store, _ = run_inprocess(write_suite(tmp_path / "sweep", sweep), registry, tmp_path / "sweep", cache_dir,
                             isolated=isolated)
    rows = {r["trial_id"]: r for r in store.rows()}
    assert len(rows) == 6 and {r["sweep_heads"] for r in rows.values()} == {6}
    assert sum(r["train_time_s"] for r in rows.values()) > 0
    for trial_id, row in list(rows.items())[::5]:  # the sweep's first trial and its last, each alone
        lr = row["params"]["lr"]
        wd = row["params"]["weight_decay"]
        solo_suite = sweep.replace("[0.0001, 0.001, 0.01]", repr(lr)).replace("[0.0, 0.0001]", repr(wd))
        solo_dir = tmp_path / f"solo{lr}{wd}"
        solo_dir.mkdir()
        solo, _ = run_inprocess(write_suite(solo_dir, solo_suite), registry, solo_dir, cache_dir)
        [alone] = solo.rows()
        assert alone["trial_id"] == trial_id and alone["sweep_heads"] == 1
        for key in SAME:
            assert alone[key] == row[key], key
        for field in ("train_loss", "val_loss", "val_accuracy"):  # the training record: bit for bit
            assert [h[field] for h in alone["history"]] == [h[field] for h in row["history"]], field
        # the final passes run the finished head outside the sweep, where BLAS may round a last bit differently
        for field in ("test_loss", "val_loss"):
            assert alone[field] == pytest.approx(row[field], rel=1e-6), field


def test_keras_heads_still_train_alone(tmp_path, registry, cache_dir):
    pytest.importorskip("keras")
    body = lite0_suite("k", "[strategies.last_layer]\nepochs = 2\nlr = [0.001, 0.01]", backend="keras")
    store, _ = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, cache_dir)
    rows = store.rows()
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    assert {r["sweep_heads"] for r in rows} == {None}
