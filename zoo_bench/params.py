"""Strategy parameters as declared schemas: type (from the default), range or choices, and role.

A strategy (first- or third-party) declares each parameter either as a plain default (any value
of its type is accepted) or as a :class:`Param` with limits, so ``validate`` and ``run`` refuse
``epochs = -1`` or ``optimizer = "nadam"`` with one line naming the key and what is allowed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .schedules import SCHEDULES

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
        in_id: False for a parameter added after trial ids were in use: left out of a trial's id (and
            its recorded ``params``) while at its default, so runs, resumes and baselines from before
            it existed keep their ids. Its value still reaches the strategy.
        quiet: for a parameter added after trial ids were in use whose default is not what the older
            trials did: the value a trial id without the parameter means. Left out of ids only at this
            value (the default, when it differs, appears in every id). Implies ``in_id=False``.
    """

    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | None = None
    aliases: tuple[tuple[Any, Any], ...] = ()
    help: str = ""
    in_id: bool = True
    type_name: str | None = None  # where the default cannot tell (an empty list): "list[str]"
    quiet: Any = None  # see above; None: the default (when ``in_id`` is False)

    @property
    def quiet_value(self) -> Any:
        """What a trial id that leaves this parameter out means (only for parameters not always in ids)."""
        return self.default if self.quiet is None else self.quiet

    @property
    def always_in_id(self) -> bool:
        return self.in_id and self.quiet is None

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


def quiet_defaults(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters left out of trial ids at one value (``in_id=False`` or ``quiet``) -> that value."""
    return {k: spec.quiet_value for k, spec in param_specs(params).items() if not spec.always_in_id}


def id_params(params: dict[str, Any], quiet: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` without the quiet ones that sit at their default: what a trial id names."""
    return {k: v for k, v in params.items() if not (k in quiet and _same(v, quiet[k]))}


def with_defaults(params: Mapping[str, Any], declared: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's parameters (as its id names them) with every declared one present: a parameter the id
    leaves out gets the value that absence means (its ``quiet`` value), any other its default."""
    import copy

    out = {k: copy.deepcopy(v) for k, v in defaults(declared).items()}
    out.update(quiet_defaults(declared))
    out.update(params)
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return type(a) is type(b) and a == b or (isinstance(a, (int, float)) and isinstance(b, (int, float))
                                             and not isinstance(a, bool) and not isinstance(b, bool) and a == b)


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


def schedule_params(prefix: str = "") -> dict[str, Param]:
    """The learning-rate schedule of one phase (``zoo_bench.schedules``); ``prefix`` names the phase."""
    return {
        f"{prefix}schedule": Param("constant", choices=SCHEDULES, in_id=False,
                                   help="learning-rate schedule over the phase: constant, step or cosine"),
        f"{prefix}warmup_epochs": Param(0, low=0, high=100000, in_id=False,
                                        help="epochs of linear learning-rate warm-up before the schedule"),
        f"{prefix}step_epochs": Param(10, low=1, high=100000, in_id=False,
                                      help="step schedule: epochs between two decays"),
        f"{prefix}step_gamma": Param(0.1, low=0.0, low_open=True, high=1.0, in_id=False,
                                     help="step schedule: the factor of each decay"),
    }


def layer_decay(help_prefix: str = "") -> Param:
    return Param(1.0, low=0.0, low_open=True, high=1.0, in_id=False,
                 help=help_prefix + "layer-wise learning-rate decay: the head trains at lr, the base's top block at "
                                    "lr x d, the next at lr x d^2, ... (1: one rate; torch backend)")


def augment(default: str = "flip") -> Param:
    return Param(default, choices=AUGMENTATIONS, aliases=((True, "flip"), (False, "none")),
                 help="augmentation of pixel epochs: 'none' or 'flip' (random horizontal flip)")


def _aug(high: float, help: str, default: float = 0.0, low: float = 0.0, low_open: bool = False,
         high_open: bool = True) -> Param:
    return Param(default, low=low, high=high, low_open=low_open, high_open=high_open, help=help, in_id=False)


# The augmentation vocabulary beyond the flip (zoo_bench.augment), ImageDataGenerator's meanings.
AUGMENT_PARAMS: dict[str, Param] = {
    "rotation": _aug(180.0, "random rotation: degrees drawn in [-rotation, rotation]", high_open=False),
    "width_shift": _aug(1.0, "random horizontal shift: a fraction of the width drawn in [-s, s]"),
    "height_shift": _aug(1.0, "random vertical shift: a fraction of the height drawn in [-s, s]"),
    "shear": _aug(80.0, "random shear: an angle in degrees drawn in [-shear, shear]", high_open=False),
    "zoom": _aug(1.0, "random zoom: sampling scales drawn in [1 - zoom, 1 + zoom] (above 1 zooms out)"),
    "crop": _aug(1.0, "random square crop of this fraction of the side, resized back (1: off)", default=1.0,
                 low_open=True, high_open=False),
    "brightness": _aug(1.0, "random brightness: pixels scaled by a factor in [1 - b, 1 + b]"),
    "contrast": _aug(1.0, "random contrast: distance to the mean grey scaled by a factor in [1 - c, 1 + c]"),
    "saturation": _aug(1.0, "random saturation: distance to the pixel's grey scaled by a factor in [1 - s, 1 + s]"),
}

HEAD_PARAMS: dict[str, Param] = {
    "hidden": Param([256], low=1, high=65536, help="hidden layer widths of the new head"),
    "dropout": Param(0.5, low=0.0, high=1.0, high_open=True, help="dropout after each hidden layer"),
    "pooling": Param("avg", choices=("avg", "max", "flatten"), in_id=False,
                     help="how the base's feature map becomes the head's input: global average, global max, or "
                          "the whole map flattened (timm backbones: 'avg' only, meaning the model's own pooling)"),
}

EARLY_STOPPING: dict[str, Param] = {
    "restore_best": Param(False, help="keep the weights of the best validation epoch"),
    "patience": Param(0, low=0, high=100000,
                      help="stop a phase after this many epochs without a better validation score (0: off)"),
}


def params_key(params: dict[str, Any]) -> tuple:
    """A hashable, order-free key of a parameter dict (lists as tuples)."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items()))
