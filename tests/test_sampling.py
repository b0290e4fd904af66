"""Stratified, nested subsets with an exact validation share."""
from zoo_bench.dataset import Listing
from zoo_bench.sampling import is_val_position, subset


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
