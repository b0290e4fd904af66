"""An accelerator out-of-memory, forced, and zoo-bench's retry at half the batch down to one that fits.

Why: a run must survive a batch that does not fit: the trial halves ``run.batch_size`` down to
``run.min_batch_size`` and goes on. On CUDA this caps the process's share of GPU memory
(``torch.cuda.set_per_process_memory_fraction``, to ``--cap-gib`` of the card) and runs a ``full``
EfficientNet-Lite0 trial that starts at a batch far too large for it, through the real runner in this
process. On a CPU, where nothing runs out, ``--simulate`` makes the torch backend's ``fit`` raise torch's
own CUDA out-of-memory error for any batch above ``--fits`` images, which exercises the same retry path
(it says so in its output: the memory is not measured there).

    python benchmarks/oom_retry.py --data-root .benchdata/gpu_check --device cuda [--cap-gib 1.5]
    python benchmarks/oom_retry.py --data-root .benchdata/gpu_check_quick --device cpu --simulate --fits 4
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from zoo_bench.run.runner import QuietReporter

SUITE = """
[suite]
name = "oom"
seeds = [0]
[dataset]
source = "folder"
path = "cats_dogs"
val_fraction = 0.2
sizes = [{size}]
[run]
backends = ["torch"]
backbones = ["efficientnet_lite0"]
batch_size = {batch_size}
min_batch_size = 2
image_size = {image_size}
[strategies.full]
epochs = 1
"""


class NoteTaker(QuietReporter):
    """The runner's reporter: keeps the notes (the retries) and the finished rows, prints nothing."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.rows: list[dict] = []

    def trial_finished(self, trial, row): self.rows.append(row)
    def note(self, trial, text): self.notes.append(text)


def simulate_cap(fits: int) -> None:
    """Make the torch backend's ``fit`` fail as CUDA does for a pixel batch above ``fits`` images."""
    import torch
    from zoo_bench_torch.backend import TorchBackend

    real_fit = TorchBackend.fit

    def fit(self, model, x, y, *, batch_size, **kw):
        if getattr(x, "dtype", None) is not None and x.dtype.name == "uint8" and batch_size > fits:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (simulated: batch {batch_size} above {fits})")
        return real_fit(self, model, x, y, batch_size=batch_size, **kw)

    TorchBackend.fit = fit


def measure(data_root: Path, device: str = "cuda", cap_gib: float = 1.5, batch_size: int = 256, size: int = 100,
            simulate: bool = False, fits: int = 4, image_size: int = 0) -> dict[str, Any]:
    """Run one ``full`` trial under the cap; the row's final batch size, its status and the retries."""
    import torch

    from zoo_bench.plugins import load_plugins
    from zoo_bench.run.prepare import RunOptions, prepare_run
    from zoo_bench.run.runner import Runner
    from zoo_bench.plan.suite import parse_suite

    out: dict[str, Any] = {"device": device, "start_batch_size": batch_size, "simulated": simulate}
    if simulate:
        simulate_cap(fits)
        out["fits"] = fits
    else:
        total = torch.cuda.get_device_properties(0).total_memory
        fraction = min(1.0, cap_gib * 2**30 / total)
        torch.cuda.set_per_process_memory_fraction(fraction, 0)
        out.update(cap_gib=cap_gib, memory_fraction=fraction, device_name=torch.cuda.get_device_name(0))
    registry = load_plugins()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "oom.toml").write_text(SUITE.format(size=size, batch_size=batch_size, image_size=image_size))
        suite = parse_suite(work / "oom.toml", registry)
        options = RunOptions(data_root=data_root.resolve(), cache_dir=work / "cache", device=device)
        prepared = prepare_run(suite, registry, options, work / "results" / "oom" / "r")
        reporter = NoteTaker()
        Runner(prepared, reporter, None).run()
        prepared.store.unlock()
    [row] = reporter.rows
    out.update(status=row["status"], error=row.get("error"), final_batch_size=row.get("batch_size"),
               test_accuracy=row.get("test_accuracy"), peak_memory_mb=row.get("peak_memory_mb"),
               retries=[n for n in reporter.notes if "out of memory" in n])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True, help="a folder holding cats_dogs/")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--cap-gib", type=float, default=1.5, help="GPU memory the process may use")
    parser.add_argument("--batch-size", type=int, default=256, help="the batch size the trial starts at")
    parser.add_argument("--size", type=int, default=100, help="images per class")
    parser.add_argument("--simulate", action="store_true", help="no GPU: fail batches above --fits as CUDA would")
    parser.add_argument("--fits", type=int, default=4)
    args = parser.parse_args()
    print(json.dumps(measure(args.data_root, args.device, args.cap_gib, args.batch_size, args.size, args.simulate,
                             args.fits), indent=1))


if __name__ == "__main__":
    main()
