"""Parameter-efficient fine-tuning: bitfit, norm_tune and lora train a few of a pretrained base's weights,
vpt a few tokens of its input (:mod:`zoo_bench.adapters`), together with a new head, on pixels, from the
first epoch.

Every pixel epoch back-propagates through the whole base, so an epoch costs about what ``full``'s does;
what they save is the optimiser's state and the trained delta to store. Defaults: Adam at 1e-3, the
rate these methods are trained at (BitFit, Ben Zaken et al. 2022, searched 1e-4 to 1e-3; LoRA, Hu et
al. 2022, 2e-4 to 2e-3; V-PETL Bench tunes around 1e-3), ten times ``full``'s, since few weights move
and B starts at zero; 5 epochs, as ``full``. The default search space is that range on a log grid.
"""
from __future__ import annotations

from typing import Any

from zoo_bench import Adapter, Outcome, Param, Strategy, TrialContext
from zoo_bench.augment import Augment
from zoo_bench.errors import ZooBenchError
from zoo_bench.params import AUGMENT_PARAMS, EARLY_STOPPING, HEAD_PARAMS, augment, epochs, lr, momentum, optimizer, \
    schedule_params, weight_decay

from .strategies import AugmentsPixels, TrainsHead, head_optimizer, monitor_for, predicted, train_images

PEFT_LRS = [1e-4, 3e-4, 1e-3, 3e-3]


def peft_params() -> dict[str, Param]:
    return {"epochs": epochs(5), "lr": lr(1e-3), "optimizer": optimizer("adam"), "weight_decay": weight_decay(),
            "momentum": momentum(), **schedule_params(), "augment": augment(), **AUGMENT_PARAMS, **HEAD_PARAMS,
            **EARLY_STOPPING}


class _Adapted(TrainsHead, AugmentsPixels, Strategy):
    """A pretrained base of which only what :meth:`adapter` names trains, and a new head, on pixels."""

    search_space = {"lr": PEFT_LRS}
    requires = ("adapt",)

    def adapter(self, p: dict[str, Any]) -> Adapter:
        raise NotImplementedError

    def run(self, ctx: TrialContext, p: dict[str, Any]) -> Outcome:
        if not ctx.backend.supports("adapt"):
            raise ZooBenchError(f"{self.name}: backend {ctx.backend.name!r} cannot train part of a base's weights "
                                f"(it has no adapt()); the torch backend can")
        monitor = monitor_for(p)
        base = ctx.new_base(pretrained=True)
        head = ctx.new_head(ctx.feature_dim(base), p["hidden"], p["dropout"])
        model = ctx.attach(base, head)
        try:
            ctx.backend.adapt(model, self.adapter(p))
        except ZooBenchError as exc:  # say which backbone: a target pattern is about its layers
            raise ZooBenchError(f"{self.name} on {ctx.spec.name}: {exc}") from None
        trainable, total_params = ctx.backend.count_params(model)
        stats = train_images(ctx, model, p["epochs"], head_optimizer(p), Augment.from_params(p), 0, p["epochs"],
                             monitor, "train")
        return predicted(ctx, model, stats, trainable, total_params, monitor)


class BitFit(_Adapted):
    name = "bitfit"
    params = peft_params()
    description = "only the base's biases (normalisation shifts included) and a new head train"

    def adapter(self, p: dict[str, Any]) -> Adapter:
        return Adapter("bias")


class NormTune(_Adapted):
    name = "norm_tune"
    params = {**peft_params(),
              "update_stats": Param(False, help="let BatchNorm's running statistics follow the new data")}
    description = "only the normalisation layers' scale and shift and a new head train"

    def adapter(self, p: dict[str, Any]) -> Adapter:
        return Adapter("norm", update_stats=p["update_stats"])


class Lora(_Adapted):
    name = "lora"
    params = {**peft_params(),
              "rank": Param(8, low=1, high=4096, help="rank of each low-rank update"),
              "alpha": Param(8.0, low=0.0, low_open=True, help="the update is scaled by alpha / rank"),
              "lora_dropout": Param(0.0, low=0.0, high=1.0, high_open=True, help="dropout on each update's input"),
              "targets": Param(["auto"], type_name="list[str]",
                               help="shell patterns on layer names to adapt; 'auto': a vision transformer's attention "
                                    "qkv and projections, else every pointwise convolution")}
    description = "low-rank updates of the base's linear layers or pointwise convolutions, and a new head"

    @classmethod
    def check(cls, params: dict[str, Any]) -> list[tuple[str, str]]:
        if not params.get("targets", ["auto"]):
            return [("targets", "names no layer: give at least one pattern, or 'auto'")]
        return []

    def adapter(self, p: dict[str, Any]) -> Adapter:
        return Adapter("lora", rank=p["rank"], alpha=p["alpha"], dropout=p["lora_dropout"], targets=tuple(p["targets"]))


class Vpt(_Adapted):
    name = "vpt"
    params = {**peft_params(),
              "prompts": Param(10, low=1, high=1024, help="learned tokens joined to the token sequence"),
              "deep": Param(True, help="every block gets its own prompts (VPT-deep); false: the first only "
                                       "(VPT-shallow)")}
    search_space = {"lr": [3e-4, 1e-3, 3e-3, 1e-2]}
    backbone_families = ("vit",)
    description = "visual prompt tuning: learned tokens in a vision transformer's input (and each block's, deep) " \
                  "and a new head train; timm vision transformers only"

    @classmethod
    def deployed_extras(cls, params: dict[str, Any]) -> tuple:
        return ("prompts", params["prompts"], params["deep"])

    def adapter(self, p: dict[str, Any]) -> Adapter:
        return Adapter("prompt", prompts=p["prompts"], deep=p["deep"])


PEFT_STRATEGIES = (BitFit, NormTune, Lora, Vpt)
