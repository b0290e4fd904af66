"""zoo-bench command line: run, validate, show, plugins, list, data get.

Exit codes: 0 every trial finished (ok or diverged); 1 a trial failed; 2 bad suite, data or usage;
130 interrupted (Ctrl-C); 143 terminated (SIGTERM).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .backend import Backend
from .errors import DataError, PluginError, SuiteError, UsageError, ZooBenchError, one_line
from .params import defaults
from .plan.grid import expand
from .plan.suite import Suite, parse_suite, profile_names, read_toml
from .plan.trial import Trial, TrialLabels, select
from .plugins import Registry, load_plugins
from .results.store import RunStore, load_run, new_run_id
from .run.prepare import RunOptions, check_sizes, list_dataset, prepare_run, weights_to_download
from .run.runner import Runner
from .show import report, tracking

ENV_DATA = "ZOO_BENCH_DATA_ROOT"
ENV_CACHE = "ZOO_BENCH_CACHE_DIR"
ENV_WEIGHTS = "ZOO_BENCH_WEIGHTS_DIR"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", type=Path, default=None,
                   help=f"folder holding data sets (env {ENV_DATA}; default ./data)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help=f"decoded-image and download cache (env {ENV_CACHE}; default ~/.cache/zoo-bench)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo-bench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"zoo-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a suite's grid of trials")
    run.add_argument("suite", type=Path)
    run.add_argument("--dry-run", action="store_true", help="print the grid (trial ids) and its size, run nothing")
    run.add_argument("--estimate", action="store_true",
                     help="print the expected wall time per strategy and in total, from a dry run of each trial "
                          "timed on this machine (or earlier runs of the suite here), counting cache hits; run nothing")
    run.add_argument("--run-id", help="name of the run folder; an existing one is resumed")
    run.add_argument("--profile", help="apply [profiles.NAME] of the suite (default: 'cpu' when no GPU is present)")
    run.add_argument("--no-profile", action="store_true", help="never apply a profile automatically")
    run.add_argument("--results-dir", type=Path, default=Path("results"))
    run.add_argument("--weights-dir", default=None, help=f"folder with pretrained weight files (env {ENV_WEIGHTS})")
    run.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default=None)
    run.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=None)
    run.add_argument("--trials", nargs="+", metavar="PATTERN", help="run only trial ids matching these patterns")
    run.add_argument("--no-progress", action="store_true", help="no live progress bar (logs only)")
    run.add_argument("--mlflow", nargs="?", const="", default=None, metavar="URI",
                     help="log the run to MLflow: a parent run, a nested run per trial (default store: "
                          "sqlite:///RESULTS_DIR/mlflow.db); also [tracking] mlflow = true in the suite")
    run.add_argument("--verbose", action="store_true",
                     help="name each trial by its whole id in progress lines (by default: the backbone, strategy, "
                          "the parameters that differ from the defaults or are swept, size and seed)")
    run.add_argument("--isolation", choices=["auto", "on", "off"], default="auto",
                     help="run trials in worker processes so a crashing trial cannot stop the suite "
                          "(auto: on where a GPU is used; --workers and --gpus imply it)")
    run.add_argument("--workers", type=int, metavar="N",
                     help="run units (a backend's backbone) in N worker processes at once (default: one per "
                          "GPU in --gpus or visible to torch; else 1). On CPU they split the cores")
    run.add_argument("--gpus", metavar="IDS",
                     help="comma-separated GPU ids, e.g. 0,1,3: one worker per id, each seeing only its GPU")
    run.add_argument("--executor", choices=["local", "ray"], default=None,
                     help="local: this process or a pool of worker processes here (default); ray: Ray tasks "
                          "(pip install 'zoo-bench[ray]'), a GPU each ([ray] num_gpus) on any node")
    run.add_argument("--ray-address", metavar="ADDR",
                     help="join this Ray cluster (e.g. 10.0.0.1:6379; implies --executor ray); without it "
                          "--executor ray starts a local Ray instance")
    run.add_argument("--save-models", action="store_true",
                     help="keep each trial's trained model in the run folder's models/ (weights only: safetensors "
                          "for torch, .weights.h5 for Keras, plus model.json), for `zoo-bench predict`")
    run.add_argument("--activation-maps", type=int, default=0, metavar="N",
                     help="Grad-CAM of N test images per trial (the first of each class in turn), one PNG per trial "
                          "in the run folder's activation_maps/ and in the report")
    _common(run)

    pred = sub.add_parser("predict", help="classify image files with a model saved by `run --save-models`")
    pred.add_argument("run_dir", type=Path, metavar="RUN", help="the run folder")
    pred.add_argument("trial", metavar="TRIAL", help="a trial id, or a part of one naming exactly one saved model")
    pred.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    pred.add_argument("--top", type=int, default=3, help="classes shown per image (default 3)")
    pred.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default=None)
    pred.add_argument("--batch-size", type=int, default=32)

    val = sub.add_parser("validate", help="check a suite (and its data) without running anything")
    val.add_argument("suite", type=Path)
    val.add_argument("--profile")
    _common(val)

    show = sub.add_parser("show", help="print the tables of a finished (or running) run folder")
    show.add_argument("run_dir", type=Path)
    show.add_argument("--by", help="regroup by these result columns, e.g. backbone,strategy")
    show.add_argument("--all", action="store_true", help="a run with [select]: every configuration, not defaults and tuned")
    show.add_argument("--versus", action="store_true",
                      help="paired differences: every pair of strategies in a cell, each against the best, tuned "
                           "against default, one strategy across backbones; then what to use")
    show.add_argument("--confusion", metavar="PATTERN",
                      help="print the confusion matrices of the trials whose id matches this shell pattern")

    plot = sub.add_parser("plot", help="write PNG plots of a run (accuracy against size, time per epoch)")
    plot.add_argument("run_dir", type=Path)
    plot.add_argument("--out", type=Path, help="folder for the PNGs (default: RUN_DIR/plots)")

    mlf = sub.add_parser("mlflow", help="copy a run folder to MLflow (what is not there yet): a parent run and a "
                                        "nested run per trial")
    mlf.add_argument("run_dir", type=Path)
    mlf.add_argument("uri", nargs="?", help="tracking URI (default: sqlite:///RESULTS/mlflow.db, RESULTS being the "
                                            "folder that holds the suite's folder)")

    rep = sub.add_parser("report", help="write one self-contained report file of a run")
    rep.add_argument("run_dir", type=Path)
    rep.add_argument("--format", choices=["md", "html"], default="html")
    rep.add_argument("--out", type=Path, help="file to write (default: RUN_DIR/report.FORMAT)")

    base = sub.add_parser("baseline", help="baselines for compare")
    base_sub = base.add_subparsers(dest="baseline_command", required=True)
    save = base_sub.add_parser("save", help="save a run as results/baselines/NAME.json")
    save.add_argument("run_dir", type=Path)
    save.add_argument("--name", required=True)
    save.add_argument("--dir", type=Path, default=Path("results/baselines"))

    cmp_ = sub.add_parser("compare", help="compare a run with a baseline (exit 0 pass, 1 regression, 2 no baseline "
                                          "or bad input, 3 errored or missing trials)")
    cmp_.add_argument("baseline", type=Path, help="baseline file or run folder")
    cmp_.add_argument("current", type=Path, help="run folder or baseline file")
    cmp_.add_argument("--fail", action="append", metavar="METRIC:LIMIT",
                      help="gate, e.g. accuracy:-1pt or epoch_time:+25%% (default: the suite's [compare] fail, "
                           "else accuracy:-1pt)")
    cmp_.add_argument("--timing-floor-ms", type=float, metavar="MS",
                      help="timing changes under this many ms never fail a timing gate, and trials whose epochs "
                           "are shorter are not gated (default: the suite's [compare] timing_floor_ms, else 5)")
    cmp_.add_argument("--format", choices=["table", "markdown", "json"], default="table")

    rank = sub.add_parser("rank", help="rank strategies across data sets: one run folder per data set; mean ranks, "
                                       "Friedman and Iman-Davenport tests, Nemenyi's critical-difference diagram")
    rank.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    rank.add_argument("--tuned", action="store_true", help="rank the runs' tuned tables (runs with [select]); "
                                                           "default: each strategy at its defaults")
    rank.add_argument("--out", type=Path, default=Path("ranks"),
                      help="folder for ranks.json, the diagrams cd_nSIZE.png and report.html (default ./ranks)")

    sub.add_parser("plugins", help="list plugins, their distributions and what they register")

    lst = sub.add_parser("list", help="browse what can be benchmarked")
    lst_sub = lst.add_subparsers(dest="what", required=True)
    bb = lst_sub.add_parser("backbones", help="backbones of every backend, timm's catalogue included")
    bb.add_argument("pattern", nargs="?", default="",
                    help="shell-style name pattern, case-insensitive: 'vit*', 'timm:convnext*', '*lite*'")
    bb.add_argument("--backend", help="only this backend's backbones")
    bb.add_argument("--pretrained", action="store_true", help="only backbones with pretrained weights")
    bb.add_argument("--available", action="store_true", help="only backbones whose weights are on this machine")
    bb.add_argument("--params", action="store_true", help="count parameters however long the listing")
    bb.add_argument("--weights-dir", default=None, help=f"also look for weights here (env {ENV_WEIGHTS})")

    data = sub.add_parser("data", help="data-set helpers")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    get = data_sub.add_parser("get", help="download a public data set into the data root")
    get.add_argument("name")
    get.add_argument("--url", help="download from this address instead (a mirror)")
    get.add_argument("--sha256", help="expected checksum of the archive at --url")
    _common(get)
    return parser


def _paths(args: argparse.Namespace) -> tuple[Path, Path]:
    data_root = args.data_root or Path(os.environ.get(ENV_DATA, "data"))
    cache = args.cache_dir or Path(os.environ.get(ENV_CACHE, Path.home() / ".cache" / "zoo-bench"))
    return data_root, cache


def _registry() -> Registry:
    registry = load_plugins()
    for line in registry.load_errors:
        report.error(line)
    return registry


def _has_accelerator(backend_cls) -> bool:
    """A backend plugin's GPU check; one that raises counts as no GPU (its trials report the fault)."""
    try:
        return bool(backend_cls.has_accelerator())
    except Exception:
        return False


def _choose_profile(raw: dict, registry: Registry, args: argparse.Namespace) -> str | None:
    if getattr(args, "profile", None):
        return args.profile
    if getattr(args, "no_profile", False) or "cpu" not in profile_names(raw):
        return None
    run = raw.get("run")  # not validated yet: validation comes after the profile is chosen
    backends = run.get("backends") if isinstance(run, dict) else None
    backends = [b for b in backends if isinstance(b, str)] if isinstance(backends, list) else []
    forced_cpu = getattr(args, "device", None) == "cpu"
    has_gpu = any(_has_accelerator(registry.backends[b]) for b in backends if b in registry.backends)
    if forced_cpu or not has_gpu:
        report.message(f"no GPU present: using the suite's 'cpu' profile (--profile NAME or --no-profile to change)")
        return "cpu"
    return None


def _load(args: argparse.Namespace, registry: Registry) -> tuple[Suite, RunOptions]:
    raw = read_toml(args.suite)
    suite = parse_suite(args.suite, registry, profile=_choose_profile(raw, registry, args), raw=raw)
    data_root, cache = _paths(args)
    options = RunOptions(data_root=data_root, cache_dir=cache,
                         weights_dir=getattr(args, "weights_dir", None) or os.environ.get(ENV_WEIGHTS),
                         device=getattr(args, "device", None), precision=getattr(args, "precision", None),
                         save_models=getattr(args, "save_models", False),
                         activation_maps=getattr(args, "activation_maps", 0) or 0)
    return suite, options


def cmd_validate(args: argparse.Namespace) -> int:
    registry = _registry()
    suite, options = _load(args, registry)
    listing = list_dataset(suite, registry, options, console=report.err)
    check_sizes(suite, listing)
    trials = expand(suite)
    for line in weights_to_download(trials, registry, options.weights_dir):
        report.message(f"warning: {line}")
    report.message(f"{args.suite}: ok ({len(trials)} trials; {len(listing.classes)} classes, "
                   f"{len(listing.train)} train and {len(listing.test)} test images)")
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler or ``kill``): stop like Ctrl-C, exit 143."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _visible_gpus(backends: dict) -> int:
    """The accelerators the run's backends can use (each backend counts its own framework's)."""
    return max((b.accelerators() for b in backends.values() if isinstance(b, Backend)), default=0)


def _check_executor_args(args: argparse.Namespace) -> list[str] | None:
    """The GPU ids asked for; refuses contradictory worker options before anything is written."""
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else None
    if args.ray_address and args.executor == "local":
        raise UsageError("--ray-address joins a Ray cluster; it cannot be combined with --executor local")
    if args.ray_address:
        args.executor = "ray"
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers {args.workers}: must be at least 1")
    if args.isolation == "off" and (args.workers or gpus or args.executor == "ray"):
        raise UsageError("--isolation off runs every trial in this process; it cannot be combined with "
                         "--workers, --gpus or --executor ray (which run trials in worker processes)")
    if args.executor == "ray" and importlib.util.find_spec("ray") is None:
        raise UsageError("--executor ray needs Ray, which is not installed: pip install 'zoo-bench[ray]'")
    if args.executor == "ray" and gpus:
        raise UsageError("--gpus picks GPUs of this machine for the local pool; with --executor ray, Ray places "
                         "each unit on a free GPU (set [ray] num_gpus in the suite)")
    return gpus


def _executor(args: argparse.Namespace, prepared, reporter):
    """The executor the options ask for: Ray tasks, this process, or a pool of worker processes.

    ``--executor ray`` (or ``--ray-address``): Ray tasks, ``--workers`` capping how many run at once.
    ``--isolation off`` runs in this process and cannot be combined with any of the others.
    A pool of one worker is ``--isolation on``; ``auto`` uses one worker per visible GPU where a GPU
    is used, and this process on a CPU-only machine.
    """
    from .run.executors import PoolExecutor, make_units
    from .run.sweeps import group_sweeps, strategy_sweep_params

    gpus = _check_executor_args(args)
    p = prepared
    if args.executor == "ray":
        from .run.executors.ray_cluster import RayExecutor

        executor = RayExecutor.for_run(p.suite, p.registry, p.options, p.listing, p.store.run_dir, reporter,
                                       address=args.ray_address, workers=args.workers)
        report.message(executor.describe())
        return executor
    on_gpu = any(isinstance(b, Backend) and b.device().kind != "cpu" for b in prepared.backends.values())
    if args.isolation == "off" or (args.isolation == "auto" and not on_gpu and not args.workers and not gpus):
        return None
    if gpus is None and on_gpu:
        count = _visible_gpus(prepared.backends)
        gpus = [str(i) for i in range(count)] if count > 1 else None
    workers = args.workers or (len(gpus) if gpus else 1)
    done = p.store.finished_ids()
    todo, sweeps = group_sweeps([t for t in p.trials if t.id not in done], strategy_sweep_params(p.registry))
    at_once = min(workers, len(make_units(todo, sweeps, workers)))  # units are split until every worker has one
    threads = None
    if not on_gpu and at_once > 1:  # workers that will run at once split the cores
        threads = max(1, (os.cpu_count() or 1) // at_once)
    where = f"GPUs {','.join(gpus)}" if gpus else (f"{threads} CPU threads each" if threads else "")
    report.message(f"trials run in {workers} worker process{'es' if workers > 1 else ''}"
                   f"{' (' + where + ')' if where else ''}, each taking a backbone's trials (or a share of them) "
                   "at a time")
    return PoolExecutor.for_run(p.suite, p.registry, p.options, p.listing, p.store.run_dir, reporter,
                                workers=workers, gpus=gpus, threads=threads)


def _evidence(df, meta: dict, run_dir: Path, write: bool = True, frames=None):
    """The paired evidence of the run's tables (written to ``evidence.json`` when ``write``); None, with a
    one-line error, if it cannot be had: the tables and the saved trials stand without it. ``frames``: the
    tables' frames (:func:`zoo_bench.results.evidence.table_frames`), when the caller has them."""
    from .results import evidence

    try:
        found = evidence.analyse(df, meta, run_dir, frames=frames)
        if write:
            evidence.write(found, run_dir)
        return found
    except Exception as exc:  # an analysis fault must not cost the run's summary
        report.error(f"{run_dir}: paired evidence not computed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        return None


def _print_with_evidence(df, meta: dict, run_dir: Path, title: str, write: bool) -> None:
    """The run's tables and what to use under them, the tuned choice made once for both."""
    from .results.evidence import table_frames

    frames = table_frames(df, meta.get("selection"))
    report.print_tables(df, title=title, selection=meta.get("selection"), frames=frames,
                        evidence=_evidence(df, meta, run_dir, write=write, frames=frames))


def _finish(store: RunStore, trials: list, title: str):
    """Write the table file and the evidence, print the tables of this run's trials; return (table path, rows)."""
    df = load_run(store.run_dir)
    table_path = store.write_table(df)
    df = df[df["trial_id"].str.replace("/refit$", "", regex=True).isin({t.id for t in trials})]
    if not df.empty:
        _print_with_evidence(df, store.meta(), store.run_dir, title, write=True)
    return table_path, df


def _fold_cost(suite: Suite, registry: Registry, trials: list) -> str:
    """What K-fold selection adds, said before the run: fits per configuration, and which strategies."""
    fits = suite.folds * suite.repeats
    names = sorted({t.strategy for t in trials if not t.refit})
    on_features = [n for n in names if registry.strategies[n].on_features]
    pixels = [n for n in names if n not in on_features]
    text = (f"K-fold selection ({suite.folds} folds x {suite.repeats} repeat{'s' if suite.repeats > 1 else ''}): each "
            f"configuration of {', '.join(on_features) or 'no strategy'} is also fitted {fits} times on its folds")
    if pixels and suite.fold_pixels:
        count = sum(1 for t in trials if t.strategy in pixels)
        text += (f"; fold_pixels: {', '.join(pixels)} too, {count} trials x {fits} more trainings on pixels, about "
                 f"{fits + 1} times their cost")
    elif pixels:
        text += f"; {', '.join(pixels)} are chosen on the validation split (fold_pixels = true folds them too)"
    return text + "; then each chosen configuration is refit on all the images of its size and tested"


def cmd_run(args: argparse.Namespace) -> int:
    registry = _registry()
    suite, options = _load(args, registry)
    trials = select(expand(suite), args.trials)
    if args.trials and not trials:
        raise UsageError(f"no trial id matches {' '.join(args.trials)}")
    if args.dry_run:
        for trial in trials:
            report.out.print(trial.id, highlight=False, markup=False, soft_wrap=True)
        report.out.print(f"{len(trials)} trials", highlight=False)
        return 0
    if args.estimate:
        return _estimate(args, suite, registry, options, trials)
    _check_executor_args(args)
    if args.executor == "ray":  # an unreachable cluster is refused before the run folder is touched
        from .run.executors.ray_cluster import connect

        connect(args.ray_address)
    run_id = args.run_id or new_run_id()
    prepared = prepare_run(suite, registry, options, args.results_dir / suite.name / run_id, trials=trials,
                           console=report.err)
    store = prepared.store
    trials = prepared.trials
    for line in prepared.provider_changes:
        report.message(f"warning: {line}")
    for line in weights_to_download(trials, registry, options.weights_dir):
        report.message(f"warning: {line}")
    for trial_id, why in prepared.not_applicable:
        report.message(f"not run: {trial_id}: {why}")
    if prepared.healed_bytes:
        report.message(f"{store.jsonl}: removed an unfinished last line ({prepared.healed_bytes} bytes) left by an "
                       "interrupted write")
    for name, backend in prepared.backends.items():
        if isinstance(backend, Exception):
            report.error(f"backend {name}: {backend}")
    report.message(f"run {run_id}: {len(trials)} trials -> {store.run_dir}")
    if suite.folds:
        report.message(_fold_cost(suite, prepared.registry, trials))
    labels = TrialLabels(trials, _defaults(prepared.registry))
    reporter = report.RichReporter(enabled=not args.no_progress, label=None if args.verbose else labels)
    tracker = _tracker(args, suite, store.run_dir, lambda row: labels(Trial.from_row(row)))
    if tracker is not None:
        reporter = tracking.TrackingReporter(reporter, tracker, lambda line: report.message(f"warning: {line}"))
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        Runner(prepared, reporter, _executor(args, prepared, reporter)).run()
    except KeyboardInterrupt as exc:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the summary short
        _, df = _finish(store, trials, title=f"{suite.name} (interrupted)")
        _end_tracking(reporter, store.run_dir, "KILLED")
        report.error(f"interrupted: the trial in progress was abandoned; {len(df)} of {len(trials)} trials are "
                     f"saved in {store.run_dir}; resume with: zoo-bench run {args.suite} --run-id {run_id}")
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    report.out.record = isinstance(reporter, tracking.TrackingReporter)  # the printed tables, for MLflow too
    table_path, df = _finish(store, trials, title=suite.name)
    _end_tracking(reporter, store.run_dir, "FINISHED")
    counts = df["status"].value_counts()
    ok, failed, diverged = (int(counts.get(k, 0)) for k in ("ok", "error", "diverged"))
    extra = f", {diverged} diverged" if diverged else ""
    report.message(f"{ok} of {len(df)} trials ok ({failed} failed{extra}); results in {table_path}")
    return 1 if failed else 0


def _estimate(args: argparse.Namespace, suite: Suite, registry: Registry, options: RunOptions, trials: list) -> int:
    """``run --estimate``: dry-run each trial in a scratch folder, price it here, print the table; the results
    folder is not touched (a resumed ``--run-id`` counts only the trials it lacks)."""
    import tempfile
    import time

    import psutil

    from .run.estimate import earlier_rows, estimate
    from .show.estimate_table import estimate_lines, estimate_table

    started = psutil.Process().create_time()
    existing = args.results_dir / suite.name / args.run_id if args.run_id else None
    if existing is not None and (existing / "trials.jsonl").exists():
        done = RunStore(existing).finished_ids()
        trials = [t for t in trials if t.id not in done]
        report.message(f"{existing}: {len(done)} trials finished already; estimating the {len(trials)} left")
    if not trials:
        report.message("nothing to estimate: every trial is finished")
        return 0
    with tempfile.TemporaryDirectory(prefix="zoo-bench-estimate-") as scratch:
        prepared = prepare_run(suite, registry, options, Path(scratch) / suite.name, trials=trials, lock=False,
                               console=report.err)
        for name, backend in prepared.backends.items():
            if isinstance(backend, Exception):
                raise UsageError(f"backend {name}: {backend}: its trials cannot be timed")
        start_s = time.time() - started
        devices = {b.device().name for b in prepared.backends.values() if isinstance(b, Backend)}
        earlier = {}
        for device in devices:
            earlier.update(earlier_rows(args.results_dir, suite.name, device))
        report.message(f"estimating {len(prepared.trials)} trials of {args.suite}: a dry run of each, its passes over "
                       "pixels timed on a sample")
        result = estimate(prepared, start_s, lambda: _finish_unseen(prepared.store, prepared.trials, suite.name),
                          earlier)
    for trial_id, error in result.failed:
        report.message(f"warning: {trial_id}: failed in its dry run ({error}); counted as far as it got")
    report.out.print(estimate_table(result, f"{suite.name}: expected wall time"))
    for line in estimate_lines(result):
        report.out.print(line, highlight=False, markup=False, soft_wrap=True)
    return 0


def _finish_unseen(store: RunStore, trials: list, title: str) -> None:
    """What the end of a run does (table file, paired evidence, tables), printed nowhere: ``--estimate`` times it."""
    from rich.console import Console

    saved = report.out
    with open(os.devnull, "w") as sink:
        report.out = Console(file=sink, width=160)
        try:
            _finish(store, trials, title)
        finally:
            report.out = saved


def _defaults(registry: Registry) -> dict[str, dict[str, Any]]:
    """Each strategy's parameter defaults: what a trial's short label leaves out."""
    return {name: defaults(cls.params) for name, cls in registry.strategies.items()}


def _tracker(args: argparse.Namespace, suite: Suite, run_dir: Path, label: Any):
    """The MLflow tracker of this run (``--mlflow`` or the suite's ``[tracking]``), or None; a store that
    cannot be had costs one line, and the run goes on without it."""
    uri = args.mlflow if args.mlflow is not None else (suite.tracking.get("mlflow_uri") or ""
                                                        if suite.tracking.get("mlflow") else None)
    if uri is None:
        return None
    uri = uri or tracking.default_uri(args.results_dir)
    try:
        tracker = tracking.Tracker(uri, run_dir, label)
        earlier = tracker.sync()  # a resumed run: the trials finished before, where they are not logged yet
    except ZooBenchError as exc:
        report.message(f"warning: {exc}; the run goes on without MLflow tracking")
        return None
    report.message(f"MLflow: {uri}, experiment {suite.name!r}" + (f", {earlier} earlier trials logged" if earlier
                                                                   else ""))
    return tracker


def _end_tracking(reporter: Any, run_dir: Path, status: str) -> None:
    """The parent run's artifacts (the printed tables, the run's files, a report) and its end status."""
    if not isinstance(reporter, tracking.TrackingReporter) or reporter.tracker is None:
        return
    tables = report.out.export_text(clear=True) if report.out.record else None
    report.out.record = False
    try:
        reporter.tracker.finish(tables, status)
    except Exception as exc:
        report.message(f"warning: MLflow: the run's artifacts were not logged ({one_line(exc)}); log them with: "
                       f"zoo-bench mlflow {run_dir} {reporter.tracker.uri}")


def cmd_mlflow(args: argparse.Namespace) -> int:
    if not (args.run_dir / "run.json").exists():
        raise UsageError(f"{args.run_dir}: not a run folder (no run.json)")
    uri = args.uri or tracking.default_uri(args.run_dir.resolve().parent.parent)
    df, meta = _run_frame(args.run_dir)
    with report.out.capture() as captured:
        _print_with_evidence(df, meta, args.run_dir, meta.get("suite_name") or "", write=False)
    trials = [Trial.from_row(row) for row in RunStore(args.run_dir).rows()]
    labels = TrialLabels(trials, _defaults(_registry()))
    tracker, logged = tracking.export(args.run_dir, uri, captured.get(), lambda row: labels(Trial.from_row(row)))
    report.message(f"MLflow {uri}: experiment {meta.get('suite_name')!r}, run {tracker.parent}: {logged} trials "
                   f"logged, {len(tracker.logged) - logged} there already")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np
    from scipy.special import softmax

    from .run import saved_models

    if args.top < 1 or args.batch_size < 1:
        raise UsageError("--top and --batch-size must be at least 1")
    saved = saved_models.find(args.run_dir, args.trial)
    loaded = saved_models.load(saved, _registry(), device=args.device)
    images, paths = saved_models.read_images([str(p) for p in args.images], saved.description)
    scores = loaded.scores(images, args.batch_size)
    classes = saved.description["classes"]
    linear = loaded.linear is not None
    values = scores if linear else softmax(np.asarray(scores, np.float64), axis=1)
    report.message(f"{saved.description['trial_id']} ({'SVM margins' if linear else 'probabilities'})")
    for path, row in zip(paths, values):
        top = np.argsort(-row, kind="stable")[:args.top]
        text = ", ".join(f"{classes[i]} {row[i]:.3f}" for i in top)
        report.out.print(f"{path}: {text}", highlight=False, markup=False, soft_wrap=True)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    if not (args.run_dir / "trials.jsonl").exists():
        raise UsageError(f"{args.run_dir}: not a run folder (no trials.jsonl)")
    df = load_run(args.run_dir)
    meta = RunStore(args.run_dir).meta()
    title = meta.get("suite_name", args.run_dir.name)
    if args.by:
        by = [c.strip() for c in args.by.split(",") if c.strip()]
        unknown = [c for c in by if c not in df.columns]
        if unknown:
            raise UsageError(f"--by: unknown columns {unknown} (allowed: {', '.join(df.columns)})")
        report.out.print(report.grouped_table(df, by, title))
        return 0
    if args.confusion:
        from .show.confusion import confusion_for, confusion_table

        found = confusion_for(df, args.confusion)
        if not found:
            raise UsageError(f"--confusion {args.confusion!r}: no trial with a confusion matrix matches "
                             "(shell pattern on trial ids, e.g. 'torch/*/svm*n=50*')")
        classes = meta.get("classes") or [str(i) for i in range(len(found[0][1]))]
        for trial_id, matrix in found:
            report.out.print(confusion_table(matrix, classes, trial_id))
        return 0
    if args.versus:
        found = _evidence(df, meta, args.run_dir, write=False)
        if found is not None:
            for table in report.versus_tables(found):
                report.out.print(table)
            report.print_recommendations(found)
        return 0 if found is not None else 2
    if args.all or df.empty:
        report.print_tables(df, title=title, selection=meta.get("selection"), show_all=args.all)
    else:
        _print_with_evidence(df, meta, args.run_dir, title, write=False)
    return 0


def _run_frame(run_dir: Path):
    if not (run_dir / "trials.jsonl").exists():
        raise UsageError(f"{run_dir}: not a run folder (no trials.jsonl)")
    df = load_run(run_dir)
    if df.empty:
        raise UsageError(f"{run_dir}: no finished trials yet")
    return df, RunStore(run_dir).meta()


def cmd_plot(args: argparse.Namespace) -> int:
    from .show.plots import plot_run

    from .results.selection import display_frame

    df, meta = _run_frame(args.run_dir)
    found = _evidence(df, meta, args.run_dir, write=False)
    df = display_frame(df, meta.get("selection"))  # a tuned run: each strategy at its defaults, and tuned
    for path in plot_run(df, args.out or args.run_dir / "plots", meta.get("suite_name", args.run_dir.name),
                         meta.get("classes"), evidence=found):
        report.message(f"wrote {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .show.document import write_report

    df, meta = _run_frame(args.run_dir)
    path = write_report(df, meta, args.out or args.run_dir / f"report.{args.format}", args.format, run_dir=args.run_dir,
                        evidence=_evidence(df, meta, args.run_dir))
    report.message(f"wrote {path}")
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    from .results.compare import save_baseline

    path = save_baseline(args.run_dir, args.name, args.dir)
    report.message(f"baseline saved: {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .results.compare import compare, gates_from, load_side
    from .results.timing import TimingRule

    baseline, current = load_side(args.baseline), load_side(args.current)
    strategies = load_plugins().strategies  # lets baselines written by older versions match today's ids
    suite = current.suite or baseline.suite
    result = compare(baseline, current, gates_from(args.fail, suite), strategies,
                     TimingRule.from_suite(suite, args.timing_floor_ms))
    for warning in result.warnings:
        report.message(f"warning: {warning}")
    if args.format == "json":
        print(result.as_json())
    elif args.format == "markdown":
        print(report.compare_markdown(result, baseline.label, current.label), end="")
    else:
        report.out.print(report.compare_table(result, baseline.label, current.label))
    return result.exit_code


def cmd_rank(args: argparse.Namespace) -> int:
    import json

    from .results import ranks
    from .results.store import atomic_write

    if len(args.run_dirs) < 2:
        raise UsageError("rank needs run folders of at least 2 data sets")
    found = ranks.rank_sizes(args.run_dirs, tuned=args.tuned)
    args.out.mkdir(parents=True, exist_ok=True)
    figures = []
    for item in found:
        if item.result is None:
            report.message(f"{item.size} images per class: not ranked ({item.why_none})")
            continue
        report.out.print(report.rank_table(item))
        if item.result is not None:
            path = ranks.cd_diagram(item.result, args.out / f"cd_n{item.size}.png",
                                    f"mean ranks at {item.size} images per class")
            figures.append((item.size, path))
            report.message(f"wrote {path}")
    data = [{"size": i.size, "dropped": i.dropped, "why_none": i.why_none,
             **(i.result.as_dict() if i.result is not None else {})} for i in found]
    atomic_write(args.out / "ranks.json", (json.dumps(data, indent=1) + "\n").encode())
    html_path = ranks.write_html(found, figures, args.out / "report.html", [str(p) for p in args.run_dirs])
    report.message(f"wrote {args.out / 'ranks.json'} and {html_path}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    registry = _registry()
    table = Table(title="zoo-bench plugins")
    for col in ("plugin", "distribution", "version", "registers"):
        table.add_column(col)
    for info in registry.plugins:
        if info.error:
            regs = f"[red]failed to load: {escape(info.error)}[/red]"
        else:
            parts = [escape(f"{kind}: {', '.join(names)}") for kind, names in info.registers.items()]
            for name, cls in registry.backends.items():
                if registry.owners.get(("backend", name)) == info.name:
                    try:
                        ok, why = cls.available()
                    except Exception as exc:  # a faulty backend plugin: say so, list the rest
                        ok, why = False, f"{type(exc).__name__}: {exc}".splitlines()[0]
                    if not ok:
                        parts.append(f"[yellow]backend {name} unavailable: {escape(why)}[/yellow]")
            parts += [f"[yellow]{escape(problem)}[/yellow]" for problem in info.problems]
            regs = "\n".join(parts) or "(nothing)"
        table.add_row(info.name, info.distribution, info.version, regs)
    report.out.print(table)
    return 1 if any(info.error for info in registry.plugins) else 0  # a plugin that did not load is a failure


def cmd_list(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from .show.zoo_list import list_backbones

    registry = _registry()
    if args.backend and args.backend not in registry.backends:
        raise UsageError(f"unknown backend {args.backend!r} (known: {', '.join(sorted(registry.backends)) or 'none'})")
    weights_dir = args.weights_dir or os.environ.get(ENV_WEIGHTS)
    rows, notes = list_backbones(registry, args.pattern, backend=args.backend, pretrained=args.pretrained,
                                 available=args.available, weights_dir=weights_dir,
                                 count_params=True if args.params else None)
    table = Table(title=f"backbones{' matching ' + escape(repr(args.pattern)) if args.pattern else ''}")
    for col, justify in (("name", "left"), ("backend", "left"), ("input", "right"), ("params", "right"),
                         ("weights", "left"), ("here", "left")):
        table.add_column(col, justify=justify)
    for r in rows:
        params = f"{r.params / 1e6:.1f}M" if r.params is not None else ""
        here = "-" if r.weights == "none" else {True: "yes", False: "no", None: "?"}[r.present]
        arch = r.name.split(".")[0] + "."
        weights = r.weights[len(arch):] if r.weights.startswith(arch) else r.weights  # timm: the tag alone
        table.add_row(escape(r.name), r.backend, f"{r.image_size} px", params, escape(weights), here)
    report.out.print(table)
    report.out.print(f"{len(rows)} backbone{'s' if len(rows) != 1 else ''}; params: without the classifier; "
                     "here: pretrained weights on this machine (- none to load, ? cannot tell)")
    for note in notes:
        report.message(note)
    return 0


def cmd_data_get(args: argparse.Namespace) -> int:
    from .run.download import get

    registry = _registry()
    spec = registry.downloads.get(args.name)
    if spec is None:
        raise UsageError(f"unknown data set {args.name!r} (known: {', '.join(sorted(registry.downloads)) or 'none'})")
    if args.url and not args.sha256:
        raise UsageError("--url needs --sha256 so the download can be verified")
    data_root, cache = _paths(args)
    dest, counts = get(spec, data_root, cache, url=args.url, sha256=args.sha256, console=report.err)
    details = ", ".join(f"{k} {v}" for k, v in counts.items())
    report.message(f"{args.name}: ready in {dest} ({details})")
    return 0


COMMANDS = {"run": cmd_run, "validate": cmd_validate, "show": cmd_show, "plugins": cmd_plugins, "list": cmd_list,
            "baseline": cmd_baseline, "compare": cmd_compare, "plot": cmd_plot, "report": cmd_report,
            "mlflow": cmd_mlflow,
            "predict": cmd_predict, "rank": cmd_rank}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = cmd_data_get if args.command == "data" else COMMANDS[args.command]
    try:
        return handler(args)
    except SuiteError as exc:
        for line in exc.problems:
            report.error(line)
        return 2
    except (DataError, UsageError, PluginError) as exc:
        report.error(str(exc))
        return 2
    except ZooBenchError as exc:
        report.error(str(exc))
        return 2
    except OSError as exc:  # a results, cache or data path that is a file, unwritable, full
        report.error(f"{exc.filename or ''}: {exc.strerror or exc}" if exc.filename else str(exc))
        return 2
    except KeyboardInterrupt:
        report.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
