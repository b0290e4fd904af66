"""zoo_bench.plan.trial: trial ids, and the short labels progress lines use."""
from __future__ import annotations

from zoo_bench.params import defaults
from zoo_bench.plan.grid import expand
from zoo_bench.plan.suite import parse_suite
from zoo_bench.plan.trial import Trial, TrialLabels

from conftest import write_suite

SUITE = """
[suite]
name = "labels"
seeds = [0, 1]
[dataset]
source = "synthetic"
classes = 2
train_per_class = 8
test_per_class = 4
image_size = 32
sizes = [4]
[run]
backends = ["torch"]
backbones = ["efficientnet_lite0"]
[strategies.last_n]
n = 2
[strategies.svm]
C = [0.1, 1.0]
[strategies.full]
"""


def defaults_of(registry) -> dict:
    return {name: defaults(cls.params) for name, cls in registry.strategies.items()}


def test_a_label_names_what_tells_the_trials_apart_and_the_id_stays_whole(tmp_path, registry):
    trials = expand(parse_suite(write_suite(tmp_path, SUITE), registry))
    label = TrialLabels(trials, defaults_of(registry))
    by_id = {t.id: label(t) for t in trials}
    assert sorted(set(by_id.values())) == sorted([
        f"efficientnet_lite0/{s}/n=4/seed={seed}" for s in ("full", "last_n[n=2]", "svm[C=0.1]", "svm[C=1.0]")
        for seed in (0, 1)])
    last_n = next(t for t in trials if t.strategy == "last_n")
    assert len(last_n.id) > 300 and label(last_n) == "efficientnet_lite0/last_n[n=2]/n=4/seed=0"


def test_a_second_backend_and_a_refit_are_named(registry):
    trials = [Trial("torch", "b", "svm", (("C", 1.0),), 4, 0), Trial("keras", "b", "svm", (("C", 1.0),), 4, 0)]
    label = TrialLabels(trials, defaults_of(registry))
    assert [label(t) for t in trials] == ["torch/b/svm/n=4/seed=0", "keras/b/svm/n=4/seed=0"]
    refit = Trial("torch", "b", "svm", (("C", 10.0),), 4, 0, refit=True)
    assert label(refit) == "torch/b/svm[C=10.0]/n=4/seed=0/refit"
