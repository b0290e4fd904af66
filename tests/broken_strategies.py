"""Test-only strategies that break the Outcome contract the ways plugin authors do."""
from __future__ import annotations

import numpy as np

from zoo_bench import Outcome, Strategy, hookimpl


class _Constant(Strategy):
    params = {"lr": 0.1}
    pretrained = False

    def predictions(self, ctx) -> dict:
        return {"test_pred": np.zeros(len(ctx.test.labels), np.int64), "val_pred": np.zeros(len(ctx.val.labels), np.int64)}

    def run(self, ctx, p):
        return Outcome(**self.predictions(ctx))


class ClassSeven(_Constant):
    """Predicts class 7, on any data set."""

    name = "class_seven"

    def predictions(self, ctx) -> dict:
        return {"test_pred": np.full(len(ctx.test.labels), 7, np.int64), "val_pred": np.zeros(len(ctx.val.labels), np.int64)}


class DictOutcome(_Constant):
    """Returns a dict where an Outcome is due."""

    name = "dict_outcome"

    def run(self, ctx, p):
        return self.predictions(ctx)


class NoValidation(_Constant):
    """Predicts the test images only, but says nothing about it."""

    name = "no_validation"

    def predictions(self, ctx) -> dict:
        return {"test_pred": np.zeros(len(ctx.test.labels), np.int64)}


class DeclaredNoValidation(NoValidation):
    """Predicts the test images only, and declares it."""

    name = "declared_no_validation"
    val_predictions = False


class Constant(_Constant):
    """Keeps the contract: class 0 everywhere."""

    name = "constant"


@hookimpl
def zoo_bench_register_strategies():
    return [ClassSeven, DictOutcome, NoValidation, DeclaredNoValidation, Constant]
