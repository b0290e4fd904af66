"""How many pairs of a run's strategies the paired test separates, against their separate intervals over seeds.

Why: tables used to compare strategies through each one's interval over seeds; two strategies tested
on the same images differ less from seed to seed than each varies alone, so the paired difference
(zoo_bench.results.evidence) sees more. For every pair of rows of every cell of each results table of a run
folder, this counts: "seed intervals" when the two 95% intervals over seeds do not overlap, "paired"
when the paired test separates them after Holm's correction over the cell's pairs (5%), and "paired,
uncorrected" without it. It prints one line per table, then each pair that either separates.

    python benchmarks/paired_power.py RUN_DIR [RUN_DIR ...]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from zoo_bench.results import evidence
from zoo_bench.results.store import RunStore, load_run
from zoo_bench.results.stats import estimate


def measure(run_dir: Path) -> list[dict]:
    """One record per table of the run: pairs, and how many each criterion separates."""
    df, meta = load_run(run_dir), RunStore(run_dir).meta()
    found = evidence.analyse(df, meta, run_dir)
    out = []
    for table in found.tables:
        pairs = [c for _, _, _, comps in table.cells for c in comps if c.diff is not None]

        def seed_interval(config):
            return estimate([row["test_accuracy"] for row in config.rows.values()])

        lines, by_seeds = [], 0
        for c in pairs:
            a, b = seed_interval(c.a), seed_interval(c.b)
            seeds = a.half_width is not None and b.half_width is not None and not a.overlaps(b)
            by_seeds += int(seeds)
            if seeds or c.diff.p < 0.05:
                lines.append(f"n={c.a.size} {c.a.label} - {c.b.label} = {c.diff.delta:+.2f}: seed intervals "
                             f"{'apart' if seeds else 'overlap'} ({100 * a.mean:.1f} ±{100 * a.half_width:.1f}, "
                             f"{100 * b.mean:.1f} ±{100 * b.half_width:.1f}); paired p {c.diff.p:.2g}, Holm {c.p_holm:.2g}")
        out.append({"run": str(run_dir), "table": table.name, "pairs": len(pairs), "seed_intervals": by_seeds,
                    "paired_holm": sum(c.p_holm < 0.05 for c in pairs),
                    "paired_uncorrected": sum(c.diff.p < 0.05 for c in pairs), "separated": lines})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    for run_dir in parser.parse_args().runs:
        for r in measure(run_dir):
            print(f"{r['run']} [{r['table']}]: {r['pairs']} pairs; separated by the seed intervals {r['seed_intervals']}, "
                  f"by the paired test {r['paired_holm']} (Holm within each cell; {r['paired_uncorrected']} uncorrected)")
            for line in r["separated"]:
                print(f"    {line}")


if __name__ == "__main__":
    main()
