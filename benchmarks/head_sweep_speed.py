"""What a sweep of heads costs when fit_heads trains them together instead of one after another.

Why: hyper-parameter sweeps of frozen-base heads repeat the same small fit many times. fit_heads
stacks the heads of a sweep into one forward/backward pass per step; this measures whether that
pays off. It times (a) one head alone, (b) the sweep's heads one after another (what a sweep costs
without batching), and (c) the whole sweep in one fit_heads call, alternating the order of the
three over the repeats, and prints medians with the ratios (b)/(c) (speed-up over separate fits)
and (c)/(a) (the batched sweep's cost in single fits). Targets: (b)/(c) >= 4 on CPU, (c)/(a) <= 2
on a GPU.

    python benchmarks/head_sweep_speed.py [--device cpu|cuda] [--repeats 3] [--threads T]
    python benchmarks/head_sweep_speed.py --features FEATS.npy --labels LABELS.npy

Without --features it uses seeded random normal features (400 train + 100 validation vectors of
width 1280, 2 classes). The sweep: hidden (256,), dropout 0.5, adam, lr in {1e-4, 3e-4, 1e-3,
3e-3, 1e-2} x weight_decay in {0, 1e-4}, batch 32, 20 epochs. The "CPU s" column is this
process's CPU time: when it is far from the wall time, or ratios move between runs, other load on
the machine is competing for the cores (try --threads 1).
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from typing import Callable

import numpy as np
import torch

from zoo_bench.backend import cpu_name
from zoo_bench_torch.head_sweep import HeadConfig, fit_heads

LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
WEIGHT_DECAYS = (0.0, 1e-4)


def load_data(args: argparse.Namespace,
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(x, y, x_val, y_val, classes) on the device: a file's features or seeded random ones."""
    rng = np.random.default_rng(args.seed)
    if args.features:
        feats = np.load(args.features).astype(np.float32)
        labels = np.load(args.labels).astype(np.int64)
        order = rng.permutation(len(labels))[: args.n + args.n_val]
        feats, labels = feats[order], labels[order]
        classes = int(labels.max()) + 1
    else:
        feats = rng.standard_normal((args.n + args.n_val, args.dim), dtype=np.float32)
        labels = rng.integers(0, args.classes, args.n + args.n_val)
        classes = args.classes
    x = torch.from_numpy(feats).to(device)
    y = torch.from_numpy(labels).to(device)
    n = min(args.n, len(y) - 1)
    return x[:n], y[:n], x[n:], y[n:], classes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="auto: bf16 autocast on cuda (as the torch backend), fp32 on cpu")
    parser.add_argument("--features", help=".npy (N, D) float features instead of random ones")
    parser.add_argument("--labels", help=".npy (N,) int labels for --features")
    parser.add_argument("--n", type=int, default=400, help="training vectors")
    parser.add_argument("--n-val", type=int, default=100, help="validation vectors")
    parser.add_argument("--dim", type=int, default=1280, help="feature width of random features")
    parser.add_argument("--classes", type=int, default=2, help="classes of random features")
    parser.add_argument("--hidden", type=int, nargs="*", default=[256], help="hidden widths; none: a linear head")
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def measure(args: argparse.Namespace) -> dict:
    """Median wall and CPU seconds of (a) one head, (b) the sweep's heads one by one, (c) one fit_heads call."""
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    precision = args.precision if args.precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None
    if precision == "bf16":
        autocast = lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)  # noqa: E731
    x, y, xv, yv, classes = load_data(args, device)
    sweep = [HeadConfig(tuple(args.hidden), args.dropout, "adam", lr, weight_decay=wd, init_seed=i)
             for i, (lr, wd) in enumerate((lr, wd) for lr in LRS for wd in WEIGHT_DECAYS)]

    def fit(configs: list[HeadConfig], epochs: int = args.epochs) -> None:
        fit_heads(x, y, configs, num_classes=classes, epochs=epochs, batch_size=args.batch_size,
                  order_rng=np.random.default_rng(args.seed), val=(xv, yv), autocast=autocast)

    def timed(work: Callable[[], None]) -> tuple[float, float]:
        """Wall seconds and this process's CPU seconds (the latter shows when other load skews the wall)."""
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        work()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start, time.process_time() - start_cpu

    def separately() -> None:
        for config in sweep:
            fit([config])

    cases: dict[str, Callable[[], None]] = {"a": lambda: fit(sweep[:1]), "b": separately, "c": lambda: fit(sweep)}
    fit(sweep[:1], epochs=2)  # warm-up: kernels, allocator, lazy initialisation
    fit(sweep, epochs=2)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    orders = [["a", "b", "c"], ["c", "b", "a"], ["b", "c", "a"], ["a", "c", "b"], ["c", "a", "b"], ["b", "a", "c"]]
    for repeat in range(args.repeats):
        for name in orders[repeat % len(orders)]:
            times[name].append(timed(cases[name]))
    a, b, c = (statistics.median(t[0] for t in times[name]) for name in "abc")
    a_cpu, b_cpu, c_cpu = (statistics.median(t[1] for t in times[name]) for name in "abc")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {"device_name": name, "device_kind": device.type, "precision": precision, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "train": len(y), "val": len(yv), "dim": x.shape[1],
            "classes": classes, "heads": len(sweep), "epochs": args.epochs, "batch_size": args.batch_size,
            "one_head_s": a, "one_by_one_s": b, "batched_s": c, "one_head_cpu_s": a_cpu,
            "one_by_one_cpu_s": b_cpu, "batched_cpu_s": c_cpu, "speedup": b / c, "sweep_cost_in_fits": c / a}


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    if bool(args.features) != bool(args.labels):
        parser.error("--features and --labels go together")
    r = measure(args)
    print(f"device: {r['device_name']} ({r['device_kind']}, {r['precision']}); torch {r['torch']}; "
          f"{r['threads']} CPU threads")
    print(f"data: {r['train']} train + {r['val']} val vectors of width {r['dim']}, {r['classes']} classes; "
          f"hidden {tuple(args.hidden)}, dropout {args.dropout}, batch {args.batch_size}, {args.epochs} epochs; "
          f"sweep of {r['heads']} adam heads (lr x weight_decay); median of {args.repeats}")
    rows = [("(a) one head alone", r["one_head_s"], r["one_head_cpu_s"]),
            (f"(b) {r['heads']} heads one after another", r["one_by_one_s"], r["one_by_one_cpu_s"]),
            (f"(c) {r['heads']} heads in one fit_heads call", r["batched_s"], r["batched_cpu_s"]),
            ("speed-up over separate fits (b)/(c)", r["speedup"], r["one_by_one_cpu_s"] / r["batched_cpu_s"]),
            ("batched sweep cost in single fits (c)/(a)", r["sweep_cost_in_fits"],
             r["batched_cpu_s"] / r["one_head_cpu_s"])]
    print(f"{'':<44}{'wall s':>10}{'CPU s':>10}")
    for label, wall, cpu in rows[:3]:
        print(f"{label:<44}{wall:>10.3f}{cpu:>10.3f}")
    for label, wall, cpu in rows[3:]:
        print(f"{label:<44}{wall:>10.2f}{cpu:>10.2f}")


if __name__ == "__main__":
    main()
