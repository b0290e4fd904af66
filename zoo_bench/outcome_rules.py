"""What a strategy must hand back: the rules every :class:`zoo_bench.Outcome` is checked against.

One home for them, so a trial (:mod:`zoo_bench.run.trials`) and a plugin author's contract check
(:mod:`zoo_bench.testing`) judge a strategy the same way. A broken rule must never become an "ok" row
with a meaningless accuracy: the trial becomes an error row naming the strategy and its distribution.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .backend import EpochStats
from .strategy import Outcome


def describe(value: Any) -> str:
    """A short description of a wrong value: its type, and its shape and dtype for arrays."""
    if isinstance(value, np.ndarray):
        return f"{value.dtype} of shape {value.shape}"
    return f"a {type(value).__name__}"


def _predictions(name: str, value: Any, n: int, classes: int) -> str | None:
    """Why ``value`` is not one class index in 0..classes-1 per image of ``n``, or None."""
    try:
        pred = np.asarray(value)
    except Exception:  # an object numpy cannot read as an array
        return f"{name} is {describe(value)}, expected integer classes of shape ({n},)"
    if pred.shape != (n,) or not np.issubdtype(pred.dtype, np.integer):
        return f"{name} is {describe(pred)}, expected integer classes of shape ({n},)"
    outside = pred[(pred < 0) | (pred >= classes)]
    if outside.size:
        return (f"{name} has class {int(outside[0])} ({outside.size} of {n} predictions), "
                f"but the data set has classes 0..{classes - 1}")
    return None


def _scores(name: str, value: Any, n: int, classes: int) -> str | None:
    """Why ``value`` is not an (n, classes) float array without NaN, or None (-inf is allowed: a log of 0)."""
    if value is None:
        return None
    try:
        scores = np.asarray(value)
    except Exception:
        return f"{name} is {describe(value)}, expected floats of shape ({n}, {classes})"
    if scores.shape != (n, classes) or not np.issubdtype(scores.dtype, np.floating):
        return f"{name} is {describe(scores)}, expected floats of shape ({n}, {classes})"
    if np.isnan(scores).any():
        return f"{name} has NaN"
    return None


def outcome_problems(outcome: Any, n_test: int, n_val: int, classes: int, needs_val: bool = False) -> list[str]:
    """Every rule ``outcome`` breaks, one line each; empty when it keeps them all.

    ``n_test``, ``n_val``: the trial's test and validation images; ``needs_val``: the suite selects this
    strategy's configuration on the validation images, so it must predict them.
    """
    if not isinstance(outcome, Outcome):
        return [f"run() returned {describe(outcome)}, expected a zoo_bench.Outcome"]
    problems = [p for p in (_predictions("test_pred", outcome.test_pred, n_test, classes),
                            _scores("test_scores", outcome.test_scores, n_test, classes)) if p]
    if outcome.val_pred is None:
        if needs_val and n_val:
            problems.append("val_pred is None, but the suite tunes this strategy on the validation images "
                            "([select]): it must predict them")
    else:
        problems += [p for p in (_predictions("val_pred", outcome.val_pred, n_val, classes),
                                 _scores("val_scores", outcome.val_scores, n_val, classes)) if p]
    if not isinstance(outcome.epochs, list) or not all(isinstance(e, EpochStats) for e in outcome.epochs):
        problems.append(f"epochs is {describe(outcome.epochs)}, expected a list of zoo_bench.EpochStats")
    counts = (outcome.trainable_params, outcome.total_params)
    if not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 0 for c in counts):
        problems.append(f"trainable_params and total_params are {counts!r}, expected counts (ints >= 0)")
    elif counts[0] > counts[1]:
        problems.append(f"trainable_params ({counts[0]}) is more than total_params ({counts[1]})")
    seconds = outcome.train_time_s
    if seconds is not None and (not isinstance(seconds, (int, float, np.floating)) or isinstance(seconds, bool)
                                or not seconds >= 0):
        problems.append(f"train_time_s is {seconds!r}, expected None or seconds >= 0")
    if outcome.model_input not in ("pixels", "features"):
        problems.append(f"model_input is {outcome.model_input!r}, expected 'pixels' or 'features'")
    return problems
