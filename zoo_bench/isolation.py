"""Trials in worker processes, so a trial that kills its process (segfault, abort, ``os._exit``)
costs that trial only.

One worker serves the trials of one (backend, backbone) in a row, keeping its feature cache; it is
replaced when the backbone changes (a fresh process per model also returns all GPU memory) and
after a crash. Workers are started with ``spawn``: forking a process that has touched CUDA or
framework thread pools is unsafe.
"""
from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .dataset import Listing
from .errors import TrialCrashedError
from .grid import Trial
from .plugins import IN_PROCESS
from .results import now_iso

POLL_S = 0.2


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs to rebuild the parent's runner: all plain, picklable data."""

    suite_path: Path
    profile: str | None
    raw: dict[str, Any]
    options: Any  # RunOptions
    listing: Listing
    run_dir: Path
    extra_plugins: tuple[str, ...] = ()  # importable module names of in-process plugins


class _PipeReporter:
    """The worker's reporter: forwards epochs and notes to the parent."""

    def __init__(self, conn) -> None:
        self.conn = conn

    def start(self, total: int, already_done: int) -> None: ...
    def trial_started(self, trial: Trial) -> None: ...
    def trial_finished(self, trial: Trial, row: dict[str, Any]) -> None: ...
    def close(self) -> None: ...

    def epoch(self, index: int, total: int, stats) -> None:
        self.conn.send(("epoch", (index, total, stats)))

    def note(self, trial: Trial, text: str) -> None:
        self.conn.send(("note", (trial, text)))


def _worker_main(setup: WorkerSetup, conn) -> None:
    """Worker loop: build the runner once, then run each trial the parent sends until ``None``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _exit_with_parent()
    from .plugins import load_plugins
    from .results import RunStore
    from .runner import Runner, make_backends
    from .suite import parse_suite

    try:
        registry = load_plugins(extra=[importlib.import_module(m) for m in setup.extra_plugins])
        suite = parse_suite(setup.suite_path, registry, profile=setup.profile, raw=setup.raw)
        backends = make_backends(suite, registry, setup.options)
        runner = Runner(suite, registry, RunStore(setup.run_dir), setup.listing, backends, setup.options,
                        _PipeReporter(conn))
    except BaseException:  # the parent records why, and does not start this worker again
        conn.send(("setup_error", traceback.format_exc()))
        return
    while True:
        message = conn.recv()
        if message is None:
            return
        trial, sweep = message
        conn.send(("row", runner.run_trial(trial, sweep)))


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


class IsolatedTrials:
    """Runs trials in worker processes and turns a dead worker into the trial's error row."""

    def __init__(self, setup: WorkerSetup, reporter: Any) -> None:
        self.setup, self.reporter = setup, reporter
        self.ctx = mp.get_context("spawn")
        self.proc: Any = None
        self.conn: Any = None
        self.key: tuple[str, str] | None = None
        self.setup_errors: dict[tuple[str, str], str] = {}

    @classmethod
    def for_run(cls, suite: Any, registry: Any, options: Any, listing: Listing, run_dir: Path,
                reporter: Any) -> "IsolatedTrials":
        """Workers that rebuild this suite (profile already merged) and the in-process plugins."""
        extra = tuple(p.module for p in registry.plugins if p.distribution == IN_PROCESS)
        return cls(WorkerSetup(suite.path, None, suite.raw, options, listing, run_dir, extra), reporter)

    def _start(self, key: tuple[str, str]) -> None:
        self.close()
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker_main, args=(self.setup, child), daemon=True,
                                name=f"zoo-bench {key[0]}/{key[1]}")
        proc.start()
        child.close()
        self.proc, self.conn, self.key = proc, parent, key

    def run_trial(self, trial: Trial, sweep: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
        """The trial's row from a worker, or an error row saying how the worker died."""
        key = (trial.backend, trial.backbone)
        if key in self.setup_errors:  # this worker could not start before: fail at once, same reason
            return self._error_row(trial, self.setup_errors[key], 0.0)
        if self.proc is None or key != self.key or not self.proc.is_alive():
            self._start(key)
        start = time.perf_counter()
        try:
            self.conn.send((trial, sweep))
            while True:
                if self.conn.poll(POLL_S):
                    kind, payload = self.conn.recv()
                    if kind == "row":
                        return payload
                    if kind == "setup_error":
                        from .runner import log_error

                        log_error(self.setup.run_dir, trial, payload)
                        last = payload.strip().splitlines()[-1] if payload.strip() else "unknown error"
                        self.setup_errors[key] = f"the worker process for {key[0]}/{key[1]} could not start: {last}"
                        self.close(kill=True)
                        return self._error_row(trial, self.setup_errors[key], time.perf_counter() - start)
                    if kind == "epoch":
                        self.reporter.epoch(*payload)
                    elif kind == "note" and hasattr(self.reporter, "note"):
                        self.reporter.note(*payload)
                elif not self.proc.is_alive():
                    break
        except (EOFError, BrokenPipeError, ConnectionResetError):
            pass  # the worker died mid-message
        return self._crash_row(trial, time.perf_counter() - start)

    def _crash_row(self, trial: Trial, seconds: float) -> dict[str, Any]:
        from .runner import log_error

        self.proc.join(timeout=10)
        how = describe_exit(self.proc.exitcode)
        self.proc, self.conn, self.key = None, None, None
        error = TrialCrashedError(f"the trial's process {how} (run isolated, so the suite goes on)")
        log_error(self.setup.run_dir, trial, str(error))
        return self._error_row(trial, str(error), seconds)

    @staticmethod
    def _error_row(trial: Trial, error: str, seconds: float) -> dict[str, Any]:
        from .runner import trial_row

        row = trial_row(trial)
        row.update(error=error, wall_s=seconds, finished_at=now_iso())
        return row

    def close(self, kill: bool = False) -> None:
        """Stop the worker: ask it to finish, or with ``kill`` abandon its trial at once (Ctrl-C)."""
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            try:
                if self.proc.is_alive():
                    self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5)
        self.proc, self.conn, self.key = None, None, None
