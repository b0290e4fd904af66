"""Expands a suite into trials with canonical, sortable ids (the resume and cache key)."""
from __future__ import annotations

import fnmatch
import itertools
import json
from dataclasses import dataclass
from typing import Any

from .params import id_params
from .suite import Suite


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


    @property
    def param_dict(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def id(self) -> str:
        label = strategy_label(self.strategy, self.param_dict)
        suffix = "/refit" if self.refit else ""
        return f"{self.backend}/{self.backbone}/{label}/n={self.size}/seed={self.seed}{suffix}"


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def expand(suite: Suite) -> list[Trial]:
    """Every trial of the suite, grouped so that trials sharing a backbone run back to back."""
    trials = []
    for backend, backbone in itertools.product(suite.backends, suite.backbones):
        for strategy, sweeps in suite.strategies.items():
            only = suite.strategy_backbones.get(strategy)
            if only is not None and backbone not in only:
                continue
            keys = sorted(sweeps)
            quiet = suite.quiet.get(strategy, {})
            for combo in itertools.product(*(sweeps[k] for k in keys)):
                named = id_params(dict(zip(keys, combo)), quiet)
                params = tuple((k, _freeze(v)) for k, v in named.items())
                for size in suite.sizes:
                    for seed in suite.seeds:
                        trials.append(Trial(backend, backbone, strategy, params, size, seed))
    return trials


def select(trials: list[Trial], patterns: list[str] | None) -> list[Trial]:
    """Trials whose id matches any shell-style pattern (``torch/*/svm*``); all when none given."""
    if not patterns:
        return trials
    return [t for t in trials if any(fnmatch.fnmatchcase(t.id, p) for p in patterns)]
