"""zoo_bench.run.prepare: which planned trials run, and the line that says why the others do not."""
from __future__ import annotations

import pytest

from conftest import write_suite
from zoo_bench.plan.suite import parse_suite
from zoo_bench.plugins import load_plugins
from zoo_bench.run.prepare import RunOptions, prepare_run

SUITE = """
[suite]
name = "families"
seeds = [0]
[dataset]
source = "synthetic"
classes = 2
train_per_class = 8
test_per_class = 4
image_size = 32
sizes = [4]
[run]
backends = ["torch"]
backbones = ["efficientnet_lite0", "timm:test_vit"]
[strategies.vpt]
[strategies.lora]
"""


def test_a_strategy_for_one_family_of_backbones_is_not_run_on_the_others_with_a_line_saying_why(tmp_path):
    pytest.importorskip("timm")
    registry = load_plugins()
    suite = parse_suite(write_suite(tmp_path, SUITE), registry)
    prepared = prepare_run(suite, registry, RunOptions(data_root=tmp_path, cache_dir=tmp_path / "cache"),
                           tmp_path / "run")
    prepared.store.unlock()
    assert sorted((t.strategy, t.backbone) for t in prepared.trials) == [
        ("lora", "efficientnet_lite0"), ("lora", "timm:test_vit"), ("vpt", "timm:test_vit")]
    assert [why for trial_id, why in prepared.not_applicable] == [
        "vpt runs on timm vision transformers (timm:vit_*, timm:deit_*) only; efficientnet_lite0 is not one"]
