"""Model selection on validation data: test labels never change a choice; restore_best and patience."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import run_inprocess, write_suite
from zoo_bench.backend import Monitor
from zoo_bench.results.store import to_dataframe
from zoo_bench.results.selection import choose, default_rows

CLASSES = ("alpha", "beta", "gamma")


def _image(rng: np.random.Generator, label: int) -> Image.Image:
    """A 32 px picture whose colour and stripes depend on the class, with noise so it is not trivial."""
    x = rng.normal(110, 45, (32, 32, 3))
    x[:, :, label] += 60
    x[::(label + 2), :, :] += 40
    return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))


def _folder_dataset(root, rotate_test_labels: bool) -> None:
    """train/ and test/ with one folder per class; the test images are the same files either way,
    but with ``rotate_test_labels`` each test image sits in the next class's folder (wrong labels)."""
    rng = np.random.default_rng(7)
    for part, count in (("train", 20), ("test", 12)):
        for label, name in enumerate(CLASSES):
            for i in range(count):
                shown = (label + 1) % len(CLASSES) if (part == "test" and rotate_test_labels) else label
                folder = root / part / CLASSES[shown]
                folder.mkdir(parents=True, exist_ok=True)
                _image(rng, label).save(folder / f"{name}_{i}.png")


SUITE = """
[suite]
name = "sel"
seeds = [0, 1]
[dataset]
source = "folder"
path = "{path}"
val_fraction = 0.25
sizes = [12]
[run]
backends = ["torch"]
backbones = ["mini_cnn"]
batch_size = 8
[select]
search = "default"
metric = "{metric}"
refit = true
[strategies.svm]
C = [0.01, 1.0]
[strategies.logreg]
C = [0.01, 1.0, 100.0]
[strategies.knn]
k = [1, 5]
[strategies.last_layer]
epochs = 4
lr = [1e-3, 1e-2]
restore_best = true
patience = 2
[strategies.last_n]
head_epochs = 2
finetune_epochs = 2
finetune_lr = [1e-4, 1e-3]
restore_best = true
[strategies.fpt]
head_epochs = 2
finetune_epochs = 2
finetune_lr = [1e-3, 1e-2]
restore_best = true
patience = 1
[strategies.full]
epochs = 2
lr = [1e-4, 1e-3]
[strategies.scratch]
epochs = 2
lr = [1e-3, 1e-2]
"""


def _runs_with_and_without_true_test_labels(tmp_path, registry, cache_dir, body: str, name: str):
    """The suite run twice in this process, on the same images, with the test labels right and rotated:
    (corrupt -> rows indexed by trial id, the recorded selection)."""
    runs = {}
    for corrupt in (False, True):
        root = tmp_path / f"data-{name}-{corrupt}"
        _folder_dataset(root, rotate_test_labels=corrupt)
        suite = write_suite(tmp_path, body.format(path=root, metric="val_accuracy"), name=f"{name}-{corrupt}.toml")
        store, _ = run_inprocess(suite, registry, tmp_path / f"{name}-{corrupt}", cache_dir)
        rows = store.rows()
        assert rows and all(r["status"] == "ok" for r in rows), [r["error"] for r in rows if r["status"] != "ok"]
        runs[corrupt] = to_dataframe(rows).set_index("trial_id").sort_index()
        recorded = store.meta()["selection"]
        shutil.rmtree(root)
    return runs, recorded


def test_corrupted_test_labels_change_no_selection_only_the_reported_accuracy(tmp_path, registry, cache_dir,
                                                                           tiny_weights):
    runs, recorded = _runs_with_and_without_true_test_labels(tmp_path, registry, cache_dir, SUITE, "run")
    clean, corrupt = runs[False], runs[True]
    assert set(clean["strategy"]) == {"svm", "logreg", "knn", "last_layer", "last_n", "fpt", "full", "scratch"}
    # everything a selection may read is identical ...
    for column in ("val_accuracy", "val_loss", "val_balanced_accuracy", "best_epoch", "epochs"):
        assert clean[column].equals(corrupt[column]), column
    # ... the test labels were really different ...
    assert not np.allclose(clean["test_accuracy"].astype(float), corrupt["test_accuracy"].astype(float))
    tuned = {"svm": ["C"], "logreg": ["C"], "knn": ["k"], "last_layer": ["lr", "weight_decay"], "last_n": ["finetune_lr"], "fpt": ["finetune_lr"],
             "full": ["lr"], "scratch": ["lr"]}
    assert recorded["tuned"] == tuned and recorded["metric"] == "val_accuracy" and recorded["refit"] is True
    for metric in ("val_loss", "val_balanced_accuracy", "val_accuracy"):
        chosen = {k: choose(v.reset_index(), {"metric": metric, "tuned": tuned}) for k, v in runs.items()}
        # ... and the same configurations are chosen; only the accuracies reported for them differ
        assert chosen[False]["trial_id"].tolist() == chosen[True]["trial_id"].tolist(), metric
    assert len(chosen[False]) == 8 * 2  # a cell per strategy and seed
    assert chosen[False]["test_accuracy"].tolist() != chosen[True]["test_accuracy"].tolist()
    assert (chosen[False]["configs_tried"] == chosen[False]["strategy"].map(
        {"svm": 2, "logreg": 3, "knn": 2, "last_layer": 4, "last_n": 2, "fpt": 2, "full": 2, "scratch": 2})).all()
    # refit: the configuration chosen on validation (by the suite's metric) was retrained on train + validation
    refits = {k: v[v["refit"].fillna(False).astype(bool)] for k, v in runs.items()}
    chosen_by_suite = choose(clean.reset_index()[~clean["refit"].fillna(False).astype(bool).values],
                             {"metric": "val_accuracy", "tuned": tuned})
    assert sorted(refits[False].index) == sorted(refits[True].index) == sorted(
        f"{t}/refit" for t in chosen_by_suite["trial_id"])
    assert (refits[False]["train_images"] == 12 * 3).all() and (refits[False]["val_images"] == 0).all()
    with_refit = choose(clean.reset_index(), {"metric": "val_accuracy", "tuned": tuned, "refit": True})
    assert (with_refit["refit_status"] == "ok").all()
    assert with_refit["test_accuracy"].tolist() == [refits[False].loc[f"{t}/refit", "test_accuracy"]
                                                    for t in with_refit["trial_id"]]


def test_choose_reads_no_test_column_and_breaks_ties_by_loss_then_id():
    base = {"backend": "torch", "backbone": "m", "strategy": "svm", "size_per_class": 8, "seed": 0, "status": "ok",
            "wall_s": 1.0}
    rows = [
        {**base, "trial_id": "b", "params": {"C": 0.1}, "val_accuracy": 0.9, "val_loss": 0.3, "test_accuracy": 0.1},
        {**base, "trial_id": "a", "params": {"C": 1.0}, "val_accuracy": 0.9, "val_loss": 0.3, "test_accuracy": 0.2},
        {**base, "trial_id": "c", "params": {"C": 10.0}, "val_accuracy": 0.9, "val_loss": 0.2, "test_accuracy": 0.3},
        {**base, "trial_id": "d", "params": {"C": 100.0}, "val_accuracy": 0.5, "val_loss": 0.1, "test_accuracy": 1.0},
        {**base, "trial_id": "e", "params": {"C": 1000.0}, "status": "error", "val_accuracy": None,
         "val_loss": None, "test_accuracy": None},
    ]
    selection = {"metric": "val_accuracy", "tuned": {"svm": ["C"]}, "defaults": {"svm": {"C": 1.0}}}
    [best] = choose(to_dataframe(rows), selection).to_dict("records")
    assert best["trial_id"] == "c" and best["chosen"] == {"C": 10.0}  # tie on accuracy: lower loss wins
    assert best["configs_tried"] == 5 and best["configs_ok"] == 4 and best["tuning_time_s"] == 5.0
    rows[2]["val_loss"] = 0.3
    assert choose(to_dataframe(rows), selection)["trial_id"].tolist() == ["a"]  # full tie: first id
    scrambled = [{**r, "test_accuracy": 1.0 - (r["test_accuracy"] or 0)} for r in rows]
    assert choose(to_dataframe(scrambled), selection)["trial_id"].tolist() == ["a"]
    assert choose(to_dataframe(rows), {**selection, "metric": "val_loss"})["trial_id"].tolist() == ["d"]
    assert default_rows(to_dataframe(rows), selection)["trial_id"].tolist() == ["a"]


def test_monitor_best_epoch_patience_and_phases():
    m = Monitor(restore_best=True, patience=2)
    assert m.start_phase() is False  # nothing earlier to keep
    assert m.update(0.5, 1.0) == (True, False)
    assert m.update(0.5, 0.9) == (True, False)  # same accuracy, lower loss: better
    assert m.update(0.5, 0.95) == (False, False)
    assert m.update(0.4, 0.5) == (False, True)  # two epochs without improvement: stop
    assert (m.best_epoch, m.best_accuracy) == (2, 0.5)
    assert m.start_phase() is True  # the next phase must keep its starting weights: an earlier epoch is best
    assert m.update(0.6, 2.0) == (True, False) and m.best_epoch == 5  # epochs counted across phases
    assert Monitor().update(None, None) == (False, False)


def test_restore_best_keeps_the_best_epoch_and_patience_stops(tmp_path, registry, cache_dir, tiny_weights):
    from conftest import TINY_SUITE

    body = TINY_SUITE + """
[strategies.last_layer]
epochs = 12
lr = 0.05
restore_best = true
[strategies.full]
epochs = 10
optimizer = "sgd"
lr = 1e-30
patience = 2
"""
    store, _ = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, cache_dir)
    rows = {r["strategy"]: r for r in store.rows()}
    head = rows["last_layer"]
    scores = [(h["val_accuracy"], -h["val_loss"]) for h in head["history"]]
    assert head["best_epoch"] == 1 + scores.index(max(scores))
    best = head["history"][head["best_epoch"] - 1]
    assert head["val_accuracy"] == best["val_accuracy"]  # the kept weights score what the best epoch scored
    assert head["val_loss"] == pytest.approx(best["val_loss"], rel=1e-5)
    full = rows["full"]
    assert [h["epoch"] for h in full["history"]] == [1, 2, 3]  # weights cannot move at lr 1e-30: stops after 2 stale
    assert full["epochs"] == 3 and full["best_epoch"] == 1
    assert {h["phase"] for h in full["history"]} == {"train"} and full["history"][0]["lr"] == 1e-30


def test_k_fold_selection_reads_no_test_label(tmp_path, registry, cache_dir, tiny_weights):
    """K-fold selection over the size's pool, and the one-SE rule: rotating the test labels changes no fold
    score, no choice and no refit, only the reported accuracies. fpt, on pixels, is chosen on validation."""
    body = SUITE.split("[strategies.last_n]")[0].replace("refit = true", "folds = 3\none_se = true") + (
        "[strategies.fpt]\nhead_epochs = 2\nfinetune_epochs = 1\nfinetune_lr = [1e-3, 1e-2]\n")
    runs, meta = _runs_with_and_without_true_test_labels(tmp_path, registry, cache_dir, body, "kf")
    chosen = {k: choose(v.reset_index(), meta) for k, v in runs.items()}
    clean, corrupt = runs[False], runs[True]
    assert meta["folds"] == 3 and meta["refit"] is True and meta["simpler"]["svm"] == {"C": "low"}
    features = clean[clean["strategy"] != "fpt"][~clean["refit"].fillna(False).astype(bool)[clean["strategy"] != "fpt"]]
    assert features["cv_scores"].map(len).eq(3).all() and features["cv_accuracy"].notna().all()
    assert (features.loc[features["strategy"] == "last_layer", "cv_train_s"] > 0).all()  # head epochs count
    assert clean["cv_scores"].dropna().map(list).equals(corrupt["cv_scores"].dropna().map(list))
    assert clean[clean["strategy"] == "fpt"]["cv_accuracy"].isna().all()  # pixels: no folds unless asked
    assert chosen[False]["trial_id"].tolist() == chosen[True]["trial_id"].tolist()
    assert chosen[False]["test_accuracy"].tolist() != chosen[True]["test_accuracy"].tolist()
    by = dict(zip(chosen[False]["strategy"], chosen[False]["selected_by"]))
    assert by["fpt"] == "val_accuracy" and by["svm"].startswith("cv_accuracy")
    assert (chosen[False]["refit_status"] == "ok").all()
    refits = clean[clean["refit"].fillna(False).astype(bool)]
    assert sorted(refits.index) == sorted(f"{t}/refit" for t in chosen[False]["trial_id"])
    assert (refits["train_images"] == 12 * 3).all()


def test_one_standard_error_rule_on_a_constructed_cell():
    """Fold means 0.90 (C=10), 0.89 (C=1), 0.86 (C=0.1); the best's fold scores have sd 0.04 over 4 folds, so
    SE 0.02: C=1 is within it and simpler (lower C), C=0.1 is not. Without the rule the best mean wins."""
    def row(c, scores, val):
        return {"trial_id": f"b/svm[C={c}]/n=8/seed=0", "backend": "torch", "backbone": "b", "strategy": "svm",
                "params": {"C": c}, "size_per_class": 8, "seed": 0, "status": "ok", "val_accuracy": val,
                "val_loss": None, "cv_scores": scores, "cv_accuracy": float(np.mean(scores)), "wall_s": 1.0,
                "train_time_s": 0.1, "cv_train_s": 0.4, "test_accuracy": 0.5}

    df = pd.DataFrame([row(10.0, [0.86, 0.94, 0.86, 0.94], 0.5), row(1.0, [0.89, 0.89, 0.89, 0.89], 0.9),
                       row(0.1, [0.86, 0.86, 0.86, 0.86], 0.7)])
    base = {"tuned": {"svm": ["C"]}, "folds": 4, "simpler": {"svm": {"C": "low"}}}
    plain = choose(df, base).iloc[0]
    assert plain["params"]["C"] == 10.0 and plain["selected_by"] == "cv_accuracy"
    assert plain["cv_runner_up"] == pytest.approx(0.89) and plain["cv_sd"] == pytest.approx(0.0462, abs=1e-4)
    assert plain["tuning_train_s"] == pytest.approx(3 * 0.5)  # the fits on the folds count as tuning
    one_se = choose(df, {**base, "one_se": True}).iloc[0]
    assert one_se["params"]["C"] == 1.0 and one_se["selected_by"] == "cv_accuracy, one-SE"
    assert one_se["cv_runner_up"] == pytest.approx(0.90)
