"""Grid expansion and canonical trial ids."""
from conftest import TINY_SUITE, write_suite
from zoo_bench.plan.grid import expand
from zoo_bench.plan.trial import select, strategy_label
from zoo_bench.plan.suite import parse_suite


def test_grid_is_the_product_with_sweeps(tmp_path, registry):
    body = TINY_SUITE.replace("seeds = [0]", "seeds = [0, 1]").replace("sizes = [8]", "sizes = [4, 8]")
    body += "[strategies.svm]\nC = [0.1, 1.0, 10.0]\n[strategies.fpt]\nhead_epochs = 2\n"
    trials = expand(parse_suite(write_suite(tmp_path, body), registry))
    assert len(trials) == (3 + 1) * 2 * 2
    ids = [t.id for t in trials]
    assert len(set(ids)) == len(ids)
    assert "torch/mini_cnn/svm[C=0.1,preprocess=none]/n=4/seed=1" in ids
    fpt = [t for t in trials if t.strategy == "fpt"][0]
    assert fpt.id == ("torch/mini_cnn/fpt[augment=flip,dropout=0.5,finetune_epochs=3,finetune_lr=0.0001,"
                      "finetune_momentum=0.9,finetune_optimizer=sgd,finetune_weight_decay=0.0,head_epochs=2,"
                      "head_lr=0.001,head_momentum=0.9,head_optimizer=adam,head_weight_decay=0.0,hidden=[256],"
                      "patience=0,restore_best=false]/n=4/seed=0")


def test_ids_are_canonical_whatever_the_key_order():
    assert strategy_label("fpt", {"b": 1, "a": 0.5}) == strategy_label("fpt", {"a": 0.5, "b": 1}) == "fpt[a=0.5,b=1]"
    assert strategy_label("svm", {}) == "svm"


def test_select_by_pattern(tmp_path, registry):
    body = TINY_SUITE + "[strategies.svm]\n[strategies.last_layer]\n"
    trials = expand(parse_suite(write_suite(tmp_path, body), registry))
    assert [t.strategy for t in select(trials, ["*/svm*"])] == ["svm"]
    assert select(trials, None) == trials


def test_a_strategy_can_be_limited_to_some_backbones(tmp_path, registry):
    body = TINY_SUITE.replace('backbones = ["mini_cnn"]', 'backbones = ["mini_cnn", "efficientnet_lite0"]')
    body += '[strategies.svm]\nbackbones = ["efficientnet_lite0"]\n[strategies.scratch]\nepochs = 1\n'
    suite = parse_suite(write_suite(tmp_path, body), registry)
    pairs = {(t.backbone, t.strategy) for t in expand(suite)}
    assert pairs == {("efficientnet_lite0", "svm"), ("mini_cnn", "scratch"), ("efficientnet_lite0", "scratch")}
    assert "backbones" not in suite.strategies["svm"]
    assert suite.raw["strategies"]["svm"]["backbones"] == ["efficientnet_lite0"]  # recorded as written
