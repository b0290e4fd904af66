"""A trial's identity: its canonical, sortable id is the resume key, the cache key and the row's name.

The lowest module of the planning layer: results, sweeps and reports name trials without importing the
suite parser or the plugin registry.
"""
from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from typing import Any


def format_value(value: Any) -> str:
    """A parameter value as it appears in a trial id."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), separators=(",", ":"))
    return repr(value) if isinstance(value, float) else str(value)


def strategy_label(strategy: str, params: dict[str, Any]) -> str:
    """``fpt[finetune_lr=0.0001,head_epochs=3]``: the strategy with its sorted parameters."""
    if not params:
        return strategy
    inner = ",".join(f"{k}={format_value(params[k])}" for k in sorted(params))
    return f"{strategy}[{inner}]"


@dataclass(frozen=True)
class Trial:
    """One cell of the grid: a backend, backbone, strategy with parameters, size and seed."""

    backend: str
    backbone: str
    strategy: str
    params: tuple[tuple[str, Any], ...]
    size: int
    seed: int
    refit: bool = False  # the configuration chosen on validation, retrained on train + validation


    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Trial":
        """The trial a result row records (its params as the row keeps them)."""
        params = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in (row.get("params") or {}).items()))
        return cls(row["backend"], row["backbone"], row["strategy"], params, int(row["size_per_class"]),
                   int(row["seed"]), bool(row.get("refit")))

    @property
    def param_dict(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def id(self) -> str:
        label = strategy_label(self.strategy, self.param_dict)
        suffix = "/refit" if self.refit else ""
        return f"{self.backend}/{self.backbone}/{label}/n={self.size}/seed={self.seed}{suffix}"


def select(trials: list[Trial], patterns: list[str] | None) -> list[Trial]:
    """Trials whose id matches any shell-style pattern (``torch/*/svm*``); all when none given."""
    if not patterns:
        return trials
    return [t for t in trials if any(fnmatch.fnmatchcase(t.id, p) for p in patterns)]


class TrialLabels:
    """Short names for progress lines: what tells a run's trials apart, not every parameter.

    A label is the backbone, the strategy with the parameters that differ from its defaults or that the
    run sweeps (take more than one value among its trials of that strategy), the size and the seed; the
    backend leads only when the run has more than one. ``last_n``'s full id runs to three lines of a
    160-column terminal; its label at the defaults is ``efficientnet_lite0/last_n/n=40/seed=0``. Ids stay
    whole in the files and under ``--verbose``.
    """

    def __init__(self, trials: list[Trial], defaults: dict[str, dict[str, Any]]):
        self.defaults = {name: {k: format_value(v) for k, v in params.items()} for name, params in defaults.items()}
        seen: dict[str, dict[str, set[str]]] = {}
        for trial in trials:
            for key, value in trial.params:
                seen.setdefault(trial.strategy, {}).setdefault(key, set()).add(format_value(value))
        self.swept = {strategy: {k for k, values in keys.items() if len(values) > 1} for strategy, keys in seen.items()}
        self.backends = len({t.backend for t in trials}) > 1

    def __call__(self, trial: Trial) -> str:
        defaults = self.defaults.get(trial.strategy, {})
        swept = self.swept.get(trial.strategy, set())
        shown = {k: v for k, v in trial.params
                 if k in swept or k not in defaults or format_value(v) != defaults[k]}
        label = f"{trial.backbone}/{strategy_label(trial.strategy, shown)}/n={trial.size}/seed={trial.seed}"
        return (f"{trial.backend}/" if self.backends else "") + label + ("/refit" if trial.refit else "")
