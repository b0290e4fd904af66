"""How a local pool of workers scales: trials that only sleep, serial in this process against N workers.

Why: the pool's promise is that units (a backend's backbone) run side by side. A strategy that only
sleeps (the test-only ``sleep`` strategy of tests/fault_strategies.py) costs time and no compute, so
the ratio measures the pool's scheduling and process overhead, not the machine's cores. The suite:
24 trials of 1 s (4 backbones x 6 seeds, tiny synthetic images; the sleep strategy builds no model).
Prints the wall time of each run and the speed-up serial / pool (ideal: N, for N <= 4 units).
``--executor ray`` measures Ray tasks on a local Ray instance instead of the local pool (each task
asks for CPUs / workers of the machine's cores, so N run at once).

    python benchmarks/pool_scaling.py [--workers 4] [--seconds 1.0] [--executor pool|ray]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import fault_strategies  # noqa: E402  (the test-only sleep strategy)

from zoo_bench.run.executors import PoolExecutor  # noqa: E402
from zoo_bench.plugins import load_plugins  # noqa: E402
from zoo_bench.run.prepare import RunOptions, prepare_run  # noqa: E402
from zoo_bench.run.runner import QuietReporter, Runner  # noqa: E402
from zoo_bench.plan.suite import parse_suite  # noqa: E402

BACKBONES = ["efficientnet_lite0", "tiny_cnn", "resnet50", "mobilenet_v2"]


def suite_text(seconds: float) -> str:
    return f"""
[suite]
name = "pool_scaling"
seeds = [0, 1, 2, 3, 4, 5]
[dataset]
source = "synthetic"
train_per_class = 4
test_per_class = 2
image_size = 32
sizes = [2]
[run]
backends = ["torch"]
backbones = {BACKBONES!r}
image_size = 32
device = "cpu"
[strategies.sleep]
seconds = {seconds}
"""


def run(folder: Path, workers: int | None, seconds: float, executor_name: str = "pool") -> tuple[float, int]:
    """Wall seconds of the whole run, and its ok trials."""
    registry = load_plugins(extra=[fault_strategies])
    folder.mkdir(parents=True)
    path = folder / "suite.toml"
    path.write_text(suite_text(seconds))
    suite = parse_suite(path, registry)
    options = RunOptions(data_root=folder, cache_dir=folder / "cache", device="cpu")
    start = time.perf_counter()
    prepared = prepare_run(suite, registry, options, folder / "results")
    executor = None
    if workers and executor_name == "ray":
        from zoo_bench.run.executors import worker_setup
        from zoo_bench.run.executors.ray_cluster import RayExecutor

        setup = worker_setup(suite, registry, options, prepared.listing, prepared.store.run_dir)
        executor = RayExecutor(setup, QuietReporter(), None, num_gpus=0, num_cpus=(os.cpu_count() or 1) / workers,
                               workers=workers)
    elif workers:
        executor = PoolExecutor.for_run(suite, registry, options, prepared.listing, prepared.store.run_dir, QuietReporter(),
                                        workers=workers, threads=1)
    rows = Runner(prepared, QuietReporter(), executor).run()
    return time.perf_counter() - start, sum(r["status"] == "ok" for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--executor", choices=["pool", "ray"], default="pool")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        serial, ok_serial = run(Path(tmp) / "serial", None, args.seconds)
        pooled, ok_pool = run(Path(tmp) / "pool", args.workers, args.seconds, args.executor)
    trials = 6 * len(BACKBONES)
    print(f"{trials} trials of {args.seconds:g} s over {len(BACKBONES)} units (backbones)")
    print(f"serial, in this process: {serial:7.2f} s ({ok_serial} ok)")
    print(f"{args.workers} workers ({args.executor}):        {pooled:7.2f} s ({ok_pool} ok)")
    print(f"speed-up serial / pool:  {serial / pooled:7.2f}x (pool time / serial: {pooled / serial:.2f})")


if __name__ == "__main__":
    main()
