"""Ranks across data sets: Friedman, Iman-Davenport and Nemenyi against Demsar (2006)'s worked example and
published table, the exact permutation p by brute force, and `zoo-bench rank` on constructed run folders."""
import json
import math
import subprocess
import sys
from itertools import permutations, product

import numpy as np
import pytest

from zoo_bench.results import ranks

# Demsar (2006), Table 6: AUC of C4.5, C4.5+m, C4.5+cf and C4.5+m+cf on 14 data sets.
DEMSAR = np.array([
    [0.763, 0.768, 0.771, 0.798], [0.599, 0.591, 0.590, 0.569], [0.954, 0.971, 0.968, 0.967],
    [0.628, 0.661, 0.654, 0.657], [0.882, 0.888, 0.886, 0.898], [0.936, 0.931, 0.916, 0.931],
    [0.661, 0.668, 0.609, 0.685], [0.583, 0.583, 0.563, 0.625], [0.775, 0.838, 0.866, 0.875],
    [1.000, 1.000, 1.000, 1.000], [0.940, 0.962, 0.965, 0.962], [0.619, 0.666, 0.614, 0.669],
    [0.972, 0.981, 0.975, 0.975], [0.957, 0.978, 0.946, 0.970]])
NAMES = ["C4.5", "C4.5+m", "C4.5+cf", "C4.5+m+cf"]


def test_demsar_worked_example():
    """The paper's mean ranks (3.143, 2.000, 2.893, 1.964) give chi2_F = 9.28 and F_F = 3.69. Its table prints
    AUCs to 3 decimals, and ranking those printed values moves half a rank between the last two columns
    on one data set (2.929 and 1.929): the paper ranked the unrounded values."""
    n, k = 14, 4
    published = np.array([3.143, 2.000, 2.893, 1.964])
    chi2 = ranks.friedman_statistic(np.round(published * n * 2) / 2, n, k)  # rank sums 44, 28, 40.5, 27.5
    assert chi2 == pytest.approx(9.28, abs=0.005)
    assert ranks.iman_davenport(chi2, n, k) == pytest.approx(3.69, abs=0.005)
    r = ranks.friedman(DEMSAR, NAMES, [f"d{i}" for i in range(14)])
    assert r.mean_ranks == pytest.approx([44 / 14, 28 / 14, 41 / 14, 27 / 14])
    assert r.cd == pytest.approx(1.25, abs=0.005)  # q_0.05 = 2.569, k = 4, N = 14
    assert ranks.critical_difference(4, 14, alpha=0.10) == pytest.approx(1.12, abs=0.005)
    assert r.groups() == [["C4.5+m+cf", "C4.5+m", "C4.5+cf", "C4.5"]]  # the paper: no pair differs at 5%


@pytest.mark.parametrize("k, alpha, q", [(2, 0.05, 1.960), (3, 0.05, 2.343), (4, 0.05, 2.569), (5, 0.05, 2.728),
                                         (6, 0.05, 2.850), (7, 0.05, 2.949), (8, 0.05, 3.031), (9, 0.05, 3.102),
                                         (10, 0.05, 3.164), (2, 0.10, 1.645), (4, 0.10, 2.291), (10, 0.10, 2.920)])
def test_nemenyi_q_matches_the_published_table(k, alpha, q):
    """Demsar (2006), Table 5(a), entries truncated to 3 decimals."""
    assert ranks.nemenyi_q(k, alpha) == pytest.approx(q, abs=1e-3)


def test_critical_difference_for_five_sets_and_four_strategies():
    assert ranks.critical_difference(4, 5) == pytest.approx(2.10, abs=0.005)


def test_exact_permutation_p_against_brute_force():
    scores = np.array([[3, 2, 1, 0], [2, 3, 0, 1], [3, 1, 2, 0], [1, 1, 0, 2]], float)  # a tie in the last row
    r = ranks.ranks_of(scores)
    observed = ranks.friedman_statistic(r.sum(axis=0), 4, 4)
    hits = total = 0
    for perms in product(*(list(permutations(row)) for row in r)):
        total += 1
        hits += ranks.friedman_statistic(np.sum(perms, axis=0), 4, 4) >= observed - 1e-9
    assert ranks.exact_permutation_p(r) == pytest.approx(hits / total)


def test_every_data_set_agreeing_is_the_smallest_p():
    scores = np.tile([4.0, 3.0, 2.0, 1.0], (5, 1))
    r = ranks.friedman(scores, list("abcd"), list("vwxyz"))
    assert r.mean_ranks.tolist() == [1, 2, 3, 4] and math.isinf(r.f) and r.p_f == 0.0
    assert r.p_exact == pytest.approx(1 / 24 ** 4)  # the observed order, or the same order in every set
    assert r.groups() == [["a", "b", "c"], ["b", "c", "d"]]  # CD 2.10: a and d are separated


def _run(tmp_path, name, accuracies, size=20):
    """A run folder of one data set: strategy -> its test accuracy per seed."""
    from zoo_bench.results.store import RunStore

    store = RunStore(tmp_path / name)
    store.write_meta({"suite_name": f"r_{name}", "suite": {"dataset": {"path": name}}, "selection": None,
                      "started_at": "now"})
    for strategy, per_seed in accuracies.items():
        for seed, acc in enumerate(per_seed):
            store.append({"trial_id": f"torch/b/{strategy}/n={size}/seed={seed}", "backend": "torch", "backbone": "b",
                          "strategy": strategy, "params": {}, "size_per_class": size, "seed": seed, "status": "ok",
                          "test_accuracy": acc, "test_images": 100, "train_time_s": 0.1, "wall_s": 1.0})
    return tmp_path / name


def test_rank_command_on_constructed_runs(tmp_path):
    runs = [_run(tmp_path, "alpha", {"svm": [0.90, 0.92], "knn": [0.80, 0.82], "logreg": [0.95, 0.93]}),
            _run(tmp_path, "beta", {"svm": [0.70, 0.72], "knn": [0.60, 0.62], "logreg": [0.75, 0.73], "extra": [0.9]}),
            _run(tmp_path, "gamma", {"svm": [0.50, 0.52], "knn": [0.55, 0.57], "logreg": [0.65, 0.63]})]
    proc = subprocess.run([sys.executable, "-m", "zoo_bench.cli", "rank", *map(str, runs), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "ranks across 3 data sets at 20 images per class" in proc.stdout and "left out" in proc.stdout
    [data] = json.loads((tmp_path / "out/ranks.json").read_text())
    assert data["datasets"] == ["alpha", "beta", "gamma"] and data["dropped"] == ["extra"]
    assert dict(zip(data["strategies"], data["mean_ranks"])) == {"svm": pytest.approx(7 / 3), "knn": pytest.approx(8 / 3),
                                                                 "logreg": 1.0}
    assert data["p_exact"] == pytest.approx(ranks.exact_permutation_p(np.array(data["ranks"])))
    assert (tmp_path / "out/cd_n20.png").stat().st_size > 5000 and "<img" in (tmp_path / "out/report.html").read_text()


def test_rank_refuses_one_data_set_twice_and_folders_that_are_not_runs(tmp_path):
    a = _run(tmp_path, "alpha", {"svm": [0.9]})
    (tmp_path / "copy").mkdir()
    b = _run(tmp_path / "copy", "alpha", {"svm": [0.9]})
    with pytest.raises(Exception, match="already given by another run folder"):
        ranks.load_scores([a, b])
    with pytest.raises(Exception, match="not a run folder"):
        ranks.load_scores([a, tmp_path / "nothing"])
