"""Units of work, the Executor interface, and the in-process executor.

A unit is trials that run together in one process, in order: by default every trial of one
(backend, backbone), so the backbone's bottleneck features are computed once and shared and its GPU
memory is returned when the process ends. Where more workers than units are free, units are split
(``make_units(..., parallel=N)``); the halves share features through the disk feature cache.
"""
from __future__ import annotations

import gc
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator

from ...plan.trial import Trial
from ...results.store import now_iso
from ..trials import TrialResult, TrialRunner, trial_row

Sweeps = dict[str, tuple[dict[str, Any], ...]]


@dataclass
class Unit:
    """Trials that run together in one process, in order; ``sweeps``: trial id -> its head sweep."""

    key: tuple[str, str]  # (backend, backbone); one image size per backbone in a suite
    trials: list[Trial]
    sweeps: Sweeps = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.key[0]}/{self.key[1]}"

    def rest(self, trials: list[Trial]) -> "Unit":
        """The same unit with only ``trials`` (what a dead worker left), keeping their sweeps."""
        return Unit(self.key, list(trials), {t.id: self.sweeps[t.id] for t in trials if t.id in self.sweeps})


def make_units(trials: list[Trial], sweeps: Sweeps, parallel: int = 1) -> list[Unit]:
    """Group trials by (backend, backbone), keeping their order; then split the largest units while
    fewer units than ``parallel`` workers exist, never cutting a head sweep apart."""
    units: dict[tuple[str, str], Unit] = {}
    for trial in trials:
        key = (trial.backend, trial.backbone)
        unit = units.setdefault(key, Unit(key, []))
        unit.trials.append(trial)
        if trial.id in sweeps:
            unit.sweeps[trial.id] = sweeps[trial.id]
    out = list(units.values())
    while len(out) < parallel:
        biggest = max((u for u in out if len(_pieces(u)) > 1), key=lambda u: len(u.trials), default=None)
        if biggest is None:
            break
        out.remove(biggest)
        out += _halves(biggest)
    return out


def _pieces(unit: Unit) -> list[list[Trial]]:
    """The unit's trials in runs that must stay together: a head sweep's trials, or one trial."""
    pieces: list[list[Trial]] = []
    for trial in unit.trials:
        if pieces and _same_sweep(pieces[-1][-1], trial, unit.sweeps):
            pieces[-1].append(trial)
        else:
            pieces.append([trial])
    return pieces


def _same_sweep(a: Trial, b: Trial, sweeps: Sweeps) -> bool:
    """Whether ``a`` and ``b`` are trials of one head sweep (its members run back to back)."""
    if a.id not in sweeps or b.id not in sweeps:
        return False
    same_cell = (a.strategy, a.size, a.seed, a.refit) == (b.strategy, b.size, b.seed, b.refit)
    return same_cell and a.param_dict in sweeps[b.id]


def _halves(unit: Unit) -> list[Unit]:
    """The unit cut in two at the piece boundary nearest to half its trials."""
    pieces = _pieces(unit)
    sizes = [len(p) for p in pieces]
    cut = min(range(1, len(pieces)), key=lambda c: abs(2 * sum(sizes[:c]) - len(unit.trials)))
    out = []
    for part in (pieces[:cut], pieces[cut:]):
        trials = [t for piece in part for t in piece]
        out.append(Unit(unit.key, trials, {t.id: unit.sweeps[t.id] for t in trials if t.id in unit.sweeps}))
    return out


class Executor(ABC):
    """Runs submitted units and yields each trial's result as it finishes.

    Progress (a trial started, an epoch, a note) goes to the ``events`` the executor was made with,
    as it happens; every event names its trial, so several running trials can be shown at once.
    """

    parallel: int = 1  # units it runs at once (the driver splits units to keep them busy)

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
        # As a worker does (worker.py): what exists before the first trial (the frameworks' modules, a
        # caller's objects) leaves the cyclic collector's view, so the collection after each trial scans
        # only what the trials made; it costs seconds a trial in a process that holds much.
        gc.collect()
        gc.freeze()
        try:
            while self.queue:
                unit = self.queue.popleft()
                for trial in unit.trials:
                    self.runner.events.trial_started(trial)
                    yield self.runner.run(trial, unit.sweeps.get(trial.id, ()))
        finally:
            gc.unfreeze()

    def cancel(self) -> None:
        self.queue.clear()


def error_result(trial: Trial, error: str, seconds: float, traceback: str | None = None) -> TrialResult:
    """A trial that ended without a row of its own (its worker died, could not start, was lost)."""
    row = trial_row(trial)
    row.update(error=error, wall_s=seconds, finished_at=now_iso())
    return TrialResult(trial, row, traceback=traceback)
