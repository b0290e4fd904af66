"""--save-models and predict: saved weights rebuilt through each backend reproduce the trial's test predictions."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, SHARED_DATA, photo_suite, run_inprocess, write_suite
from zoo_bench import UsageError
from zoo_bench.run import saved_models

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "cats_dogs").is_dir(), reason="needs ../shared/data/cats_dogs")


STRATEGIES = """
[strategies.svm]
preprocess = ["l2", "standardize"]
[strategies.logreg]
[strategies.last_layer]
epochs = 2
[strategies.fpt]
head_epochs = 1
finetune_epochs = 1
pooling = "max"
"""


def check_reproduces(store, registry):
    rows = store.rows()
    assert rows and all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    for row in rows:
        assert row["model_dir"].startswith("models/")
        saved = saved_models.find(store.run_dir, row["trial_id"])
        assert (store.run_dir / row["model_dir"]) == saved.folder
        stored = pd.read_parquet(store.run_dir / row["predictions_file"])
        loaded = saved_models.load(saved, registry, device="cpu")
        images, paths = saved_models.read_images(list(stored["image"]), saved.description)
        scores = loaded.scores(images, 8)
        assert paths == list(stored["image"])
        np.testing.assert_allclose(scores, np.stack(stored["scores"]), rtol=1e-3, atol=1e-3)
        assert (scores.argmax(1) == stored["pred"].to_numpy()).all(), row["trial_id"]
    return rows


def test_torch_models_reproduce_their_predictions(tmp_path, registry, tiny_weights, real_photos):
    """Also the models whose test scores came from cached features or activations at a cut: the whole
    network rebuilt from their weights scores the test photos the same."""
    body = photo_suite(real_photos, "torch", "mini_cnn", 32, STRATEGIES + "[strategies.scratch]\nepochs = 1\n"
                       "[strategies.last_n]\nhead_epochs = 1\nfinetune_epochs = 2\n"
                       "[strategies.frozen_pixels]\nepochs = 2\n")
    store, _ = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, tmp_path / "cache", save_models=True)
    rows = check_reproduces(store, registry)
    kinds = {r["strategy"]: json.loads((store.run_dir / r["model_dir"] / "model.json").read_text())["kind"]
             for r in rows}
    assert kinds == {"svm": "linear", "logreg": "linear", "last_layer": "classifier", "fpt": "classifier", "scratch": "classifier",
                     "last_n": "classifier", "frozen_pixels": "classifier"}
    assert {r["strategy"]: r["cut"] for r in rows}["last_n"] == "2/3"
    assert sorted(p.name for p in (store.run_dir / rows[0]["model_dir"]).iterdir()) in (
        ["linear.npz", "model.json", "model.safetensors"], ["model.json", "model.safetensors"])


def test_parameter_efficient_models_reproduce_their_predictions_lora_merged(tmp_path, registry, real_photos):
    """bitfit, norm_tune and lora on real photos with EfficientNet-Lite0: the saved weights (LoRA merged into
    the pointwise convolutions) load into the plain rebuilt network and score the test photos the same."""
    body = photo_suite(real_photos, "torch", "efficientnet_lite0", 64,
                       "[strategies.bitfit]\nepochs = 1\n[strategies.norm_tune]\nepochs = 1\n"
                       "[strategies.lora]\nepochs = 1\nrank = 4\n")
    store, _ = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, tmp_path / "cache", save_models=True)
    rows = {r["strategy"]: r for r in check_reproduces(store, registry)}
    assert set(rows) == {"bitfit", "norm_tune", "lora"}
    assert rows["bitfit"]["trainable_params"] < rows["norm_tune"]["trainable_params"] < rows["lora"]["trainable_params"]
    assert rows["lora"]["total_params"] > rows["bitfit"]["total_params"]  # the updates, until merged


def test_prompt_tuned_models_reproduce_their_predictions_from_weights_and_prompts(tmp_path, registry, real_photos):
    """vpt (deep and shallow) and lora on timm's test ViT with seeded stand-in weights (mechanics only): the
    prompts are saved beside the plain network's weights, and the rebuilt model scores the test photos the same."""
    pytest.importorskip("timm")
    from zoo_bench_torch.timm_weights import save_random_weights

    save_random_weights("test_vit.r160_in1k", str(tmp_path / "weights"))
    body = photo_suite(real_photos, "torch", "timm:test_vit.r160_in1k", 64,
                       "[strategies.vpt]\nepochs = 1\nprompts = [4]\ndeep = [true, false]\n"
                       "[strategies.lora]\nepochs = 1\nrank = 4\n")
    store, _ = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, tmp_path / "cache",
                             weights_dir=str(tmp_path / "weights"), save_models=True)
    rows = check_reproduces(store, registry)
    files = {(r["strategy"], r["params"].get("deep")): sorted(p.name for p in (store.run_dir / r["model_dir"]).iterdir())
             for r in rows}
    assert files == {("vpt", True): ["model.json", "model.safetensors", "prompts.safetensors"],
                     ("vpt", False): ["model.json", "model.safetensors", "prompts.safetensors"],
                     ("lora", None): ["model.json", "model.safetensors"]}
    trained = {(r["strategy"], r["params"].get("deep")): r["trainable_params"] for r in rows}
    head = 64 * 256 + 256 + 256 * 2 + 2  # test_vit is 64 wide; the default head has 256 hidden units
    assert trained[("vpt", True)] == 6 * 4 * 64 + head and trained[("vpt", False)] == 4 * 64 + head


def test_keras_models_reproduce_their_predictions(tmp_path, registry, real_photos):
    pytest.importorskip("keras")
    body = photo_suite(real_photos, "keras", "efficientnet_lite0", 64, STRATEGIES)
    store, _ = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, tmp_path / "cache", save_models=True)
    rows = check_reproduces(store, registry)
    head = next(r for r in rows if r["strategy"] == "fpt")
    assert sorted(p.name for p in (store.run_dir / head["model_dir"]).iterdir()) == [
        "base.weights.h5", "head.weights.h5", "model.json"]


def test_without_the_flag_nothing_is_saved(tmp_path, registry, tiny_weights, real_photos):
    body = photo_suite(real_photos, "torch", "mini_cnn", 32, "[strategies.svm]\n")
    store, _ = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, tmp_path / "cache")
    [row] = store.rows()
    assert row["model_dir"] is None and not (store.run_dir / "models").exists()
    with pytest.raises(UsageError, match="no saved models \\(run the suite with --save-models\\)"):
        saved_models.find(store.run_dir, "svm")


def zb(*args):
    return subprocess.run([sys.executable, "-m", "zoo_bench.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=600)


def test_predict_prints_the_top_classes_of_image_files(tmp_path, real_photos):
    suite = write_suite(tmp_path, photo_suite(real_photos, "torch", "efficientnet_lite0", 64,
                                             "[strategies.last_layer]\nepochs = 3\n[strategies.svm]\n"))
    proc = zb("run", suite, "--run-id", "r", "--results-dir", tmp_path / "res", "--cache-dir", tmp_path / "c",
              "--no-progress", "--save-models")
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "res" / "photos" / "r"
    images = sorted((real_photos / "test" / "dog").iterdir())[:2]
    out = zb("predict", run_dir, "last_layer", *images, "--top", "2")
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    assert len(lines) == 2 and all(ln.startswith(str(real_photos)) for ln in lines)
    for line in lines:
        probs = [float(part.split()[-1]) for part in line.split(": ", 1)[1].split(", ")]
        assert len(probs) == 2 and abs(sum(probs) - 1) < 1e-3 and probs[0] >= probs[1]
    rows = pd.read_parquet(run_dir / "trials.parquet")
    stored = pd.read_parquet(run_dir / rows.set_index("strategy").loc["last_layer", "predictions_file"])
    classes = ["cat", "dog"]
    for image, line in zip(images, lines):
        expected = classes[int(stored.set_index("image").loc[str(image), "pred"])]
        assert line.split(": ", 1)[1].startswith(expected + " ")
    ambiguous = zb("predict", run_dir, "efficientnet_lite0", images[0])
    assert ambiguous.returncode == 2 and "names several saved trials" in ambiguous.stderr
    assert len(ambiguous.stderr.strip().splitlines()) == 1
    unreadable = tmp_path / "not_an_image.jpg"
    unreadable.write_text("text")
    bad = zb("predict", run_dir, "svm", unreadable)
    assert bad.returncode == 2 and f"{unreadable}: cannot be read as an image" in bad.stderr
