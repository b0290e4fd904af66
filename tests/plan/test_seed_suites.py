"""The reference articles' suites (suites/seeds/) validate, with the original backbones and with the cpu profile."""
from __future__ import annotations

import pytest

from conftest import REPO
from zoo_bench.plan.grid import expand
from zoo_bench.plugins import load_plugins
from zoo_bench.plan.suite import parse_suite

SEEDS = sorted((REPO / "suites" / "seeds").glob("*.toml"))


def test_one_suite_per_article():
    assert [p.name[:3] for p in SEEDS] == ["000", "001", "002", "003", "004"]


@pytest.mark.parametrize("path", SEEDS, ids=[p.stem for p in SEEDS])
@pytest.mark.parametrize("profile", [None, "cpu"])
def test_seed_suite_validates(path, profile):
    registry = load_plugins()
    suite = parse_suite(path, registry, profile=profile)
    trials = expand(suite)
    assert trials
    assert path.read_text().startswith("# Reference article " + path.name[:3])  # says what it reproduces
    if profile == "cpu":
        assert {t.backbone for t in trials} <= {"efficientnet_lite0", "tiny_cnn"}  # weights that install here


def test_seed_004_compares_the_four_ways():
    suite = parse_suite(REPO / "suites" / "seeds" / "004_cats_dogs_small.toml", load_plugins())
    by_strategy = {t.strategy: t.param_dict for t in expand(suite)}
    assert set(by_strategy) == {"last_layer", "frozen_pixels", "last_n", "scratch"}
    assert by_strategy["frozen_pixels"]["rotation"] == 40 and by_strategy["last_layer"]["pooling"] == "flatten"
