"""Strategy parameters as declared schemas: type (from the default), range or choices, and role.

A strategy (first- or third-party) declares each parameter either as a plain default (any value
of its type is accepted) or as a :class:`Param` with limits, so ``validate`` and ``run`` refuse
``epochs = -1`` or ``optimizer = "nadam"`` with one line naming the key and what is allowed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

OPTIMIZERS = ("adam", "sgd", "rmsprop")
AUGMENTATIONS = ("none", "flip")  # the terms of the `augment` vocabulary known today


@dataclass(frozen=True)
class Param:
    """One strategy parameter.

    Attributes:
        default: the value when a suite gives none; its type is the parameter's type.
        low, high: bounds for numbers (each element of a list); ``low_open``/``high_open`` exclude them.
        choices: the allowed values of a string parameter.
        aliases: older spellings of values, accepted and replaced (``augment = true`` -> ``"flip"``).
        help: one line for documentation.
    """

    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | None = None
    aliases: tuple[tuple[Any, Any], ...] = ()
    help: str = ""

    def canonical(self, value: Any) -> Any:
        """``value`` with an older spelling replaced by today's."""
        for old, new in self.aliases:
            if type(value) is type(old) and value == old:
                return new
        return value

    def allowed(self) -> str:
        """What this parameter accepts, for error messages."""
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {_num(self.low)}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {_num(self.high)}")
        what = "each value " if isinstance(self.default, (list, tuple)) else ""
        return what + " and ".join(parts) if parts else "any value of its type"

    def problem(self, value: Any) -> str | None:
        """Why ``value`` (already of the right type) is not allowed, or None."""
        if self.choices is not None and value not in self.choices:
            return f"{value!r} is not allowed (allowed: {self.allowed()})"
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                continue
            if (self.low is not None and (item < self.low or (self.low_open and item == self.low))) or (
                    self.high is not None and (item > self.high or (self.high_open and item == self.high))):
                return f"{item!r} is out of range (allowed: {self.allowed()})"
        return None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


def param_specs(params: Mapping[str, Any]) -> dict[str, Param]:
    """A strategy's ``params`` with plain defaults wrapped as unconstrained :class:`Param` s."""
    return {k: v if isinstance(v, Param) else Param(v) for k, v in params.items()}


def defaults(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter name -> default value."""
    return {k: spec.default for k, spec in param_specs(params).items()}


# Shared declarations: one spelling and one range per concept, across strategies.
def epochs(default: int, help: str = "epochs") -> Param:
    return Param(default, low=1, high=100000, help=help)


def lr(default: float, help: str = "learning rate") -> Param:
    return Param(default, low=0.0, low_open=True, help=help)


def weight_decay(default: float = 0.0) -> Param:
    return Param(default, low=0.0, high=1.0, help="L2 penalty added to the gradient")


def momentum(default: float = 0.9) -> Param:
    return Param(default, low=0.0, high=1.0, high_open=True, help="momentum of sgd and rmsprop")


def optimizer(default: str) -> Param:
    return Param(default, choices=OPTIMIZERS, help="optimizer")


def augment(default: str = "flip") -> Param:
    return Param(default, choices=AUGMENTATIONS, aliases=((True, "flip"), (False, "none")),
                 help="augmentation of pixel epochs: 'none' or 'flip' (random horizontal flip)")


HEAD_PARAMS: dict[str, Param] = {
    "hidden": Param([256], low=1, high=65536, help="hidden layer widths of the new head"),
    "dropout": Param(0.5, low=0.0, high=1.0, high_open=True, help="dropout after each hidden layer"),
}

EARLY_STOPPING: dict[str, Param] = {
    "restore_best": Param(False, help="keep the weights of the best validation epoch"),
    "patience": Param(0, low=0, high=100000,
                      help="stop a phase after this many epochs without a better validation score (0: off)"),
}
