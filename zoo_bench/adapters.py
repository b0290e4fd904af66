"""What a parameter-efficient strategy trains in a pretrained base: one meaning, which backends implement.

A backend's optional verb ``adapt(model, adapter)`` freezes the whole base except what the
:class:`Adapter` names, keeps the head trainable, and decides the BatchNorm mode; ``count_params`` then
counts exactly what trains.

* ``bias`` (BitFit, Ben Zaken et al. 2022; TinyTL, Cai et al. 2020): every bias of the base, the
  normalisation layers' shifts included (EfficientNet-Lite's convolutions have no bias of their own).
* ``norm``: the normalisation layers' scale and shift (BatchNorm, LayerNorm, GroupNorm).
* ``lora`` (Hu et al. 2022): a low-rank update ``scale * B A`` beside each targeted linear or
  convolution layer, ``scale = alpha / rank``, B starting at zero so training starts from the
  pretrained network; merged into the layer's weight when the model is saved.
* ``prompt`` (VPT, Jia et al. 2022): ``prompts`` learned tokens joined to a vision transformer's token
  sequence after its class token; ``deep`` gives every block its own (VPT-deep), else only the first block
  gets them (VPT-shallow). Nothing of the base trains. They change the network's input, so they cannot
  be merged: they are saved beside the weights.

``update_stats`` lets BatchNorm's running statistics follow the new data; by default they keep their
pretrained values (the layers run in inference mode), as ``full`` does.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from .errors import ZooBenchError

KINDS = ("bias", "norm", "lora", "prompt")
AUTO = "auto"  # lora targets: a vision transformer's attention qkv and projections, else pointwise convolutions


@dataclass(frozen=True)
class Adapter:
    """What trains in the base (the head always trains): see the module docstring."""

    kind: str
    update_stats: bool = False
    rank: int = 8
    alpha: float = 8.0
    dropout: float = 0.0
    targets: tuple[str, ...] = (AUTO,)
    prompts: int = 10
    deep: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"adapter kind {self.kind!r} is not one of {', '.join(KINDS)}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def match_targets(patterns: tuple[str, ...], candidates: list[str], automatic: list[str]) -> list[str]:
    """The layer names ``patterns`` choose among ``candidates`` (the layers LoRA can wrap, in order).

    ``auto`` stands for ``automatic`` (the backbone family's default); any other pattern is a shell
    pattern on the layer's full name (``blocks.*.attn.qkv``, ``*conv_pwl``). A pattern that matches no
    layer is refused in one line naming a sample of the layers there are.
    """
    chosen: dict[str, None] = {}
    for pattern in patterns:
        found = automatic if pattern == AUTO else [c for c in candidates if fnmatch.fnmatchcase(c, pattern)]
        if not found:
            sample = ", ".join(candidates[:6]) + (f", ... ({len(candidates)} in all)" if len(candidates) > 6 else "")
            what = "lora's default targets match" if pattern == AUTO else f"lora target {pattern!r} matches"
            raise ZooBenchError(f"{what} no linear layer or pointwise convolution (there are: {sample})")
        chosen.update(dict.fromkeys(found))
    return list(chosen)
