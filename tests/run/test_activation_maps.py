"""--activation-maps: Grad-CAM figures of a trial's test images, in the run folder and the report, in both backends."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import photo_suite, run_inprocess, write_suite
from zoo_bench.show.document import write_report
from zoo_bench.results.store import load_run
from zoo_bench.run.trials import pick_per_class


def test_pick_per_class_shows_every_class_in_test_order():
    labels = np.array([0, 0, 0, 1, 1, 2])
    assert pick_per_class(labels, 4).tolist() == [0, 1, 3, 5]
    assert pick_per_class(labels, 10).tolist() == list(range(6))


def run_with_maps(tmp_path, registry, body):
    from zoo_bench.run.prepare import RunOptions, prepare_run
    from zoo_bench.run.runner import Runner
    from zoo_bench.plan.suite import parse_suite
    from conftest import QuietReporter

    suite = parse_suite(write_suite(tmp_path, body), registry)
    options = RunOptions(data_root=tmp_path, cache_dir=tmp_path / "cache", device="cpu", activation_maps=4)
    prepared = prepare_run(suite, registry, options, tmp_path / "results" / suite.name / "r")
    reporter = QuietReporter()
    Runner(prepared, reporter, None).run()
    prepared.store.unlock()
    return prepared.store, reporter


@pytest.mark.parametrize("backend_name, backbone, size", [("torch", "efficientnet_lite0", 96),
                                                          ("keras", "efficientnet_lite0", 96)])
def test_each_trial_gets_one_figure_and_the_report_shows_it(tmp_path, registry, real_photos, backend_name, backbone,
                                                            size):
    if backend_name == "keras":
        pytest.importorskip("keras")
    body = photo_suite(real_photos, backend_name, backbone, size,
                       "[strategies.svm]\n[strategies.last_layer]\nepochs = 2\n"
                       "[strategies.full]\nepochs = 1\npooling = \"max\"\n")
    store, reporter = run_with_maps(tmp_path, registry, body)
    rows = {r["strategy"]: r for r in store.rows()}
    assert all(r["status"] == "ok" for r in rows.values()), [r["error"] for r in rows.values()]
    assert rows["svm"]["activation_maps_file"] is None
    assert any("no activation maps: a probe on features (svm) has no network to explain" in text
               for _, text in reporter.notes)
    for strategy in ("last_layer", "full"):
        path = store.run_dir / rows[strategy]["activation_maps_file"]
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 4 * 150  # four columns of images
            pixels = np.asarray(image.convert("RGB"), np.int16)
        assert pixels.std() > 20  # photos and heat maps, not a blank figure
    df = load_run(store.run_dir)
    html = write_report(df, {"suite_name": "photos"}, tmp_path / "report.html", "html", run_dir=store.run_dir)
    text = html.read_text()
    assert "<h2>Activation maps</h2>" in text and text.count("alt=\"efficientnet_lite0 ") >= 2
