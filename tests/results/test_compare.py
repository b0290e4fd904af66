"""Baselines and compare: each exit code with real run folders, and the confidence-interval rule."""
import json
import shutil

import pytest

from conftest import lite0_suite, run_inprocess, write_suite
from zoo_bench.cli import main
from zoo_bench.results.compare import compare, overlap_rule
from zoo_bench.plan.gates import Gate
from zoo_bench.plugins import load_plugins
from zoo_bench.results.stats import Estimate, estimate

SUITE = lite0_suite("cmp", "[strategies.svm]", seeds=(0, 1, 2), train_per_class=12, test_per_class=10)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cmp")
    store, _ = run_inprocess(write_suite(tmp, SUITE), load_plugins(), tmp, tmp / "cache")
    assert all(r["status"] == "ok" for r in store.rows())
    return store.run_dir


def edited_copy(run_dir, tmp_path, edit):
    """A copy of a real run folder with its rows changed by ``edit(rows) -> rows``."""
    copy = tmp_path / "current"
    shutil.copytree(run_dir, copy)
    rows = [json.loads(line) for line in (copy / "trials.jsonl").read_text().splitlines()]
    (copy / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in edit(rows)))
    return copy


def test_identical_run_passes_against_its_saved_baseline(run_dir, tmp_path, capsys):
    assert main(["baseline", "save", str(run_dir), "--name", "tiny", "--dir", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "tiny.json").read_text())
    assert len(saved["trials"]) == 3 and saved["machine"]["cpu_count"] and saved["suite"]["suite"]["name"] == "cmp"
    assert main(["compare", str(tmp_path / "tiny.json"), str(run_dir)]) == 0
    assert "pass" in capsys.readouterr().out


def test_accuracy_drop_beyond_threshold_is_a_regression(run_dir, tmp_path, capsys):
    def drop(rows):
        return [dict(r, test_accuracy=0.3) for r in rows]

    current = edited_copy(run_dir, tmp_path, drop)
    assert main(["compare", str(run_dir), str(current), "--format", "json"]) == 1
    result = json.loads(capsys.readouterr().out)
    [acc] = [line for line in result["lines"] if line["metric"] == "accuracy"]
    assert acc["status"] == "fail" and acc["delta"] < -1


def test_missing_baseline_is_exit_2(run_dir, tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nope.json"), str(run_dir)]) == 2
    assert "no such baseline" in capsys.readouterr().err


def test_errored_trial_is_exit_3_even_with_a_regression(run_dir, tmp_path):
    def break_one(rows):
        rows[0] = dict(rows[0], status="error", error="RuntimeError: boom", test_accuracy=None)
        return [dict(r, test_accuracy=0.1) if r["status"] == "ok" else r for r in rows]

    assert main(["compare", str(run_dir), str(edited_copy(run_dir, tmp_path, break_one))]) == 3


def test_missing_trials_are_exit_3_and_new_trials_are_reported_not_failed(run_dir, tmp_path, capsys):
    def rename(rows):
        return [dict(r, trial_id=r["trial_id"].replace("svm[C=1.0]", "svm[C=2.0]"), params={**r["params"], "C": 2.0})
                for r in rows]

    current = edited_copy(run_dir, tmp_path, rename)
    assert main(["compare", str(run_dir), str(current), "--format", "json"]) == 3
    statuses = {line["status"] for line in json.loads(capsys.readouterr().out)["lines"]}
    assert {"missing", "new"} <= statuses and "fail" not in statuses


def test_timing_gate_is_skipped_with_a_warning_on_another_machine(run_dir, tmp_path, capsys):
    current = edited_copy(run_dir, tmp_path, lambda rows: rows)
    meta = json.loads((current / "run.json").read_text())
    meta["cpu_count"] = 64
    (current / "run.json").write_text(json.dumps(meta))
    assert main(["compare", str(run_dir), str(current), "--fail", "epoch_time:+25%", "--fail", "accuracy:-1pt"]) == 0
    assert "timing gate skipped: the machines differ" in capsys.readouterr().err


def test_a_name_another_plugin_provides_in_the_current_run_or_a_resume_of_it_is_one_warning_line(
        run_dir, tmp_path, capsys):
    assert main(["baseline", "save", str(run_dir), "--name", "before", "--dir", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "before.json").read_text())["providers"]["strategy"]["svm"].startswith("'strategies' (zoo-bench ")
    current = edited_copy(run_dir, tmp_path, lambda rows: rows)
    meta = json.loads((current / "run.json").read_text())
    theirs = json.loads(json.dumps(meta["providers"]))
    theirs["strategy"]["svm"] = "'fast_svm' (fast-svm 0.2)"
    meta["resumes"] = [*meta.get("resumes", []), {"providers": theirs}]  # the last start is what it now ran with
    (current / "run.json").write_text(json.dumps(meta))
    for baseline in (run_dir, tmp_path / "before.json"):
        assert main(["compare", str(baseline), str(current)]) == 0
        warnings = [line for line in capsys.readouterr().err.splitlines() if "provided by" in line]
        assert warnings == [f"warning: {current}: strategy 'svm' was provided by plugin {meta['providers']['strategy']['svm']} "
                            f"in {baseline}; now by plugin 'fast_svm' (fast-svm 0.2): its numbers may not compare"]


def test_bad_gate_is_a_usage_error(run_dir, capsys):
    assert main(["compare", str(run_dir), str(run_dir), "--fail", "accuracy:-1%"]) == 2
    assert "accuracy limits are in points" in capsys.readouterr().err


def test_overlap_rule():
    gate = Gate.parse("accuracy:-1pt")
    assert gate.limit == -1.0
    base = estimate([0.95, 0.97, 0.96])
    noisy = estimate([0.90, 0.97, 0.91])  # mean 2.7 points lower, but the intervals overlap
    assert base.overlaps(noisy) and not overlap_rule(base, noisy, gate.limit)
    clear = estimate([0.90, 0.905, 0.91])
    assert not base.overlaps(clear) and overlap_rule(base, clear, gate.limit)
    assert overlap_rule(Estimate(0.96, None, 1), Estimate(0.94, None, 1), gate.limit)  # one seed: threshold only
    assert not overlap_rule(Estimate(0.96, None, 1), Estimate(0.955, None, 1), gate.limit)


def test_student_t_interval_and_single_seed():
    e = estimate([1.0, 2.0, 3.0])
    assert e.n == 3 and abs(e.half_width - 2.4841) < 1e-3  # t(0.975, 2) * 1 / sqrt(3)
    assert estimate([0.5]).half_width is None


def test_rows_written_with_older_parameter_names_match_todays_configuration():
    from zoo_bench.results.compare import Side, compare
    from zoo_bench.plugins import load_plugins

    strategies = load_plugins().strategies
    old_params = {"n": 1, "epochs": 3, "lr": 1e-4, "optimizer": "adam", "head_epochs": 5, "head_lr": 1e-3,
                  "augment": True, "hidden": [256], "dropout": 0.5}
    new_params = {k: s.default for k, s in strategies["last_n"].param_specs().items()}
    row = {"backend": "torch", "backbone": "m", "strategy": "last_n", "size_per_class": 8, "status": "ok",
           "test_accuracy": 0.9, "epoch_time_s": 1.0}
    base = Side("old", [dict(row, trial_id=f"torch/m/last_n[old]/n=8/seed={s}", params=old_params, seed=s)
                        for s in (0, 1)], {})
    cur = Side("new", [dict(row, trial_id=f"torch/m/last_n[new]/n=8/seed={s}", params=new_params, seed=s)
                       for s in (0, 1)], {})
    result = compare(base, cur, [], strategies)
    assert result.exit_code == 0 and {line.status for line in result.lines} == {"info"}
    assert len({line.config for line in result.lines}) == 1
    changed = Side("new", [dict(r, params={**new_params, "finetune_lr": 1e-3}) for r in cur.rows], {})
    assert compare(base, changed, [], strategies).exit_code == 3  # a different configuration: baseline's is missing


def test_tuned_numbers_are_compared_and_gated():
    from zoo_bench.results.compare import Side, compare
    from zoo_bench.plan.gates import Gate

    selection = {"metric": "val_accuracy", "tuned": {"svm": ["C"]}, "defaults": {"svm": {"C": 1.0}}}

    def side(accuracies):
        rows = []
        for seed in (0, 1, 2):
            for c, (val, test) in accuracies.items():
                rows.append({"trial_id": f"torch/m/svm[C={c}]/n=8/seed={seed}", "backend": "torch", "backbone": "m",
                             "strategy": "svm", "params": {"C": c}, "size_per_class": 8, "seed": seed,
                             "status": "ok", "val_accuracy": val, "val_loss": None,
                             "test_accuracy": test + seed * 0.001, "wall_s": 1.0})
        return Side("s", rows, {}, {}, selection)

    base = side({1.0: (0.8, 0.80), 10.0: (0.9, 0.95)})
    worse = side({1.0: (0.8, 0.80), 10.0: (0.9, 0.85)})  # the chosen configuration's test accuracy fell
    result = compare(base, worse, [Gate.parse("accuracy:-1pt")])
    tuned = [line for line in result.lines if line.config.startswith("tuned:")]
    assert [(line.config, line.status) for line in tuned if line.metric == "accuracy"] == [
        ("tuned:torch/m/svm/n=8", "fail")]
    assert result.exit_code == 1


def test_gates_with_a_pattern_judge_only_the_configurations_they_match():
    from zoo_bench.results.compare import Side, compare

    def side(accuracy):
        return Side("s", [{"trial_id": f"torch/m/{name}/n=8/seed=0", "backend": "torch", "backbone": "m",
                           "strategy": name, "params": None, "size_per_class": 8, "seed": 0, "status": "ok",
                           "test_accuracy": acc, "epoch_time_s": 1.0} for name, acc in accuracy.items()], {}, {})

    base = side({"svm": 0.90, "full": 0.90, "scratch": 0.90})
    # svm drops 2 points (limit 1: fail), full drops 2 (limit 3: pass), scratch drops 30 (no gate: info)
    current = side({"svm": 0.88, "full": 0.88, "scratch": 0.60})
    gates = [Gate.parse("accuracy:-1pt@*/svm*"), Gate.parse("accuracy:-3pt@*/full*")]
    result = compare(base, current, gates)
    status = {line.config.split("/")[2]: (line.status, line.note.split("; ")[0]) for line in result.lines if line.metric == "accuracy"}
    assert status == {"svm": ("fail", "gate accuracy:-1pt"), "full": ("pass", "gate accuracy:-3pt"),
                      "scratch": ("info", "")}
    assert result.exit_code == 1
    assert compare(base, side({"svm": 0.895, "full": 0.88, "scratch": 0.1}), gates).exit_code == 0
    with pytest.raises(Exception, match="PATTERN"):
        Gate.parse("accuracy:-1pt@")


def constructed_side(correct_by_seed, keys, keep_correctness=True):
    """A side whose trials' per-image correctness is given, stored as a baseline stores it."""
    import pandas as pd

    from zoo_bench.results.compare import Side
    from zoo_bench.results.correctness import Correctness, encode

    images, rows = {}, []
    for seed, correct in enumerate(correct_by_seed):
        image_set, sorted_keys, entry = encode(pd.Series(correct, index=keys))
        images[image_set] = sorted_keys
        rows.append({"trial_id": f"torch/m/svm/n=8/seed={seed}", "backend": "torch", "backbone": "m", "strategy": "svm",
                     "params": None, "size_per_class": 8, "seed": seed, "status": "ok",
                     "test_accuracy": float(correct.mean()), **({"test_correct": entry} if keep_correctness else {})})
    return Side("s", rows, {}, {}, correctness=Correctness(images=images))


def test_the_paired_gate_catches_a_planted_drop_and_not_an_equal_drop_from_noise():
    import numpy as np

    rng = np.random.default_rng(0)
    keys = [f"{'cat' if i % 2 else 'dog'}/{i}.jpg" for i in range(500)]
    base = [rng.random(500) < 0.85 for _ in range(3)]
    planted, noisy = [], []
    for correct in base:
        right, wrong = np.flatnonzero(correct), np.flatnonzero(~correct)
        down = correct.copy()
        down[rng.choice(right, 10, replace=False)] = False  # 10 of 500 images lost: -2 points, every seed
        planted.append(down)
        shaken = correct.copy()
        shaken[rng.choice(right, 60, replace=False)] = False  # 60 lost and 50 gained: also -2 points
        shaken[rng.choice(wrong, 50, replace=False)] = True
        noisy.append(shaken)
    gate = [Gate.parse("accuracy:-1pt")]
    caught = compare(constructed_side(base, keys), constructed_side(planted, keys), gate)
    [line] = caught.lines
    assert line.status == "fail" and caught.exit_code == 1 and line.delta == pytest.approx(-2.0)
    assert line.note.startswith("paired -2.00 pt [") and line.note.endswith("3 seeds x 500 images"), line.note
    missed = compare(constructed_side(base, keys), constructed_side(noisy, keys), gate)
    [line] = missed.lines
    assert line.status == "pass" and missed.exit_code == 0 and line.delta == pytest.approx(-2.0)
    assert float(line.note.split(", p ")[1].split(",")[0]) > 0.05, line.note
    # a baseline saved before correctness was kept gates as before, on the intervals over seeds, which
    # cannot separate the planted drop from the seeds' spread
    old = compare(constructed_side(base, keys, keep_correctness=False), constructed_side(planted, keys), gate)
    assert [(line.status, line.note) for line in old.lines] == [
        ("pass", "seed intervals, not paired: a side keeps no per-image correctness (a baseline saved before it was kept)")]


def test_a_saved_baseline_keeps_which_images_each_trial_got_right_and_compare_pairs_on_them(run_dir, tmp_path, capsys):
    assert main(["baseline", "save", str(run_dir), "--name", "paired", "--dir", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "paired.json").read_text())
    [keys] = saved["test_images"].values()
    assert len(keys) == 20 and all(len(t["test_correct"]["bits"]) == 4 for t in saved["trials"])  # 20 bits: 3 bytes
    assert main(["compare", str(tmp_path / "paired.json"), str(run_dir), "--format", "json"]) == 0
    [line] = [line for line in json.loads(capsys.readouterr().out)["lines"] if line["metric"] == "accuracy"]
    assert line["status"] == "pass" and line["note"] == "paired +0.00 pt [+0.00, +0.00], p 1, 3 seeds x 20 images"


def test_a_baseline_saved_before_correctness_and_epochs_were_kept_still_loads_and_gates(capsys):
    """The committed CI baseline as it was saved before this version against today's: same accuracies."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    old, new = repo / "tests" / "fixtures" / "ci_baseline_before_correctness.json", repo / "results" / "baselines" / "ci.json"
    assert "test_images" not in json.loads(old.read_text())
    assert main(["compare", str(old), str(new), "--fail", "accuracy:-1pt", "--fail", "epoch_time:+25%",
                 "--format", "json"]) == 0
    lines = json.loads(capsys.readouterr().out)["lines"]
    accuracy = [line for line in lines if line["metric"] == "accuracy"]
    assert len(accuracy) == 6 and all(line["status"] == "pass" and line["delta"] == 0 for line in accuracy)
    assert {line["note"] for line in accuracy} == {
        "seed intervals, not paired: a side keeps no per-image correctness (a baseline saved before it was kept)"}
    timing = {line["config"].split("/")[2].split("[")[0] + "/" + line["config"].split("/")[-1]: line
              for line in lines if line["metric"] == "epoch_time"}
    assert timing["svm/n=20"]["note"] == "not gated: a one-shot fit: no epochs to time"
    assert timing["last_layer/n=50"]["status"] == "skipped"  # millisecond head epochs: under the floor
    assert "(no spread recorded)" not in timing["scratch/n=50"]["note"]  # today's side has its epochs
