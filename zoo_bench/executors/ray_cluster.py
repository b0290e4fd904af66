"""Ray: each unit is a Ray task, on a local Ray instance or on an existing cluster (``pip install 'zoo-bench[ray]'``).

A unit's task asks for ``[ray] num_gpus`` GPUs (on a cluster that has GPUs; Ray sets the task's
``CUDA_VISIBLE_DEVICES``) and ``[ray] num_cpus`` CPUs, which are also its CPU threads; Ray places it
on any node with those free. Each task runs in a fresh worker process (``max_calls=1``), so a unit's
GPU memory is returned when it ends, and is never retried by Ray (``max_retries=0``): a task whose
process dies, or whose node is lost, fails only the trial it was running, and a new task takes the
unit's other trials, wherever Ray finds room.

The task streams its messages back as a Ray generator (started, epochs, notes, each result), so the
driver shows progress live and alone writes the run folder. Workers read the data, the weights and
the cache and write predictions files at the driver's paths: every node needs them on shared storage,
and a node that cannot see them fails its unit in one line (:func:`~.worker.check_storage`).
"""
from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Iterator

from ..errors import UsageError
from ..trials import Events, TrialResult
from .base import Executor, Unit, error_result
from .worker import WorkerSetup, run_unit, setup_error_line, worker_env

POLL_S = 0.2
INSTALL = "pip install 'zoo-bench[ray]'"


def _unit_messages(setup: WorkerSetup, unit: Unit, env: dict[str, str]) -> Iterator[tuple[str, Any]]:
    """The Ray task: the unit runs in a thread; its messages are yielded to the driver as they come."""
    import ray

    messages: queue.SimpleQueue = queue.SimpleQueue()

    def work() -> None:
        try:
            run_unit(setup, unit, env, messages.put)
        except BaseException:  # run_unit reports its own failures; this is a last resort
            messages.put(("setup_error", traceback.format_exc()))
        finally:
            messages.put(None)

    yield ("node", f"{socket.gethostname()} ({ray.util.get_node_ip_address()})")
    threading.Thread(target=work, daemon=True, name=f"zoo-bench {unit.label}").start()
    while (message := messages.get()) is not None:
        yield message


def _signal_handlers() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore(handlers: dict[int, Any]) -> None:
    """Re-install the handlers (re-installing also takes the C-level SIGINT handler back from Ray)."""
    for sig, handler in handlers.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


@dataclass
class _Task:
    """A running unit task and what the driver knows of it."""

    unit: Unit
    gen: Any  # ray.ObjectRefGenerator
    left: list = field(default_factory=list)  # trials not finished yet, in order
    node: str = "an unknown node"
    started_at: float = field(default_factory=time.perf_counter)


class RayExecutor(Executor):
    """Units as Ray tasks. ``address``: an existing cluster (``ray start --head`` gives one), or None
    for a local Ray instance started here and stopped at the end. ``workers``: at most this many
    units at once (default: as many as the cluster's GPUs or CPUs allow)."""

    def __init__(self, setup: WorkerSetup, events: Events, address: str | None = None, num_gpus: float = 1.0,
                 num_cpus: float = 1.0, workers: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise UsageError(f"--executor ray needs Ray, which is not installed: {INSTALL}") from None
        self.ray, self.setup, self.events = ray, setup, events
        handlers = _signal_handlers()
        try:
            ray.init(address=address or "local", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                     namespace="zoo-bench", **({"num_cpus": os.cpu_count()} if address is None else {}))
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise UsageError(f"cannot reach {where}: {' '.join(str(exc).split())[:300]}") from None
        finally:
            _restore(handlers)  # Ray takes over SIGINT and SIGTERM; Ctrl-C and kill must still stop the run
        resources = ray.cluster_resources()
        self.num_gpus = num_gpus if resources.get("GPU", 0) > 0 else 0.0
        self.num_cpus = num_cpus
        self.threads = max(1, int(num_cpus))
        fits = int(resources.get("GPU", 0) // self.num_gpus) if self.num_gpus else int(resources.get("CPU", 1) // num_cpus)
        self.parallel = max(1, min(fits, workers) if workers else fits)
        self.queue: list[Unit] = []
        self.running: dict[Any, _Task] = {}
        self.setup_errors: dict[tuple[str, str], str] = {}
        self._remote = ray.remote(max_calls=1, max_retries=0)(_unit_messages)

    def describe(self) -> str:
        """Where the units go, for the run's first lines."""
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        per = f"{self.num_gpus:g} GPU and {self.num_cpus:g} CPU" if self.num_gpus else f"{self.num_cpus:g} CPU"
        return (f"trials run as Ray tasks on {len(nodes)} node{'s' if len(nodes) != 1 else ''}, {per} per unit, "
                f"up to {self.parallel} at once")

    def submit(self, unit: Unit) -> None:
        self.queue.append(unit)

    def _launch(self) -> Iterator[TrialResult]:
        while self.queue and len(self.running) < self.parallel:
            unit = self.queue.pop(0)
            if unit.key in self.setup_errors:
                for trial in unit.trials:
                    yield error_result(trial, self.setup_errors[unit.key], 0.0)
                continue
            env = worker_env(self.threads)
            gen = self._remote.options(num_cpus=self.num_cpus, num_gpus=self.num_gpus,
                                       name=f"zoo-bench {unit.label}").remote(self.setup, unit, env)
            self.running[gen] = _Task(unit, gen, list(unit.trials))

    def results(self) -> Iterator[TrialResult]:
        yield from self._launch()
        while self.running:
            ready, _ = self.ray.wait(list(self.running), num_returns=1, timeout=POLL_S)
            for gen in ready:
                yield from self._drain(self.running[gen])
            yield from self._launch()

    def _drain(self, task: _Task) -> Iterator[TrialResult]:
        """Every message the task has ready; a task that died fails its trial and hands the rest on."""
        ray = self.ray
        while True:
            try:
                kind, payload = ray.get(next(task.gen))
            except StopIteration:
                return self._end(task)
            except ray.exceptions.RayError as exc:
                yield from self._died(task, exc)
                return
            if kind == "result":
                task.left.pop(0)
                task.started_at = time.perf_counter()
                yield payload
            elif kind == "started":
                task.started_at = time.perf_counter()
                self.events.trial_started(payload)
            elif kind == "epoch":
                self.events.epoch(*payload)
            elif kind == "note":
                self.events.note(*payload)
            elif kind == "node":
                task.node = payload
            elif kind == "setup_error":
                yield from self._setup_failed(task, payload)
                return
            if not ray.wait([task.gen], timeout=0)[0]:
                return

    def _end(self, task: _Task) -> None:
        self.running.pop(task.gen, None)

    def _setup_failed(self, task: _Task, text: str) -> Iterator[TrialResult]:
        self._end(task)
        self.setup_errors[task.unit.key] = line = setup_error_line(task.unit, text).replace(
            "worker process", f"Ray task on {task.node}")
        for i, trial in enumerate(task.left):
            yield error_result(trial, line, time.perf_counter() - task.started_at if i == 0 else 0.0,
                               text if i == 0 else None)

    def _died(self, task: _Task, exc: Exception) -> Iterator[TrialResult]:
        """The trial in progress becomes an error row; a new task takes the unit's other trials."""
        self._end(task)
        if not task.left:
            return
        cause = type(exc).__name__
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        lost = "node" in cause.lower() or "node" in first.lower()
        what = f"its node {task.node} was lost" if lost else f"its worker process on {task.node} died"
        error = f"the trial's Ray task failed: {what} ({cause}); the suite goes on"
        trial = task.left.pop(0)
        yield error_result(trial, error, time.perf_counter() - task.started_at, f"{error}\n{exc}")
        if task.left:
            self.queue.insert(0, Unit(task.unit.key, list(task.left),
                                      {t.id: task.unit.sweeps[t.id] for t in task.left if t.id in task.unit.sweeps}))

    def cancel(self) -> None:
        self.queue.clear()
        for gen in list(self.running):
            try:
                self.ray.cancel(gen, force=True)
            except Exception:  # already finished or its node is gone: nothing to stop
                pass
        self.running.clear()

    def close(self) -> None:
        self.cancel()
        self.ray.shutdown()
