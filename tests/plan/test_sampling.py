"""Stratified, nested subsets with an exact validation share."""
from collections import Counter

from zoo_bench.dataset import Listing
from zoo_bench.plan.sampling import folds, is_val_position, subset


def listing(per_class=(100, 60)):
    train = tuple((f"c{c}/{i}.jpg", c) for c, n in enumerate(per_class) for i in range(n))
    return Listing(classes=tuple(f"c{c}" for c in range(len(per_class))), train=train, test=())


def test_stratified_with_exact_val_share():
    sub = subset(listing(), 50, seed=0, val_fraction=0.2)
    for label in (0, 1):
        assert sum(1 for _, y in sub.train if y == label) == 40
        assert sum(1 for _, y in sub.val if y == label) == 10
    assert not set(sub.train) & set(sub.val)


def test_smaller_subsets_nest_in_larger_for_one_seed():
    data = listing()
    small, large = subset(data, 20, 3, 0.2), subset(data, 60, 3, 0.2)
    assert set(small.train) <= set(large.train)
    assert set(small.val) <= set(large.val)


def test_seeds_differ_and_repeat():
    data = listing()
    assert subset(data, 20, 0, 0.2) == subset(data, 20, 0, 0.2)
    assert set(subset(data, 20, 0, 0.2).train) != set(subset(data, 20, 1, 0.2).train)


def test_val_positions_hold_out_the_fraction():
    assert sum(is_val_position(i, 0.2) for i in range(100)) == 20
    assert sum(is_val_position(i, 0.0) for i in range(100)) == 0


def test_folds_are_stratified_cover_the_pool_and_differ_by_repeat():
    listing_ = listing((40, 40, 40))
    found = folds(listing_, 20, seed=1, k=5, repeats=2)
    assert len(found) == 10
    pool = set(subset(listing_, 20, 1, 0.2).train) | set(subset(listing_, 20, 1, 0.2).val)
    for r in range(2):
        held = [set(h) for _, h in found[5 * r:5 * r + 5]]
        assert set().union(*held) == pool and sum(len(h) for h in held) == len(pool)  # a partition of the pool
        for (fit, out), h in zip(found[5 * r:5 * r + 5], held):
            assert set(fit) == pool - h
            per_class = Counter(label for _, label in out)
            assert sorted(per_class.values()) == [4, 4, 4]  # 20 per class over 5 folds: 4 each
    assert [set(h) for _, h in found[:5]] != [set(h) for _, h in found[5:]]


def test_folds_nest_across_sizes():
    listing_ = listing((60, 60))
    small, large = folds(listing_, 20, 3, 5, 1), folds(listing_, 50, 3, 5, 1)
    for (_, held_small), (_, held_large) in zip(small, large):
        assert set(held_small) <= set(held_large)  # an image keeps its fold when more are drawn
    for n in (7, 13):  # sizes that are not multiples of k: each class's folds differ by one image at most
        for _, held in folds(listing_, n, 0, 5, 1):
            counts = Counter(label for _, label in held)
            assert max(counts.values()) - min(counts.values(), default=0) <= 1
