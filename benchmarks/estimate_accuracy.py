"""How close does ``zoo-bench run SUITE --estimate`` come to the real wall time, with cold and warm caches?

For each suite, in a fresh cache folder: the estimate, then the real run (cold: nothing cached); then the
estimate again, twice (measured: results elsewhere, so dry trials price everything; from earlier runs:
the cold run's rows supply each trial's own time), then the real run again (warm: every image and feature
cached). Each real run and each estimate is a separate ``zoo-bench`` process, timed from outside, so the
estimate's own start-up counts as the run's does. The goal is every estimate within 30% of its run.
Prints a Markdown table and writes ``estimate_accuracy.json`` to ``--out``.

    python benchmarks/estimate_accuracy.py --data-root ../shared/data --out /tmp/est \\
        suites/quickstart.toml suites/peft.toml suites/cats_dogs.toml
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def zoo_bench(args: list[str], log: Path, data_root: Path) -> float:
    """Run ``zoo-bench ARGS`` with its output in ``log``; the seconds it took (exits on failure)."""
    env = {**os.environ, "ZOO_BENCH_DATA_ROOT": str(data_root)}
    start = time.perf_counter()
    with open(log, "w") as fh:
        code = subprocess.run([sys.executable, "-m", "zoo_bench.cli", *args], stdout=fh, stderr=subprocess.STDOUT,
                              env=env, cwd=REPO).returncode
    seconds = time.perf_counter() - start
    if code != 0:
        sys.exit(f"zoo-bench {' '.join(args)} exited {code}; see {log}")
    return seconds


def estimated_seconds(log: Path) -> float:
    """The total an estimate printed ("estimated wall time: 4 min 39 s")."""
    text = " ".join(log.read_text().split())
    found = re.search(r"estimated wall time: ((?:\d+ h )?(?:\d+ min)?(?: ?[\d.]+ s)?)", text)
    if not found:
        sys.exit(f"{log}: no estimated wall time")
    seconds = 0.0
    for value, unit in re.findall(r"([\d.]+) (h|min|s)\b", found.group(1)):
        seconds += float(value) * {"h": 3600, "min": 60, "s": 1}[unit]
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suites", nargs="+", type=Path)
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path("/tmp/estimate_accuracy"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for suite in args.suites:
        name = suite.stem
        cache, runs, elsewhere = args.out / f"cache_{name}", args.out / "results", args.out / "elsewhere"
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(runs / name, ignore_errors=True)
        common = ["--cache-dir", str(cache)]

        def step(label: str, extra: list[str]) -> tuple[float, Path]:
            log = args.out / f"{name}.{label}.log"
            return zoo_bench(["run", str(suite), *extra, *common], log, args.data_root), log

        _, log = step("estimate_cold", ["--estimate", "--results-dir", str(elsewhere)])
        cold_estimate = estimated_seconds(log)
        cold_run, _ = step("run_cold", ["--results-dir", str(runs), "--run-id", "cold", "--no-progress"])
        _, log = step("estimate_warm", ["--estimate", "--results-dir", str(elsewhere)])
        warm_estimate = estimated_seconds(log)
        _, log = step("estimate_warm_earlier", ["--estimate", "--results-dir", str(runs)])
        earlier_estimate = estimated_seconds(log)
        warm_run, _ = step("run_warm", ["--results-dir", str(runs), "--run-id", "warm", "--no-progress"])
        for cache_state, how, estimate, real in (("cold", "measured", cold_estimate, cold_run),
                                                  ("warm", "measured", warm_estimate, warm_run),
                                                  ("warm", "earlier runs", earlier_estimate, warm_run)):
            results.append({"suite": str(suite), "cache": cache_state, "estimate_from": how,
                            "estimate_s": round(estimate, 1), "run_s": round(real, 1),
                            "error": round(estimate / real - 1, 3)})
    (args.out / "estimate_accuracy.json").write_text(json.dumps(results, indent=2))
    print("| suite | cache | estimate from | estimated | real run | error |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for r in results:
        print(f"| `{r['suite']}` | {r['cache']} | {r['estimate_from']} | {r['estimate_s']:.0f} s | {r['run_s']:.0f} s "
              f"| {100 * r['error']:+.0f}% |")
    worst = max(abs(r["error"]) for r in results)
    print(f"\nworst error {100 * worst:.0f}% (goal: within 30%)")
    return 0 if worst <= 0.30 else 1


if __name__ == "__main__":
    sys.exit(main())
