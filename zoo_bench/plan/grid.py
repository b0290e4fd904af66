"""Expands a suite into its trials (their identity: :mod:`zoo_bench.plan.trial`)."""
from __future__ import annotations

import itertools
from typing import Any

from ..params import id_params
from .suite import Suite
from .trial import Trial, format_value, select, strategy_label  # noqa: F401  (grid's names before trial.py)


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
