"""A/A test of the CI gates: how often does identical code fail them, and is a planted slowdown caught?

Why: a gate that fires on unchanged code teaches a team to ignore it. This runs the CI suite N times on
the same code through ``zoo-bench run`` and N times through ``pytest --zoo-suite`` (after one warm-up
run of each, not counted, so every counted run finds the same caches), then compares every earlier
run with every later one, N(N-1)/2 comparisons of identical code per tool:

* ``zoo-bench compare`` (the library's own ``compare``) with ``--gate`` (default: an accuracy gate of
  -1 point and a timing gate of +25%, as a team gating both would write);
* pytest-benchmark's own regression checks (``pytest_benchmark.utils.parse_compare_fail``) for each
  ``--rule`` on the benchmarks the runs saved. Runs 2..N also ran with ``--benchmark-compare=0001
  --benchmark-compare-fail=RULE`` (the first rule), so pytest-benchmark's own exit code is counted too.

With ``--plant-ms`` one more run of each tool sleeps that many milliseconds in every training batch of
the trials that train on images (the CI suite's ``scratch``): compared with the first run, both gates
must catch it. The tables are Markdown, for the README.

    python benchmarks/aa_gates.py --data-root ../shared/data --runs 5 --out /tmp/aa --plant-ms 20
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from itertools import combinations
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_GATES = ["accuracy:-1pt", "epoch_time:+25%"]
DEFAULT_RULES = ["median:25%", "min:25%", "median:50%"]


def plant_child(plant_ms: float, argv: list[str]) -> int:
    """Run ``zoo-bench ...`` or ``pytest ...`` in this process, each image batch of a fit slowed by a sleep."""
    import zoo_bench_torch.augment as torch_augment

    real = torch_augment.augment

    def slowed(*args, **kwargs):
        time.sleep(plant_ms / 1000)
        return real(*args, **kwargs)

    torch_augment.augment = slowed
    if argv[0] == "pytest":
        import pytest

        return int(pytest.main(argv[1:]))
    from zoo_bench.cli import main

    return main(argv[1:])


def run(cmd: list[str], out: Path, name: str, env: dict[str, str], plant_ms: float | None = None) -> dict:
    """One run of a tool; its wall time and exit code."""
    if plant_ms is not None:
        cmd = [sys.executable, __file__, "--child-plant-ms", str(plant_ms), "--", *cmd]
    elif cmd[0] == "pytest":
        cmd = [sys.executable, "-m", "pytest", *cmd[1:]]
    else:
        cmd = [sys.executable, "-m", "zoo_bench.cli", *cmd[1:]]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True)
    (out / "logs").mkdir(exist_ok=True)
    (out / "logs" / f"{name}.log").write_text(done.stdout + done.stderr)
    return {"name": name, "rc": done.returncode, "wall_s": round(time.perf_counter() - start, 1)}


def cli_cmd(suite: Path, out: Path, run_id: str) -> list[str]:
    return ["zoo-bench", "run", str(suite), "--run-id", run_id, "--results-dir", str(out / "cli"), "--no-progress"]


def pytest_cmd(suite: Path, out: Path, run_id: str, compare_rule: str | None) -> list[str]:
    cmd = ["pytest", "-q", "-p", "no:cacheprovider", "--zoo-suite", str(suite), "--zoo-results-dir",
           str(out / "pytest"), "--zoo-run-id", run_id, "--benchmark-storage", str(out / "storage"),
           "--benchmark-json", str(out / "bench" / f"{run_id}.json")]
    if compare_rule:
        cmd += ["--benchmark-compare=0001", f"--benchmark-compare-fail={compare_rule}"]
    if run_id == "aa1":
        cmd += ["--benchmark-autosave"]  # storage 0001: what later runs compare with
    return cmd


def compare_pairs(run_dirs: list[Path], gates: list[str], suite: Path) -> tuple[list[dict], Counter]:
    """`compare` of each earlier run (baseline) with each later one; the failed lines by metric and trial."""
    from zoo_bench.plan.gates import Gate
    from zoo_bench.plugins import load_plugins
    from zoo_bench.results.compare import compare, load_side

    strategies = load_plugins().strategies
    parsed = [Gate.parse(g) for g in gates]
    results, failed = [], Counter()
    for i, j in combinations(range(len(run_dirs)), 2):
        report = compare(load_side(run_dirs[i]), load_side(run_dirs[j]), parsed, strategies)
        bad = [line for line in report.lines if line.status == "fail"]
        for line in bad:
            failed[(line.metric, short(line.config))] += 1
        results.append({"baseline": i + 1, "current": j + 1, "exit": report.exit_code, "failed_lines": len(bad)})
    return results, failed


def short(config: str) -> str:
    """A configuration's backbone, strategy and size, without its parameters."""
    parts = config.split("/")
    strategy = parts[2].split("[", 1)[0] if len(parts) > 2 else config
    return f"{parts[1]}/{strategy}/{parts[-1]}" if len(parts) > 3 else config


def benchmarks_of(path: Path) -> dict[str, dict]:
    data = json.loads(path.read_text())
    return {b["name"]: b["stats"] for b in data["benchmarks"]}


def pytest_pairs(files: list[Path], rules: list[str]) -> dict[str, tuple[int, int, Counter]]:
    """Per rule: comparisons, failed comparisons, failed benchmarks by trial (pytest-benchmark's own checks)."""
    from pytest_benchmark.utils import parse_compare_fail

    runs = [benchmarks_of(f) for f in files]
    out = {}
    for rule in rules:
        check = parse_compare_fail(rule)
        failed_pairs, failed = 0, Counter()
        for i, j in combinations(range(len(runs)), 2):
            bad = [name for name, stats in runs[j].items() if name in runs[i] and check.fails(stats, runs[i][name])]
            failed_pairs += bool(bad)
            for name in bad:  # test_trial[TRIAL_ID]: counted per configuration, its seeds together
                failed[short(name[name.index("[") + 1:-1].rsplit("/seed=", 1)[0])] += 1
        out[rule] = (len(runs) * (len(runs) - 1) // 2, failed_pairs, failed)
    return out


def spread_lines(run_dirs: list[Path]) -> list[str]:
    """Each configuration's timed epochs over the runs: median and range of its runs' means."""
    from statistics import median

    from zoo_bench.results.store import RunStore

    per: dict[str, list[float]] = {}
    for run_dir in run_dirs:
        by_config: dict[str, list[float]] = {}
        for row in RunStore(run_dir).rows():
            if row.get("epoch_time_s"):
                by_config.setdefault(short(row["trial_id"].rsplit("/seed=", 1)[0]), []).append(row["epoch_time_s"])
        for config, values in by_config.items():
            per.setdefault(config, []).append(sum(values) / len(values))
    return [f"| {c} | {1000 * median(v):.1f} | {1000 * min(v):.1f} to {1000 * max(v):.1f} | "
            f"{100 * (max(v) / min(v) - 1):.0f}% |" for c, v in sorted(per.items())]


def main() -> None:
    if "--child-plant-ms" in sys.argv:
        at = sys.argv.index("--child-plant-ms")
        sys.exit(plant_child(float(sys.argv[at + 1]), sys.argv[sys.argv.index("--") + 1:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--suite", type=Path, default=REPO / "suites" / "ci.toml")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--gate", action="append", help=f"compare gates (default: {' '.join(DEFAULT_GATES)})")
    parser.add_argument("--rule", action="append", help=f"pytest-benchmark rules (default: {' '.join(DEFAULT_RULES)})")
    parser.add_argument("--plant-ms", type=float, help="one more run with this sleep in every image training batch")
    parser.add_argument("--tools", default="cli,pytest", help="which tools to run: cli, pytest or both")
    parser.add_argument("--analyse-only", action="store_true", help="compare the runs already in --out")
    args = parser.parse_args()
    gates, rules = args.gate or DEFAULT_GATES, args.rule or DEFAULT_RULES
    out = args.out.resolve()
    (out / "bench").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ZOO_BENCH_DATA_ROOT": str(args.data_root.resolve())}
    suite = args.suite.resolve()
    tools = args.tools.split(",")
    log = []
    if not args.analyse_only:
        for tool in tools:
            if tool == "cli":
                log.append(run(cli_cmd(suite, out, "warmup"), out, "cli-warmup", env))
                log += [run(cli_cmd(suite, out, f"aa{k}"), out, f"cli-aa{k}", env) for k in range(1, args.runs + 1)]
                if args.plant_ms:
                    log.append(run(cli_cmd(suite, out, "planted"), out, "cli-planted", env, args.plant_ms))
            else:
                log.append(run(pytest_cmd(suite, out, "warmup", None), out, "pytest-warmup", env))
                log += [run(pytest_cmd(suite, out, f"aa{k}", rules[0] if k > 1 else None), out, f"pytest-aa{k}", env)
                        for k in range(1, args.runs + 1)]
                if args.plant_ms:
                    log.append(run(pytest_cmd(suite, out, "planted", rules[0]), out, "pytest-planted", env,
                                   args.plant_ms))
        (out / "runs.json").write_text(json.dumps(log, indent=1))
    else:
        log = json.loads((out / "runs.json").read_text())
    name = suite.stem
    print(f"# A/A test: {suite.name}, {args.runs} runs per tool, {os.cpu_count()} CPUs\n")
    print("| run | exit | wall s |\n| --- | --- | --- |")
    for entry in log:
        print(f"| {entry['name']} | {entry['rc']} | {entry['wall_s']} |")
    if "cli" in tools:
        runs = [out / "cli" / name / f"aa{k}" for k in range(1, args.runs + 1)]
        pairs, failed = compare_pairs(runs, gates, suite)
        print(f"\n## zoo-bench compare, gates {' '.join(gates)}: {len(pairs)} comparisons of identical code\n")
        print(f"failed comparisons (exit 1): {sum(p['exit'] == 1 for p in pairs)} of {len(pairs)}; "
              f"exit codes {Counter(p['exit'] for p in pairs)}\n")
        print("| metric | trial | failed comparisons |\n| --- | --- | --- |")
        for (metric, config), count in sorted(failed.items()):
            print(f"| {metric} | {config} | {count} of {len(pairs)} |")
        if not failed:
            print("| (none) | | |")
        print("\n| trial (epoch timings) | median of runs, ms | runs' range, ms | max/min - 1 |\n| --- | --- | --- | --- |")
        print("\n".join(spread_lines(runs)))
        if args.plant_ms:
            planted, lines = compare_pairs([runs[0], out / "cli" / name / "planted"], gates, suite)
            print(f"\nplanted {args.plant_ms:g} ms per image batch: compare exit {planted[0]['exit']}; failed "
                  f"lines: {', '.join(f'{m} {c}' for (m, c) in sorted(lines)) or 'none'}")
    if "pytest" in tools:
        files = [out / "bench" / f"aa{k}.json" for k in range(1, args.runs + 1)]
        print(f"\n## pytest-benchmark --benchmark-compare-fail: {args.runs * (args.runs - 1) // 2} comparisons "
              "of identical code\n")
        counts = sorted({len(benchmarks_of(f)) for f in files})
        print(f"benchmarks per run: {', '.join(map(str, counts))} (trials that are not benchmarks are not compared)\n")
        print("| rule | failed comparisons | failed benchmarks (trial: count over its seeds and the pairs) |\n"
              "| --- | --- | --- |")
        for rule, (total, bad, failed) in pytest_pairs(files, rules).items():
            detail = ", ".join(f"{c} {n}x" for c, n in sorted(failed.items())) or "none"
            print(f"| {rule} | {bad} of {total} | {detail} |")
        own = [e for e in log if e["name"].startswith("pytest-aa") and e["name"] != "pytest-aa1"]
        print(f"\npytest-benchmark's own verdict, runs 2..{args.runs} against run 1 with {rules[0]}: "
              f"{sum(e['rc'] != 0 for e in own)} of {len(own)} failed (exit codes {[e['rc'] for e in own]})")
        if args.plant_ms:
            planted_file = out / "bench" / "planted.json"
            rc = next((e["rc"] for e in log if e["name"] == "pytest-planted"), None)
            result = pytest_pairs([files[0], planted_file], rules) if planted_file.exists() else {}
            print(f"planted {args.plant_ms:g} ms per image batch: pytest exit {rc} with {rules[0]}; " + "; ".join(
                f"{rule}: {', '.join(sorted(f)) or 'not caught'}" for rule, (_, _, f) in result.items()))


if __name__ == "__main__":
    main()
