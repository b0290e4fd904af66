"""The run folder read back: rows in the suite's order whatever order the trials finished in."""
from __future__ import annotations

import random

from zoo_bench.results.store import RunStore, load_run


def row(backend: str, backbone: str, strategy: str, size: int, seed: int) -> dict:
    return {"trial_id": f"{backend}/{backbone}/{strategy}/n={size}/seed={seed}", "backend": backend,
            "backbone": backbone, "strategy": strategy, "params": {}, "size_per_class": size, "seed": seed,
            "status": "ok", "test_accuracy": 0.5}


def test_a_parallel_run_reads_back_in_suite_order(tmp_path):
    suite = {"run": {"backends": ["torch", "keras"], "backbones": ["b2", "b1"]},
             "strategies": {"svm": {}, "last_layer": {}, "scratch": {}}}
    wanted = [row(be, bb, st, n, s) for be in ("torch", "keras") for bb in ("b2", "b1")
              for st in ("svm", "last_layer", "scratch") for n in (8, 40) for s in (0, 1)]
    shuffled = wanted[:]
    random.Random(3).shuffle(shuffled)  # the order parallel workers finish in
    store = RunStore(tmp_path / "run")
    store.write_meta({"suite": suite})
    for r in shuffled:
        store.append(r)
    assert list(load_run(store.run_dir)["trial_id"]) == [r["trial_id"] for r in wanted]
