"""What a worker (a pool process or a Ray task, on this machine or another) does with a unit.

It rebuilds the driver's trial runner from plain data (:class:`WorkerSetup`), checks it can see the
data and the run folder (shared storage: the same paths on every node), runs the unit's trials in
order and hands each message to ``emit``: ``("started", trial)``, ``("epoch", ...)``, ``("note", ...)``,
``("result", TrialResult)``, then ``("done", None)``; or ``("setup_error", text)`` when it cannot start.
"""
from __future__ import annotations

import gc
import importlib
import os
import socket
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ...dataset import Listing
from ...errors import DataError
from ...plan.suite import Suite
from ...plan.trial import Trial
from ...plugins import IN_PROCESS, load_plugins
from ..prepare import make_backends
from ..trials import TrialRunner
from .base import Unit

Emit = Callable[[tuple[str, Any]], None]
THREADS_ENV = "ZOO_BENCH_WORKER_THREADS"


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs to rebuild the driver's trial runner: all plain, picklable data."""

    suite: Suite  # validated once, by the driver: workers do not read or check the TOML again
    options: Any  # RunOptions
    listing: Listing
    run_dir: Path
    extra_plugins: tuple[str, ...] = ()  # importable module names of in-process plugins
    extra_paths: tuple[str, ...] = ()  # folders those modules are imported from
    env: tuple[tuple[str, str], ...] = ()  # the driver's ZOO_BENCH_* settings (plugin autoload...)
    cwd: str = ""  # the driver's working folder: relative paths mean the same on every node


def worker_setup(suite: Suite, registry: Any, options: Any, listing: Listing, run_dir: Path) -> WorkerSetup:
    """Setup for workers that rebuild this suite (profile already merged) and its in-process plugins."""
    modules = tuple(p.module for p in registry.plugins if p.distribution == IN_PROCESS)
    paths = []
    for name in modules:
        top = sys.modules.get(name.split(".")[0])
        file = getattr(top, "__file__", None)
        if file:
            folder = Path(file).parent
            paths.append(str(folder.parent if Path(file).name == "__init__.py" else folder))
        else:  # a namespace package: the folders it spans
            paths += [str(Path(p).parent) for p in getattr(top, "__path__", [])]
    env = tuple((k, v) for k, v in os.environ.items() if k.startswith("ZOO_BENCH_") and k != THREADS_ENV)
    return WorkerSetup(suite, options, listing, run_dir, modules, tuple(dict.fromkeys(paths)), env, os.getcwd())


def worker_env(threads: int | None = None, gpu: str | None = None) -> dict[str, str]:
    """Environment a worker sets before any framework is imported.

    GPU pinning; CPU threads (recorded in each row as ``worker_threads``); and no framework grabbing
    the whole GPU up front (JAX preallocates 75% of it, TensorFlow all of it), since a worker's GPU
    may be shared with the driver or, under Ray, with other tasks.
    """
    env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), **{THREADS_ENV: str(threads)})
    return env


def check_storage(setup: WorkerSetup) -> None:
    """Fail at unit start, in one line, when this node cannot see the data or the run folder."""
    where = socket.gethostname()
    if setup.cwd:
        try:
            os.chdir(setup.cwd)
        except OSError:
            raise DataError(f"node {where} cannot see the driver's working folder {setup.cwd} (every node needs "
                            "the data set, weights and results folders at the driver's paths)") from None
    paths = [p for part in (setup.listing.train, setup.listing.test) for p, _ in part[:1]]
    for path in paths:
        if not os.path.exists(path):
            raise DataError(f"node {where} cannot see the data: {path} does not exist (every node needs the "
                            "data set, weights and results folders at the driver's paths)")
    if not setup.run_dir.is_dir():
        raise DataError(f"node {where} cannot see the run folder {setup.run_dir} (every node needs the "
                        "results folder at the driver's path)")


def build_runner(setup: WorkerSetup, events: Any) -> TrialRunner:
    """The driver's trial runner, rebuilt in this process."""

    for folder in setup.extra_paths:
        if folder not in sys.path:
            sys.path.insert(0, folder)
    registry = load_plugins(extra=[importlib.import_module(m) for m in setup.extra_plugins])
    suite = setup.suite
    backends = make_backends(suite, registry, setup.options)
    if THREADS_ENV in os.environ and "torch" in sys.modules:  # OMP_NUM_THREADS set it already; be sure
        sys.modules["torch"].set_num_threads(int(os.environ[THREADS_ENV]))
    return TrialRunner(suite, registry, setup.listing, backends, setup.options, setup.run_dir, events)


class EmitEvents:
    """A worker's progress events, handed to ``emit`` for the driver."""

    def __init__(self, emit: Emit) -> None:
        self.emit = emit

    def trial_started(self, trial: Trial) -> None:
        self.emit(("started", trial))

    def epoch(self, trial: Trial, index: int, total: int, stats) -> None:
        self.emit(("epoch", (trial, index, total, stats)))

    def note(self, trial: Trial, text: str) -> None:
        self.emit(("note", (trial, text)))


def forward_event(events: Any, kind: str, payload: Any) -> bool:
    """Hand a worker's progress message (started, epoch, note) to the driver's events; False for others."""
    if kind == "started":
        events.trial_started(payload)
    elif kind == "epoch":
        events.epoch(*payload)
    elif kind == "note":
        events.note(*payload)
    else:
        return False
    return True


def run_unit(setup: WorkerSetup, unit: Unit, env: dict[str, str], emit: Emit) -> None:
    """Run a unit's trials in this process (set up from ``env`` first), emitting every message."""
    os.environ.update(dict(setup.env))
    os.environ.update(env)  # before torch, TensorFlow or JAX is imported: GPU pinning and thread counts
    events = EmitEvents(emit)
    try:
        check_storage(setup)
    except DataError as exc:  # this node's view of the storage: fails this unit only, not its backbone
        emit(("unit_error", str(exc)))
        return
    try:
        runner = build_runner(setup, events)
    except BaseException:  # the driver records why, and does not start this unit's backbone again
        emit(("setup_error", traceback.format_exc()))
        return
    # What exists now (frameworks, plugins, the suite) lives as long as this process: keep it out of the
    # collections the trial runner makes after each trial, which otherwise scan it all (0.2 s with torch)
    gc.collect()
    gc.freeze()
    threads = os.environ.get(THREADS_ENV)
    for trial in unit.trials:
        events.trial_started(trial)
        result = runner.run(trial, unit.sweeps.get(trial.id, ()))
        if threads:
            result.row["worker_threads"] = int(threads)
        emit(("result", result))
    emit(("done", None))


def setup_error_line(unit: Unit, text: str, who: str = "the worker process") -> str:
    """One line for every trial of a unit whose worker could not start (``text``: a traceback or a line)."""
    last = text.strip().splitlines()[-1] if text.strip() else "unknown error"
    if last.startswith("zoo_bench.errors."):  # our own errors are sentences already
        last = last.split(": ", 1)[-1]
    return f"{who} for {unit.label} could not start: {last}"
