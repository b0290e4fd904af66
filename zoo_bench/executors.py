"""Executors: where the trials of a run execute. The driver (``zoo_bench.runner``) submits units and
records the results they give back, in whatever order they finish.

* :class:`InProcessExecutor`: every trial in the driver's own process, one after another.
* :class:`PoolExecutor`: worker processes, ``workers`` of them at a time, one process per unit,
  each pinned to its own GPU (``CUDA_VISIBLE_DEVICES``) or, on CPU, given its share of the cores.
  A trial that kills its process (segfault, abort, ``os._exit``, out of host memory) becomes that
  trial's error row and a fresh process takes the unit's remaining trials. ``workers=1`` is
  ``--isolation on``.

A unit is the trials of one (backend, backbone, image size): they run in one process, in order, so
the backbone's bottleneck features are computed once and shared, and its GPU memory is returned
when the process ends. Workers are started with ``spawn``: forking a process that has touched CUDA
or framework thread pools is unsafe.
"""
from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Iterator

from .dataset import Listing
from .errors import TrialCrashedError
from .grid import Trial
from .plugins import IN_PROCESS
from .results import now_iso
from .trials import Events, TrialResult, TrialRunner, trial_row

POLL_S = 0.2


@dataclass
class Unit:
    """Trials that run together in one process, in order; ``sweeps``: trial id -> its head sweep."""

    key: tuple[str, str]  # (backend, backbone); one image size per backbone in a suite
    trials: list[Trial]
    sweeps: dict[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)


def make_units(trials: list[Trial], sweeps: dict[str, tuple[dict[str, Any], ...]]) -> list[Unit]:
    """Group trials by (backend, backbone), keeping their order; a unit per group."""
    units: dict[tuple[str, str], Unit] = {}
    for trial in trials:
        key = (trial.backend, trial.backbone)
        unit = units.setdefault(key, Unit(key, []))
        unit.trials.append(trial)
        if trial.id in sweeps:
            unit.sweeps[trial.id] = sweeps[trial.id]
    return list(units.values())


class Executor(ABC):
    """Runs submitted units and yields each trial's result as it finishes.

    Progress (a trial started, an epoch, a note) goes to the ``events`` the executor was made with,
    as it happens; every event names its trial, so several running trials can be shown at once.
    """

    @abstractmethod
    def submit(self, unit: Unit) -> None:
        """Queue a unit; it starts when a worker is free."""

    @abstractmethod
    def results(self) -> Iterator[TrialResult]:
        """Results of every submitted trial, as they finish, in any order; returns when all are done."""

    def cancel(self) -> None:
        """Abandon the trials in progress at once (Ctrl-C) and drop the queued ones."""

    def close(self) -> None:
        """Release workers after the last result."""


class InProcessExecutor(Executor):
    """Every trial in this process, one after another (a native crash ends the run)."""

    def __init__(self, runner: TrialRunner) -> None:
        self.runner = runner
        self.queue: deque[Unit] = deque()

    def submit(self, unit: Unit) -> None:
        self.queue.append(unit)

    def results(self) -> Iterator[TrialResult]:
        while self.queue:
            unit = self.queue.popleft()
            for trial in unit.trials:
                self.runner.events.trial_started(trial)
                yield self.runner.run(trial, unit.sweeps.get(trial.id, ()))

    def cancel(self) -> None:
        self.queue.clear()


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs to rebuild the driver's trial runner: all plain, picklable data."""

    suite_path: Path
    profile: str | None
    raw: dict[str, Any]
    options: Any  # RunOptions
    listing: Listing
    run_dir: Path
    extra_plugins: tuple[str, ...] = ()  # importable module names of in-process plugins


class _PipeEvents:
    """A worker's events: forwarded to the driver."""

    def __init__(self, conn) -> None:
        self.conn = conn

    def trial_started(self, trial: Trial) -> None:
        self.conn.send(("started", trial))

    def epoch(self, trial: Trial, index: int, total: int, stats) -> None:
        self.conn.send(("epoch", (trial, index, total, stats)))

    def note(self, trial: Trial, text: str) -> None:
        self.conn.send(("note", (trial, text)))


def _worker_main(setup: WorkerSetup, unit: Unit, env: dict[str, str], conn) -> None:
    """Worker: build the trial runner, run the unit's trials in order, send each result, exit."""
    os.environ.update(env)  # before any framework is imported: GPU pinning and thread counts
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    _exit_with_parent()
    from .plugins import load_plugins
    from .prepare import make_backends
    from .suite import parse_suite

    events = _PipeEvents(conn)
    try:
        registry = load_plugins(extra=[importlib.import_module(m) for m in setup.extra_plugins])
        suite = parse_suite(setup.suite_path, registry, profile=setup.profile, raw=setup.raw)
        backends = make_backends(suite, registry, setup.options)
        if "ZOO_BENCH_WORKER_THREADS" in env and "torch" in sys.modules:  # OMP_NUM_THREADS set it already
            sys.modules["torch"].set_num_threads(int(env["ZOO_BENCH_WORKER_THREADS"]))
        runner = TrialRunner(suite, registry, setup.listing, backends, setup.options, setup.run_dir, events)
    except BaseException:  # the driver records why, and does not start this unit's backbone again
        conn.send(("setup_error", traceback.format_exc()))
        return
    for trial in unit.trials:
        events.trial_started(trial)
        result = runner.run(trial, unit.sweeps.get(trial.id, ()))
        if "ZOO_BENCH_WORKER_THREADS" in env:
            result.row["worker_threads"] = int(env["ZOO_BENCH_WORKER_THREADS"])
        conn.send(("result", result))
    conn.send(("done", None))


def _exit_with_parent() -> None:
    """Stop this worker when its parent dies (a killed parent cannot stop it), not after the trial."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="zoo-bench parent watch").start()


def describe_exit(code: int | None) -> str:
    """``killed by signal 11 (SIGSEGV)`` or ``exited with code 3``."""
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-code} ({name})"
    return f"exited with code {code}"


@dataclass
class _Slot:
    """One running worker process and the unit it works through."""

    index: int
    proc: Any
    conn: Any
    unit: Unit
    left: deque  # trials of the unit not yet finished, in order
    started_at: float = 0.0  # when the trial in progress started (perf_counter)


class PoolExecutor(Executor):
    """Worker processes, ``workers`` at a time, one process per unit.

    ``gpus``: device ids; worker slot ``i`` sees only ``gpus[i % len(gpus)]``. ``threads``: CPU
    threads per worker (OMP/MKL and torch), recorded in each row as ``worker_threads``; None
    leaves the frameworks' defaults.
    """

    def __init__(self, setup: WorkerSetup, events: Events, workers: int = 1, gpus: list[str] | None = None,
                 threads: int | None = None) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.setup, self.events, self.workers = setup, events, workers
        self.gpus, self.threads = gpus, threads
        self.ctx = mp.get_context("spawn")
        self.queue: deque[Unit] = deque()
        self.slots: dict[int, _Slot] = {}
        self.setup_errors: dict[tuple[str, str], str] = {}

    @classmethod
    def for_run(cls, suite: Any, registry: Any, options: Any, listing: Listing, run_dir: Path, events: Events,
                **kwargs: Any) -> "PoolExecutor":
        """Workers that rebuild this suite (profile already merged) and the in-process plugins."""
        extra = tuple(p.module for p in registry.plugins if p.distribution == IN_PROCESS)
        return cls(WorkerSetup(suite.path, None, suite.raw, options, listing, run_dir, extra), events, **kwargs)

    def submit(self, unit: Unit) -> None:
        self.queue.append(unit)

    def _env(self, index: int) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(self.gpus[index % len(self.gpus)])
        if self.threads:
            env.update(OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads),
                       ZOO_BENCH_WORKER_THREADS=str(self.threads))
        return env

    def _start(self, index: int, unit: Unit) -> None:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker_main, args=(self.setup, unit, self._env(index), child), daemon=True,
                                name=f"zoo-bench {unit.key[0]}/{unit.key[1]}")
        proc.start()
        child.close()
        self.slots[index] = _Slot(index, proc, parent, unit, deque(unit.trials), time.perf_counter())

    def _fill(self) -> Iterator[TrialResult]:
        """Start queued units on free slots; units of a backbone that could not start fail at once."""
        while self.queue and len(self.slots) < self.workers:
            unit = self.queue.popleft()
            if unit.key in self.setup_errors:
                for trial in unit.trials:
                    yield _error(trial, self.setup_errors[unit.key], 0.0)
                continue
            free = min(i for i in range(self.workers) if i not in self.slots)
            self._start(free, unit)

    def results(self) -> Iterator[TrialResult]:
        yield from self._fill()
        while self.slots:
            ready = wait([s.conn for s in self.slots.values()] + [s.proc.sentinel for s in self.slots.values()],
                         timeout=POLL_S)
            for slot in list(self.slots.values()):
                if slot.conn in ready or slot.proc.sentinel in ready:
                    yield from self._drain(slot)
            yield from self._fill()

    def _drain(self, slot: _Slot) -> Iterator[TrialResult]:
        """Everything the slot's worker has sent; a dead worker fails its trial and hands the rest on."""
        try:
            while slot.conn.poll():
                kind, payload = slot.conn.recv()
                if kind == "result":
                    slot.left.popleft()
                    slot.started_at = time.perf_counter()
                    yield payload
                elif kind == "started":
                    slot.started_at = time.perf_counter()
                    self.events.trial_started(payload)
                elif kind == "epoch":
                    self.events.epoch(*payload)
                elif kind == "note":
                    self.events.note(*payload)
                elif kind == "done":
                    self._retire(slot)
                    return
                elif kind == "setup_error":
                    yield from self._setup_failed(slot, payload)
                    return
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
            pass  # the worker died mid-message
        if not slot.proc.is_alive():
            yield from self._crashed(slot)

    def _retire(self, slot: _Slot) -> None:
        slot.proc.join(timeout=10)
        if slot.proc.is_alive():
            slot.proc.kill()
            slot.proc.join(timeout=5)
        slot.conn.close()
        del self.slots[slot.index]

    def _setup_failed(self, slot: _Slot, text: str) -> Iterator[TrialResult]:
        key = slot.unit.key
        last = text.strip().splitlines()[-1] if text.strip() else "unknown error"
        self.setup_errors[key] = f"the worker process for {key[0]}/{key[1]} could not start: {last}"
        first = True
        for trial in slot.left:
            result = _error(trial, self.setup_errors[key], time.perf_counter() - slot.started_at if first else 0.0)
            if first:
                result.traceback = text
            first = False
            yield result
        self._retire(slot)

    def _crashed(self, slot: _Slot) -> Iterator[TrialResult]:
        """The trial in progress becomes an error row; a fresh process takes the unit's other trials."""
        slot.proc.join(timeout=10)
        how = describe_exit(slot.proc.exitcode)
        seconds = time.perf_counter() - slot.started_at
        slot.conn.close()
        del self.slots[slot.index]
        if not slot.left:
            return
        trial = slot.left.popleft()
        error = TrialCrashedError(f"the trial's process {how} (run isolated, so the suite goes on)")
        result = _error(trial, str(error), seconds)
        result.traceback = str(error)
        yield result
        if slot.left:
            self.queue.appendleft(Unit(slot.unit.key, list(slot.left), slot.unit.sweeps))

    def cancel(self) -> None:
        self.queue.clear()
        for slot in list(self.slots.values()):
            slot.proc.kill()
        for slot in list(self.slots.values()):
            slot.proc.join(timeout=5)
            slot.conn.close()
        self.slots.clear()

    def close(self) -> None:
        self.cancel()


def _error(trial: Trial, error: str, seconds: float) -> TrialResult:
    row = trial_row(trial)
    row.update(error=error, wall_s=seconds, finished_at=now_iso())
    return TrialResult(trial, row)
