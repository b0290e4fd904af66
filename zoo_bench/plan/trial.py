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
