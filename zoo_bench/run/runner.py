"""The driver: runs a prepared run's trials through an executor and alone writes the run folder.

Every finished trial is appended to trials.jsonl at once (durable, resume by id); unreadable images
go to skipped_images.txt and error texts to errors.log. Where the trials execute is the executor's
business (``zoo_bench.run.executors``); what one trial does is ``zoo_bench.run.trials``; how a run is
prepared is ``zoo_bench.run.prepare``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from ..backend import EpochStats
from ..plan.trial import Trial
from ..results.selection import choose
from ..results.store import RunStore, to_dataframe
from .executors import Executor, InProcessExecutor, make_units
from .prepare import (  # noqa: F401  (the names callers used to import from here)
    PreparedRun, RunOptions, check_sizes, dataset_root, list_dataset, make_backends, prepare_run, run_metadata,
    selection_meta,
)
from .sweeps import group_sweeps, strategy_sweep_params
from .trials import TrialResult, TrialRunner, log_error


class Reporter(Protocol):
    """What the driver tells the user about; :mod:`zoo_bench.show.report` draws it."""

    def start(self, total: int, already_done: int) -> None: ...
    def trial_started(self, trial: Trial) -> None: ...
    def epoch(self, trial: Trial, index: int, total: int, stats: EpochStats) -> None: ...
    def note(self, trial: Trial, text: str) -> None: ...
    def trial_finished(self, trial: Trial, row: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class QuietReporter(Reporter):
    """A reporter that shows nothing (the pytest plugin, benchmarks): the protocol's own no-op methods."""


class Runner:
    """Runs a list of trials of one suite into one run folder, through ``executor``.

    Without an executor the trials run in this process (:class:`InProcessExecutor`).
    """

    def __init__(self, prepared: PreparedRun, reporter: Reporter, executor: Executor | None = None):
        self.prepared, self.reporter = prepared, reporter
        self.store: RunStore = prepared.store
        self.suite = prepared.suite
        self.executor = executor or InProcessExecutor(self.trial_runner())
        self._skipped_logged: set[str] | None = None
        self._solo: TrialRunner | None = None  # run_one's trial runner, made on first use

    def trial_runner(self) -> TrialRunner:
        """A trial runner in this process, reporting to this driver's reporter."""
        p = self.prepared
        return TrialRunner(p.suite, p.registry, p.listing, p.backends, p.options, p.store.run_dir, self.reporter)


    def run(self, trials: list[Trial] | None = None) -> list[dict[str, Any]]:
        """Run the trials not yet finished (default: the prepared ones); return the rows written now."""
        trials = self.prepared.trials if trials is None else trials
        self.store.heal()  # a line cut by an earlier kill; rows of this process are written whole
        done = self.store.finished_ids()
        todo, sweeps = group_sweeps([t for t in trials if t.id not in done], strategy_sweep_params(self.prepared.registry))
        self.reporter.start(len(trials), len(trials) - len(todo))
        rows: list[dict[str, Any]] = []
        try:
            rows += self._run_units(todo, sweeps)
            if self.suite.refit:  # the choices exist only now that every configuration has finished
                refits = [t for t in refit_trials(self.store.rows(), selection_meta(self.suite), trials)
                          if t.id not in done]
                if refits:
                    self.reporter.start(len(refits), 0)
                    rows += self._run_units(refits, {})
        except BaseException:  # Ctrl-C or a fatal error: abandon the trials in progress at once
            self.executor.cancel()
            raise
        finally:
            self.executor.close()
            self.reporter.close()
        return rows

    def _run_units(self, trials: list[Trial], sweeps: dict[str, tuple[dict[str, Any], ...]]) -> list[dict[str, Any]]:
        for unit in make_units(trials, sweeps, self.executor.parallel):
            self.executor.submit(unit)
        return [self.record(result) for result in self.executor.results()]

    def record(self, result: TrialResult) -> dict[str, Any]:
        """Write a finished trial to the run folder: its error text, its unreadable images, its row."""
        if result.traceback:
            log_error(self.store.run_dir, result.trial, result.traceback)
        self._log_skipped(result.skipped)
        self.store.append(result.row)
        self.reporter.trial_finished(result.trial, result.row)
        return result.row

    def run_one(self, trial: Trial) -> dict[str, Any]:
        """One trial in this process, recorded (the pytest plugin's benchmark per trial)."""
        if self._solo is None:
            self._solo = self.trial_runner()
        return self.record(self._solo.run(trial))

    def _log_skipped(self, reasons: dict[str, str]) -> None:
        """Keep the unreadable images in the run folder, each once, with why: ``path<TAB>reason``."""
        path = self.store.run_dir / "skipped_images.txt"
        if self._skipped_logged is None:  # a resumed run: what earlier runs wrote
            lines = path.read_text().splitlines() if path.exists() else []
            self._skipped_logged = {line.split("\t", 1)[0] for line in lines}
        new = [p for p in reasons if p not in self._skipped_logged]
        if new:
            self._skipped_logged.update(new)
            self.store.run_dir.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as fh:
                fh.write("".join(f"{p}\t{reasons[p]}\n" for p in new))


def refit_trials(rows: list[dict[str, Any]], selection: dict[str, Any] | None, trials: list[Trial]) -> list[Trial]:
    """One refit trial per cell with an ok configuration: the chosen one, on train + validation.

    Called once every trial of the run has ended; cells of the run's own trials only (``--trials`` may
    have picked a part of the grid).
    """

    wanted = {t.id for t in trials}
    done = [r for r in rows if r["trial_id"] in wanted and not r.get("refit")]
    if not selection or not done:
        return []
    by_id = {t.id: t for t in trials}
    chosen = choose(to_dataframe(done), selection)
    return [dataclasses.replace(by_id[tid], refit=True) for tid in chosen["trial_id"]]

