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
import math
import os
import queue
import signal
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Iterator

from ...errors import UsageError
from ..trials import Events, TrialResult
from .base import Executor, Unit, error_result
from .worker import WorkerSetup, forward_event, run_unit, setup_error_line, worker_env, worker_setup

POLL_S = 0.2
INSTALL = "pip install 'zoo-bench[ray]'"


def _unit_messages(setup: WorkerSetup, unit: Unit, env: dict[str, str]) -> Iterator[tuple[str, Any]]:
    """The Ray task: the unit runs in a thread; its messages are yielded to the driver as they come."""
    import ray

    messages: queue.SimpleQueue = queue.SimpleQueue()

    def work() -> None:
        try:
            run_unit(setup, unit, env, messages.put)
        except BaseException:  # run_unit reports its own failures; this one ends the task like a crash
            messages.put(("worker_error", traceback.format_exc()))
        finally:
            messages.put(None)

    node = f"{socket.gethostname()} ({ray.util.get_node_ip_address()})"
    yield ("node", (node, ray.get_runtime_context().get_node_id()))
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
    node_id: str = ""
    started_at: float = field(default_factory=time.perf_counter)


def connect(address: str | None) -> Any:
    """Join the Ray cluster at ``address``, or start a local Ray instance; the ``ray`` module.

    Called before the run folder is touched, so an unreachable cluster costs nothing.
    """
    try:
        import ray
    except ImportError:
        raise UsageError(f"--executor ray needs Ray, which is not installed: {INSTALL}") from None
    if ray.is_initialized():
        return ray
    handlers = _signal_handlers()
    try:
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, namespace="zoo-bench",
                 **({"num_cpus": os.cpu_count()} if address is None else {}))
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise UsageError(f"cannot reach {where}: {' '.join(str(exc).split())[:300]}") from None
    finally:
        _restore(handlers)  # Ray takes over SIGINT and SIGTERM; Ctrl-C and kill must still stop the run
    return ray


def units_that_fit(nodes: list[dict[str, Any]], num_gpus: float, num_cpus: float) -> int:
    """How many unit tasks the live nodes hold at once: per node, its GPUs and CPUs both, summed."""
    total = 0
    for node in nodes:
        if not node.get("Alive"):
            continue
        have = node.get("Resources", {})
        fits = math.floor(have.get("CPU", 0) / num_cpus + 1e-9)
        if num_gpus:
            fits = min(fits, math.floor(have.get("GPU", 0) / num_gpus + 1e-9))
        total += fits
    return total


class RayExecutor(Executor):
    """Units as Ray tasks. ``address``: an existing cluster (``ray start --head`` gives one), or None
    for a local Ray instance started here and stopped at the end. ``num_gpus`` is asked for only on a
    cluster that has GPUs. ``workers``: at most this many units at once (default: as many as fit)."""

    def __init__(self, setup: WorkerSetup, events: Events, address: str | None = None, num_gpus: float = 1.0,
                 num_cpus: float = 1.0, workers: int | None = None) -> None:
        ray = connect(address)
        self.ray, self.setup, self.events = ray, setup, events
        nodes = ray.nodes()
        has_gpus = any(n.get("Alive") and n.get("Resources", {}).get("GPU", 0) > 0 for n in nodes)
        self.num_gpus = num_gpus if has_gpus else 0.0
        self.num_cpus = num_cpus
        self.threads = max(1, int(num_cpus))
        fits = units_that_fit(nodes, self.num_gpus, num_cpus)
        if fits < 1:
            ray.shutdown()
            raise UsageError(f"no node of the Ray cluster has {self._per_unit()} for a unit: lower [ray] num_cpus "
                             "or num_gpus in the suite")
        self.parallel = min(fits, workers) if workers else fits
        self.queue: list[Unit] = []
        self.running: dict[Any, _Task] = {}
        self.setup_errors: dict[tuple[str, str], str] = {}
        self._remote = ray.remote(max_calls=1, max_retries=0)(_unit_messages)

    @classmethod
    def for_run(cls, suite: Any, registry: Any, options: Any, listing: Any, run_dir: Any, events: Events,
                **kwargs: Any) -> "RayExecutor":
        """Tasks that rebuild this suite and its in-process plugins, with the suite's ``[ray]`` settings."""
        return cls(worker_setup(suite, registry, options, listing, run_dir), events, **suite.ray, **kwargs)

    def _per_unit(self) -> str:
        return f"{self.num_gpus:g} GPU and {self.num_cpus:g} CPU" if self.num_gpus else f"{self.num_cpus:g} CPU"

    def describe(self) -> str:
        """Where the units go, for the run's first lines."""
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        return (f"trials run as Ray tasks on {len(nodes)} node{'s' if len(nodes) != 1 else ''}, {self._per_unit()} "
                f"per unit, up to {self.parallel} at once")

    def submit(self, unit: Unit) -> None:
        self.queue.append(unit)

    def _launch(self) -> Iterator[TrialResult]:
        """Start queued units while there is room; units of a backbone that could not start fail at once."""
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
                self._end(task)
                return
            except ray.exceptions.RayError as exc:
                yield from self._died(task, exc)
                return
            if kind in ("result", "started"):
                task.started_at = time.perf_counter()
            if kind == "result":
                task.left.pop(0)
                yield payload
            elif forward_event(self.events, kind, payload):
                pass
            elif kind == "node":  # the task has started on a node: its time starts now, not when queued
                (task.node, task.node_id), task.started_at = payload, time.perf_counter()
            elif kind == "setup_error":
                self.setup_errors[task.unit.key] = line = setup_error_line(task.unit, payload, self._who(task))
                yield from self._unit_failed(task, line, payload)
                return
            elif kind == "unit_error":  # this node cannot see the storage: this unit fails, not its backbone
                yield from self._unit_failed(task, setup_error_line(task.unit, payload, self._who(task)), payload)
                return
            elif kind == "worker_error":
                yield from self._died(task, RuntimeError(payload.strip().splitlines()[-1]), payload)
                return
            if not ray.wait([task.gen], timeout=0)[0]:
                return

    def _end(self, task: _Task) -> None:
        self.running.pop(task.gen, None)

    @staticmethod
    def _who(task: _Task) -> str:
        return f"the Ray task on {task.node}"

    def _unit_failed(self, task: _Task, line: str, text: str) -> Iterator[TrialResult]:
        self._end(task)
        for i, trial in enumerate(task.left):
            yield error_result(trial, line, time.perf_counter() - task.started_at if i == 0 else 0.0,
                               text if i == 0 else None)

    def _lost_node(self, task: _Task, exc: Exception) -> bool:
        """Whether the task failed because its node is gone (rather than its process)."""
        if isinstance(exc, self.ray.exceptions.NodeDiedError):
            return True
        if not task.node_id:
            return False
        try:
            return not any(n.get("NodeID") == task.node_id and n.get("Alive") for n in self.ray.nodes())
        except Exception:  # the cluster cannot say: call it the process
            return False

    def _died(self, task: _Task, exc: Exception, text: str = "") -> Iterator[TrialResult]:
        """The trial in progress becomes an error row; a new task takes the unit's other trials."""
        self._end(task)
        try:
            self.ray.cancel(task.gen, force=True)  # whatever failed, this task must not go on beside its successor
        except Exception:
            pass
        if not task.left:
            return
        what = f"its node {task.node} was lost" if self._lost_node(task, exc) else \
            f"its worker process on {task.node} died"
        error = f"the trial's Ray task failed: {what} ({type(exc).__name__}); the suite goes on"
        trial = task.left.pop(0)
        yield error_result(trial, error, time.perf_counter() - task.started_at, f"{error}\n{text or exc}")
        if task.left:
            self.queue.insert(0, task.unit.rest(task.left))

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
