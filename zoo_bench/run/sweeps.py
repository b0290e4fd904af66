"""Head sweeps: trials of one cell that differ only in head parameters, trained together.

A cell (backend, backbone, strategy, size, seed) tried at k head settings (learning rate, weight
decay, dropout, width...) trains k heads on the same cached features. Where the backend can
(:meth:`Backend.fit_heads`), the first of those trials trains all k heads in one pass and the other
trials take their head from :class:`HeadSweeps`. A backend's ``fit_heads`` gives each head what
its solo fit gives, so no result depends on which trials were pending together.
"""
from __future__ import annotations

from typing import Any, Hashable

from ..params import params_key
from ..plan.trial import Trial


def strategy_sweep_params(registry: Any) -> dict[str, tuple[str, ...]]:
    """Strategy name -> the parameters its head sweeps may differ in."""
    return {name: tuple(getattr(cls, "sweep_params", ())) for name, cls in registry.strategies.items()}


def sweep_key(trial: Trial, sweep_params: tuple[str, ...]) -> Hashable | None:
    """What the trials of one sweep share: the cell and every parameter outside ``sweep_params``."""
    if not sweep_params:
        return None
    fixed = tuple((k, v) for k, v in trial.params if k not in sweep_params)
    return (trial.backend, trial.backbone, trial.strategy, trial.size, trial.seed, trial.refit, fixed)


def group_sweeps(trials: list[Trial], sweep_params: dict[str, tuple[str, ...]]
                 ) -> tuple[list[Trial], dict[str, tuple[dict[str, Any], ...]]]:
    """The trials reordered so each sweep runs back to back, and trial id -> its sweep's parameters.

    A sweep's trials move up to where its first trial was; everything else keeps its order. Each
    trial's sweep lists its own parameters first. Strategies without sweep parameters, and sweeps
    of one trial, get an empty sweep.
    """
    groups: dict[Hashable, list[Trial]] = {}
    order: list[Hashable | Trial] = []
    for trial in trials:
        key = sweep_key(trial, sweep_params.get(trial.strategy, ()))
        if key is None:
            order.append(trial)
            continue
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(trial)
    ordered: list[Trial] = []
    sweeps: dict[str, tuple[dict[str, Any], ...]] = {}
    for item in order:
        if isinstance(item, Trial):
            ordered.append(item)
            continue
        members = groups[item]
        ordered += members
        if len(members) > 1:
            for trial in members:
                sweeps[trial.id] = (trial.param_dict, *(t.param_dict for t in members if t is not trial))
    return ordered, sweeps


class HeadSweeps:
    """Heads trained by an earlier trial of the same sweep, held until their own trial takes them.

    Holds the sweeps of a few cells at a time (a cell with K-fold selection has one sweep per fold and
    one on its own images); the oldest are dropped beyond :attr:`LIMIT`, so an abandoned sweep does
    not stay.
    """

    LIMIT = 64

    def __init__(self) -> None:
        self._sweeps: dict[Hashable, dict[tuple, Any]] = {}

    def take(self, key: Hashable, params: dict[str, Any]) -> Any | None:
        """The stored result for these parameters (removed), or None."""
        heads = self._sweeps.get(key)
        return None if heads is None else heads.pop(params_key(params), None)

    def put(self, key: Hashable, results: dict[tuple, Any]) -> None:
        """Keep ``params_key -> result`` for the other trials of sweep ``key``."""
        self._sweeps.pop(key, None)
        self._sweeps[key] = dict(results)
        while len(self._sweeps) > self.LIMIT:
            self._sweeps.pop(next(iter(self._sweeps)))
