"""Statistics: Wilson intervals, exact McNemar, Newcombe's paired interval, the paired difference over seeds
and test images, Holm's correction: known answers and seeded coverage simulations."""
import math

import numpy as np
import pytest
from scipy.special import expit

from zoo_bench.results.stats import (format_accuracy, holm, mcnemar_exact, newcombe_paired, paired_difference, wilson)


def test_exact_mcnemar_known_answer():
    assert mcnemar_exact(10, 2) == pytest.approx(0.0386, abs=5e-5)  # 2 * P(X <= 2), X ~ Bin(12, 1/2)
    assert mcnemar_exact(2, 10) == mcnemar_exact(10, 2)
    assert mcnemar_exact(0, 0) == 1.0


def test_holm_known_answer():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0] and holm([]) == []


def test_wilson_interval_of_one_training_run():
    low, high = wilson(97, 100)
    assert low == pytest.approx(0.9154, abs=1e-4) and high == pytest.approx(0.9897, abs=1e-4)
    assert format_accuracy([0.978], [2000]) == "97.8 [97.1, 98.4]% (1 seed)"
    assert format_accuracy([0.97, 0.98, 0.99], [100] * 3).endswith("% (n=3)")


def test_two_seed_case_by_hand():
    a = [[1, 1, 0, 1, 1, 0, 1, 1], [1, 0, 1, 1, 1, 1, 1, 0]]
    b = [[1, 0, 0, 1, 0, 0, 1, 1], [0, 0, 1, 1, 1, 0, 1, 0]]
    d = paired_difference(a, b)
    # d_s = (0.25, 0.25): no spread over seeds; dbar_i = (.5, .5, 0, 0, .5, .5, 0, 0), var 1/14, over N = 8
    se = math.sqrt((1 / 14) / 8)
    t = 2.364624251592785  # t(0.975, df = N - 1 = 7): the seeds' term is 0
    assert d.method == "seeds+images" and d.df == pytest.approx(7)
    assert d.delta == pytest.approx(25.0)
    assert (d.low, d.high) == pytest.approx((100 * (0.25 - t * se), 100 * (0.25 + t * se)))
    assert (d.a_only, d.b_only) == (4, 0)


def test_spread_over_seeds_adds_to_test_image_sampling():
    a = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]], bool)
    b = np.zeros_like(a)
    d = paired_difference(a, b)
    d_s = a.mean(axis=1)
    dbar = a.mean(axis=0)
    v1, v2 = d_s.var(ddof=1) / 3, dbar.var(ddof=1) / 6
    assert d.df == pytest.approx((v1 + v2) ** 2 / (v1 ** 2 / 2 + v2 ** 2 / 5))
    assert d.high - d.delta > d.high90 - d.delta > 0


def test_identical_predictions_give_zero_and_width_zero():
    a = np.array([[1, 0, 1], [0, 1, 1]], bool)
    d = paired_difference(a, a.copy())
    assert (d.delta, d.low, d.high, d.p, d.method) == (0.0, 0.0, 0.0, 1.0, "identical")


def test_one_seed_uses_mcnemar_and_newcombe():
    a = np.array([[1] * 10 + [0] * 2 + [1] * 80 + [0] * 8], bool)
    b = np.array([[0] * 10 + [1] * 2 + [1] * 80 + [0] * 8], bool)
    d = paired_difference(a, b)
    assert d.method == "mcnemar" and d.p == pytest.approx(mcnemar_exact(10, 2))
    assert d.delta == pytest.approx(8.0)
    low, high = newcombe_paired(80, 10, 2, 8)
    assert (d.low, d.high) == pytest.approx((100 * low, 100 * high))
    assert d.low < d.low90 < d.delta < d.high90 < d.high


def test_paired_interval_covers_a_known_difference_in_a_two_level_model():
    """Seed effects and image effects: 2000 seeded draws of 5 seeds x 400 test images; the true difference
    is the population's, from 400 000 images and seeds."""
    rng = np.random.default_rng(24)
    s, n, a, b, sd_image, sd_seed = 5, 400, 1.6, 1.3, 1.5, 0.3
    u, wa, wb = rng.normal(0, sd_image, 400_000), rng.normal(0, sd_seed, 400_000), rng.normal(0, sd_seed, 400_000)
    true = 100 * (expit(a + u + wa).mean() - expit(b + u + wb).mean())
    covered = 0
    for _ in range(2000):
        image = rng.normal(0, sd_image, n)
        seed_a, seed_b = rng.normal(0, sd_seed, (s, 1)), rng.normal(0, sd_seed, (s, 1))
        draw = rng.random((s, n))  # the same draw for both: paired outcomes on one image and seed
        d = paired_difference(draw < expit(a + image + seed_a), draw < expit(b + image + seed_b))
        covered += d.low <= true <= d.high
    assert 0.92 <= covered / 2000 <= 0.98


def test_one_seed_interval_covers_a_known_difference():
    """Newcombe's interval on one training run: 2000 draws of 300 paired images with known accuracies."""
    rng = np.random.default_rng(7)
    p_both, p_a, p_b = 0.80, 0.08, 0.04  # A right only 8%, B right only 4%: true A - B = 4 points
    covered = 0
    for _ in range(2000):
        cells = rng.multinomial(300, [p_both, p_a, p_b, 1 - p_both - p_a - p_b])
        low, high = newcombe_paired(*cells)
        covered += low <= 0.04 <= high
    assert 0.92 <= covered / 2000 <= 0.98
