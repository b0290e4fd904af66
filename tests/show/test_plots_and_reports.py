"""Plots, reports and regrouped tables from a real (small) run folder."""
import html

import pytest
from PIL import Image

from conftest import lite0_suite, run_inprocess, write_suite
from zoo_bench.cli import main
from zoo_bench.plugins import load_plugins

SUITE = lite0_suite("plots", "[strategies.svm]\n[strategies.last_layer]\nepochs = 2", seeds=(0, 1),
                    train_per_class=12, test_per_class=6, sizes=(4, 8))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plots")
    store, _ = run_inprocess(write_suite(tmp, SUITE), load_plugins(), tmp, tmp / "cache")
    return store.run_dir


def test_plot_writes_readable_pngs(run_dir, tmp_path):
    assert main(["plot", str(run_dir), "--out", str(tmp_path)]) == 0
    for name in ("accuracy.png", "epoch_time.png"):
        with Image.open(tmp_path / name) as img:
            assert img.format == "PNG" and img.size[0] > 400 and img.size[1] > 300


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_report_is_one_self_contained_file(run_dir, tmp_path, fmt):
    out = tmp_path / f"r.{fmt}"
    assert main(["report", str(run_dir), "--format", fmt, "--out", str(out)]) == 0
    text = html.unescape(out.read_text())
    assert text.count("data:image/png;base64,") >= 4
    assert "last_layer" in text and "cpu_count" in text and '"name": "plots"' in text
    assert "±" in text and "(n=2)" in text


def test_show_by_any_columns(run_dir, capsys):
    assert main(["show", str(run_dir), "--by", "strategy,size_per_class"]) == 0
    out = capsys.readouterr().out
    assert "by strategy, size_per_class" in out and "(n=2)" in out
    assert main(["show", str(run_dir), "--by", "colour"]) == 2
