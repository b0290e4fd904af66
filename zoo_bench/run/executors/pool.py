"""The local pool: units in worker processes, ``workers`` at a time, one process per unit.

Each worker is pinned to its own GPU (``CUDA_VISIBLE_DEVICES``) or, on CPU, given its share of the
cores. A trial that kills its process (segfault, abort, ``os._exit``, out of host memory) becomes that
trial's error row and a fresh process takes the unit's remaining trials. ``workers=1`` is
``--isolation on``. Workers are started with ``spawn``: forking a process that has touched CUDA or
framework thread pools is unsafe.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Iterator

from ...dataset import Listing
from ...errors import TrialCrashedError
from ..trials import Events, TrialResult
from .base import Executor, Unit, error_result
from .worker import WorkerSetup, forward_event, run_unit, setup_error_line, worker_env, worker_setup

POLL_S = 0.2


def _worker_main(setup: WorkerSetup, unit: Unit, env: dict[str, str], conn) -> None:
    """Worker process: run the unit, sending every message down the pipe, then exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    _exit_with_parent()
    run_unit(setup, unit, env, conn.send)


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

    @property
    def parallel(self) -> int:
        return self.workers

    @classmethod
    def for_run(cls, suite: Any, registry: Any, options: Any, listing: Listing, run_dir: Path, events: Events,
                **kwargs: Any) -> "PoolExecutor":
        """Workers that rebuild this suite (profile already merged) and the in-process plugins."""
        return cls(worker_setup(suite, registry, options, listing, run_dir), events, **kwargs)

    def submit(self, unit: Unit) -> None:
        self.queue.append(unit)

    def _env(self, index: int) -> dict[str, str]:
        return worker_env(self.threads, self.gpus[index % len(self.gpus)] if self.gpus else None)

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
                    yield error_result(trial, self.setup_errors[unit.key], 0.0)
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
                if kind in ("result", "started"):
                    slot.started_at = time.perf_counter()
                if kind == "result":
                    slot.left.popleft()
                    yield payload
                elif forward_event(self.events, kind, payload):
                    pass
                elif kind == "done":
                    self._retire(slot)
                    return
                elif kind == "setup_error":
                    yield from self._setup_failed(slot, payload)
                    return
                elif kind == "unit_error":  # this worker cannot see the storage: this unit fails, not its backbone
                    yield from self._unit_failed(slot, setup_error_line(slot.unit, payload), payload)
                    self._retire(slot)
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
        self.setup_errors[slot.unit.key] = line = setup_error_line(slot.unit, text)
        yield from self._unit_failed(slot, line, text)
        self._retire(slot)

    def _unit_failed(self, slot: _Slot, line: str, text: str) -> Iterator[TrialResult]:
        for i, trial in enumerate(slot.left):
            seconds = time.perf_counter() - slot.started_at if i == 0 else 0.0
            yield error_result(trial, line, seconds, text if i == 0 else None)

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
        yield error_result(trial, str(error), seconds, str(error))
        if slot.left:
            self.queue.appendleft(slot.unit.rest(list(slot.left)))

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

