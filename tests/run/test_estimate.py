"""zoo_bench.run.estimate: ``run --estimate`` dry-runs each trial, pricing its passes over pixels at rates timed
on the real network, and counts the images and features the caches will give; it writes no run folder and
fills no cache. How close its totals come to real runs is measured by benchmarks/estimate_accuracy.py."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from conftest import lite0_suite, write_suite
from zoo_bench.backend import HeadSpec, OptimizerSpec
from zoo_bench.cli import main
from zoo_bench.plan import sampling
from zoo_bench.plan.suite import parse_suite
from zoo_bench.plugins import load_plugins
from zoo_bench.run.estimate import Rates, TimingBackend, earlier_rows, own_seconds
from zoo_bench.run.prepare import RunOptions, list_dataset

STRATEGIES = """
[strategies.svm]
[strategies.last_layer]
epochs = 2
[strategies.last_n]
head_epochs = 1
finetune_epochs = 1
[strategies.full]
epochs = 2
"""


@pytest.fixture()
def suite(tmp_path):
    return write_suite(tmp_path, lite0_suite("est", STRATEGIES, seeds=(0, 1)))


def _estimate(capsys, suite, results, cache, *extra) -> str:
    """What ``run --estimate`` printed, standard output and error together."""
    capsys.readouterr()
    assert main(["run", str(suite), "--estimate", "--results-dir", str(results), "--cache-dir", str(cache),
                 *extra]) == 0
    captured = capsys.readouterr()
    return captured.out + captured.err


def _caches(out: str) -> tuple[int, int, int, int]:
    """(image loads from the cache, all image loads, feature rows from the cache, all feature rows)."""
    found = re.search(r"caches: (\d+) of (\d+) image loads.*?; (\d+) of (\d+) feature rows", out)
    assert found, out
    return tuple(int(g) for g in found.groups())


def _images(suite) -> int:
    """The distinct images the suite's trials load: every test image and each seed's train and validation draw."""
    registry = load_plugins()
    parsed = parse_suite(suite, registry)
    listing = list_dataset(parsed, registry, RunOptions(data_root=suite.parent, cache_dir=suite.parent / "c"))
    paths = {p for p, _ in listing.test}
    for seed in parsed.seeds:
        for size in parsed.sizes:
            sub = sampling.subset(listing, size, seed, parsed.dataset["val_fraction"])
            paths |= {p for p, _ in sub.train + sub.val}
    return len(paths)


def test_it_prices_every_trial_writes_no_run_folder_and_fills_no_cache(suite, tmp_path, capsys):
    out = _estimate(capsys, suite, tmp_path / "results", tmp_path / "cache")
    for strategy in ("svm", "last_layer", "last_n", "full"):
        assert re.search(rf"│ {strategy} +│ +2 │", out), out
    assert re.search(r"│ total +│ +8 │", out)
    assert "measured here" in out and "earlier runs" not in out
    hits, loads, feature_hits, rows = _caches(out)
    assert (hits, loads) == (0, _images(suite))  # a cold cache: every image is decoded once
    assert feature_hits == 0 and rows > 0
    assert not (tmp_path / "results").exists()
    assert not (tmp_path / "cache" / "images").exists() and not (tmp_path / "cache" / "features").exists()


def test_after_a_run_its_caches_and_rows_are_what_the_estimate_uses(suite, tmp_path, capsys):
    cold = _caches(_estimate(capsys, suite, tmp_path / "elsewhere", tmp_path / "cache"))
    assert main(["run", str(suite), "--results-dir", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache"),
                 "--run-id", "r", "--no-progress"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "results" / "est" / "r" / "trials.jsonl").read_text().splitlines()]
    assert all(isinstance(r["image_time_s"], float) and r["image_time_s"] >= 0 for r in rows)

    warm = _estimate(capsys, suite, tmp_path / "elsewhere", tmp_path / "cache")
    assert _caches(warm) == (cold[1], cold[1], cold[3], cold[3])  # every image and feature row from the caches
    assert "measured here" in warm

    again = _estimate(capsys, suite, tmp_path / "results", tmp_path / "cache")
    assert "earlier runs" in again and "measured here" not in again

    resumed = _estimate(capsys, suite, tmp_path / "results", tmp_path / "cache", "--run-id", "r")
    assert "every trial is finished" in resumed and "expected wall time" not in resumed


def test_a_resumed_run_counts_only_the_trials_it_lacks(suite, tmp_path, capsys):
    assert main(["run", str(suite), "--results-dir", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache"),
                 "--run-id", "r", "--no-progress", "--trials", "*/seed=0"]) == 0
    out = _estimate(capsys, suite, tmp_path / "results", tmp_path / "cache", "--run-id", "r")
    assert re.search(r"│ total +│ +4 │", out), out


def test_passes_over_pixels_are_timed_on_a_sample_and_priced_for_every_image(monkeypatch):
    backend = load_plugins().backends["torch"](device="cpu")
    spec = load_plugins().backbone("torch", "efficientnet_lite0")
    model = backend.attach(backend.build_base(spec, pretrained=True, image_size=32),
                           backend.new_head(1280, 3, HeadSpec((), 0.0)))
    timing = TimingBackend(backend, Rates())
    fits, logits = [], []
    real_fit, real_logits = backend.fit, backend.logits
    monkeypatch.setattr(backend, "fit", lambda m, x, y, **kw: fits.append((len(x), kw["epochs"])) or real_fit(m, x, y, **kw))
    monkeypatch.setattr(backend, "logits", lambda m, x, b: logits.append(len(x)) or real_logits(m, x, b))
    x = np.zeros((40, 32, 32, 3), np.uint8)
    y = np.arange(40) % 3
    val = (np.zeros((10, 32, 32, 3), np.uint8), np.arange(10) % 3)
    stats = timing.fit(model, x, y, epochs=3, optimizer=OptimizerSpec("adam", 1e-3), batch_size=8, inputs="images",
                       val=val)
    assert len(stats) == 3 and all(s.phase == "images" and s.images == 40 for s in stats)
    assert fits == [(16, 1), (16, 1)]  # a warm-up epoch and a timed one, on two batches of random pixels
    assert logits == [10, 10]  # the validation images' pass, timed once
    priced = timing.ledger.pixels_s
    assert priced > 0 and stats[0].seconds * 3 == pytest.approx(priced)
    timing.fit(model, x, y, epochs=3, optimizer=OptimizerSpec("adam", 1e-3), batch_size=8, inputs="images", val=val)
    assert len(fits) == 2 and timing.ledger.pixels_s == pytest.approx(2 * priced)  # the rate is reused
    scores = timing.logits(model, np.zeros((100, 32, 32, 3), np.uint8), 8)
    assert scores.shape == (100, 3) and max(logits) <= 16  # priced for 100 images, run on 16


def test_earlier_rows_are_this_suites_finished_rows_on_this_device(tmp_path):
    folder = tmp_path / "results" / "s"
    (folder / "a").mkdir(parents=True)
    rows = [{"trial_id": "t1", "status": "ok", "device_name": "cpu X", "wall_s": 10.0, "feature_time_s": 3.0,
             "image_time_s": 1.0},
            {"trial_id": "t1", "status": "ok", "device_name": "GPU Y", "wall_s": 1.0},
            {"trial_id": "t2", "status": "error", "device_name": "cpu X", "wall_s": 1.0}]
    (folder / "a" / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"cut')
    found = earlier_rows(tmp_path / "results", "s", "cpu X")
    assert list(found) == ["t1"] and len(found["t1"]) == 1
    assert own_seconds(found["t1"][0]) == 6.0
    assert earlier_rows(tmp_path / "results", "other", "cpu X") == {}


def test_a_trial_that_fails_its_dry_run_is_named_and_the_others_are_still_priced(tmp_path, capsys):
    strategies = '[strategies.svm]\n[strategies.last_n]\nunfreeze = ["no_such_block"]\n'
    suite = write_suite(tmp_path, lite0_suite("est", strategies))
    out = _estimate(capsys, suite, tmp_path / "results", tmp_path / "cache")
    assert re.search(r"warning: torch/efficientnet_lite0/last_n\S*: failed in its dry run \(.*no_such_block", out), out
    assert re.search(r"│ total +│ +2 │", out)
