"""Paired evidence and the recommendation on constructed run folders with known answers, as data, as
text, through `show --versus`, `report` and the plot."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from zoo_bench.results import evidence
from zoo_bench.results.store import RunStore, load_run

N = 1000  # test images
SEEDS = [0, 1, 2, 3, 4]


def _write_trial(run_dir, store, strategy, seed, correct, *, size=100, backbone="efficientnet_lite0", root="/data/a",
                 train_time=1.0, params=1000, images=None, latency=None):
    labels = np.arange(len(correct)) % 2
    pred = np.where(correct, labels, 1 - labels)
    paths = images if images is not None else [f"{root}/test/{'cat' if l == 0 else 'dog'}/{i:04d}.jpg"
                                               for i, l in enumerate(labels)]
    name = f"predictions/{backbone}-{strategy}-n{size}-s{seed}.parquet"
    (run_dir / "predictions").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"image": paths, "label": labels, "pred": pred}).to_parquet(run_dir / name, index=False)
    store.append({"trial_id": f"torch/{backbone}/{strategy}/n={size}/seed={seed}", "backend": "torch",
                  "backbone": backbone, "strategy": strategy, "params": {}, "size_per_class": size, "seed": seed,
                  "status": "ok", "test_accuracy": float(np.mean(correct)), "test_images": len(correct),
                  "train_time_s": train_time, "wall_s": train_time + 2.0, "trainable_params": params,
                  "predictions_file": name, "latency_ms": latency})


def _flip(correct, count, rng, to=False):
    """``count`` images that are ``not to`` turned into ``to``."""
    out = correct.copy()
    where = np.flatnonzero(out != to)
    out[rng.choice(where, count, replace=False)] = to
    return out


@pytest.fixture()
def known_run(tmp_path):
    """fpt best (90%); last_layer 0.2 pt below it on 2 images a seed and far cheaper: equivalent;
    full 2 points below on average but -6..+3 from seed to seed: not separated; scratch 20 below: worse."""
    run_dir = tmp_path / "run"
    store = RunStore(run_dir)
    store.write_meta({"suite_name": "known", "suite": {"compare": {"equivalence": 1.0}}, "selection": None,
                      "started_at": "now"})
    rng = np.random.default_rng(0)
    for seed, full_shift in zip(SEEDS, [-60, 20, -50, 30, -40]):
        best = np.ones(N, bool)
        best[rng.choice(N, 100, replace=False)] = False
        _write_trial(run_dir, store, "fpt", seed, best, train_time=95.0, params=4_000_000)
        _write_trial(run_dir, store, "last_layer", seed, _flip(best, 2, rng), train_time=0.3, params=330_000)
        full = _flip(best, -full_shift, rng) if full_shift < 0 else _flip(best, full_shift, rng, to=True)
        _write_trial(run_dir, store, "full", seed, full, train_time=80.0, params=4_000_000)
        _write_trial(run_dir, store, "scratch", seed, _flip(best, 200, rng), train_time=60.0, params=4_000_000)
    return run_dir


def _analyse(run_dir):
    return evidence.analyse(load_run(run_dir), RunStore(run_dir).meta(), run_dir)


def test_known_recommendation_as_data_and_text(known_run):
    found = _analyse(known_run)
    [table] = found.tables
    [rec] = table.recommendations
    data = rec.as_dict()
    assert data["best"]["config"] == "fpt" and data["best"]["accuracy"] == pytest.approx(90.0)
    assert data["equivalent"] == ["last_layer"]
    assert data["not_separated"] == ["full"] and data["worse"] == ["scratch"]
    assert data["cheapest_by_time"] == "last_layer" and data["fewest_params"] == "last_layer"
    ll = next(c for c in rec.versus if c.a.label == "last_layer")
    assert ll.diff.delta == pytest.approx(-0.2) and ll.diff.low90 > -1.0
    text = rec.text()
    assert text.startswith("n=100: best fpt 90.0; equivalent within 1 pt: last_layer (-0.2, 90% CI -")
    assert "not separated: full (-2.0, p=" in text and "worse: scratch (-20.0, p<0.001)" in text
    assert text.endswith("cheapest of the equivalent to train: last_layer (300 ms against 95.0 s); "
                         "fewest trained parameters: last_layer (330.0k against 4.0M).")
    # the three families: 6 pairs, 3 against the best, Holm-adjusted in each
    [(_, _, _, pairs)] = table.cells
    assert len(pairs) == 6 and all(c.p_holm >= c.diff.p for c in pairs)
    assert all(c.a.accuracy >= c.b.accuracy for c in pairs)


def test_the_recommendation_names_the_fastest_to_run_of_the_tied_best(tmp_path):
    run_dir = tmp_path / "run"
    store = RunStore(run_dir)
    store.write_meta({"suite_name": "fast", "suite": {}, "selection": None, "started_at": "now"})
    rng = np.random.default_rng(1)
    for seed in SEEDS:
        best = np.ones(N, bool)
        best[rng.choice(N, 100, replace=False)] = False
        _write_trial(run_dir, store, "full", seed, best, train_time=90.0, params=4_000_000, latency=31.0)
        _write_trial(run_dir, store, "lora", seed, _flip(best, 1, rng), train_time=80.0, params=180_000, latency=24.5)
    [rec] = _analyse(run_dir).tables[0].recommendations
    assert rec.as_dict()["fastest_to_run"] == "lora" and rec.as_dict()["best"]["latency_ms"] == 31.0
    assert rec.text().endswith("fastest to run: lora (24.5 ms an image against 31.0).")


def test_the_suite_sets_the_equivalence_margin(known_run):
    meta = RunStore(known_run).meta()
    meta["suite"]["compare"]["equivalence"] = 0.1
    found = evidence.analyse(load_run(known_run), meta, known_run)
    data = found.tables[0].recommendations[0].as_dict()
    assert data["equivalent"] == [] and data["equivalence"] == 0.1
    assert "last_layer" in data["worse"] + data["not_separated"] and data["cheapest_by_time"] is None
    assert "nothing equivalent within 0.1 pt" in found.tables[0].recommendations[0].text()


def test_a_moved_data_root_still_pairs_and_other_images_do_not(tmp_path):
    run_dir = tmp_path / "run"
    store = RunStore(run_dir)
    store.write_meta({"suite_name": "moved", "suite": {}, "selection": None, "started_at": "now"})
    correct = np.ones(50, bool)
    correct[:5] = False
    _write_trial(run_dir, store, "svm", 0, correct, root="/mnt/old/data/cats_dogs")
    _write_trial(run_dir, store, "logreg", 0, correct, root="/home/me/data/cats_dogs")
    other = [f"/data/test/x/{i}.jpg" for i in range(50)]
    _write_trial(run_dir, store, "knn", 0, correct, images=other)
    [rec] = _analyse(run_dir).tables[0].recommendations
    verdicts = {c.a.label: (c.diff, c.why) for c in rec.versus}
    assert verdicts["logreg"][0].method == "identical" and verdicts["logreg"][0].delta == 0.0
    assert verdicts["knn"][0] is None and "not the same test images at seed 0 (50 and 50 images, 0 in common)" in verdicts["knn"][1]
    assert "one seed: test images only, one training run" in rec.text()
    assert "not compared: knn (" in rec.text()


def test_tuned_against_default_family(tmp_path):
    run_dir = tmp_path / "run"
    store = RunStore(run_dir)
    selection = {"metric": "val_accuracy", "tuned": {"svm": ["C"]}, "defaults": {"svm": {"C": 1.0}}, "refit": False}
    store.write_meta({"suite_name": "tuned", "suite": {}, "selection": selection, "started_at": "now"})
    rng = np.random.default_rng(1)
    for seed in (0, 1, 2):
        base = np.ones(400, bool)
        base[rng.choice(400, 60, replace=False)] = False
        for c, val, corr in ((1.0, 0.5, base), (0.1, 0.9, _flip(base, 30, rng, to=True))):
            labels = np.arange(400) % 2
            name = f"predictions/svm-C{c}-s{seed}.parquet"
            (run_dir / "predictions").mkdir(exist_ok=True)
            pd.DataFrame({"image": [f"/d/test/{i}.jpg" for i in range(400)], "label": labels,
                          "pred": np.where(corr, labels, 1 - labels)}).to_parquet(run_dir / name)
            store.append({"trial_id": f"torch/b/svm[C={c}]/n=10/seed={seed}", "backend": "torch", "backbone": "b",
                          "strategy": "svm", "params": {"C": c}, "size_per_class": 10, "seed": seed, "status": "ok",
                          "test_accuracy": float(corr.mean()), "val_accuracy": val, "test_images": 400,
                          "train_time_s": 0.1, "wall_s": 0.5, "trainable_params": 10, "predictions_file": name})
    found = _analyse(run_dir)
    assert [t.name for t in found.tables] == ["defaults", "tuned"]
    [(_, _, size, [c])] = found.tuning
    assert size == 10 and c.a.label == "svm" and c.diff.delta == pytest.approx(7.5) and c.p_holm < 0.05
    tuned = next(t for t in found.tables if t.name == "tuned")
    assert tuned.recommendations[0].best.cost_s == pytest.approx(0.2)  # both configurations' fits
    data = found.as_dict()
    assert data["tuning"][0]["pairs"][0]["delta"] == pytest.approx(7.5)
    json.dumps(data, allow_nan=False)


def test_across_backbones_family_and_recommendation(tmp_path):
    run_dir = tmp_path / "run"
    store = RunStore(run_dir)
    store.write_meta({"suite_name": "bb", "suite": {}, "selection": None, "started_at": "now"})
    rng = np.random.default_rng(2)
    for seed in (0, 1, 2):
        good = np.ones(300, bool)
        good[rng.choice(300, 15, replace=False)] = False
        _write_trial(run_dir, store, "svm", seed, good, backbone="big", train_time=0.2)
        _write_trial(run_dir, store, "svm", seed, _flip(good, 45, rng), backbone="small", train_time=0.1)
    [table] = _analyse(run_dir).tables
    [(_, label, _, [pair])] = table.backbones
    assert label == "svm" and (pair.a.backbone, pair.b.backbone) == ("big", "small")
    [across] = table.across
    assert across.text().startswith("n=100, across backbones: best big svm 95.0") and "worse: small svm (-15.0" in across.text()


def test_show_versus_report_and_plot_on_an_old_run_folder(known_run, tmp_path):
    def zb(*args):
        return subprocess.run([sys.executable, "-m", "zoo_bench.cli", *map(str, args)], capture_output=True,
                              text=True, timeout=300, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})

    assert not (known_run / "evidence.json").exists()
    versus = zb("show", known_run, "--versus")
    assert versus.returncode == 0, versus.stderr
    for text in ("every pair of a cell", "against the best", "fpt", "scratch", "not separated", "what to use",
                 "equivalent within 1 pt: last_layer"):
        assert text in versus.stdout
    show = zb("show", known_run)
    assert show.returncode == 0 and "what to use" in show.stdout and "90.0 ±" in show.stdout
    report = zb("report", known_run, "--format", "md")
    assert report.returncode == 0, report.stderr
    md = (known_run / "report.md").read_text()
    assert "## What to use" in md and "## Paired differences" in md
    data = json.loads((known_run / "evidence.json").read_text())
    assert data["tables"][0]["recommendations"][0]["equivalent"] == ["last_layer"]
    assert data["equivalence"] == 1.0 and data["tables"][0]["pairs"][0]["size"] == 100
    plot = zb("plot", known_run, "--out", tmp_path / "plots")
    assert plot.returncode == 0 and (tmp_path / "plots/versus.png").stat().st_size > 10_000
