"""Parameter-efficient fine-tuning in Keras 3 (:mod:`zoo_bench.adapters`): what Keras supports natively.

``bias`` and ``norm`` mark each weight trainable or not (Keras 3 variables carry their own ``trainable``
flag, which ``trainable_weights`` and ``fit`` respect); ``lora`` is Keras's own ``enable_lora`` on the
targeted ``Dense`` layers and pointwise ``Conv2D`` layers, whose saved kernel is already merged. Keras's
LoRA has no dropout, so ``lora_dropout`` above 0 is refused in one line; prompts (``vpt``) need a timm
vision transformer and are refused too.
"""
from __future__ import annotations

from typing import Any

from zoo_bench.adapters import Adapter, match_targets
from zoo_bench.errors import ZooBenchError

BIASES = ("bias", "beta")  # a layer's bias; BatchNormalization's and LayerNormalization's shift
NORM_WEIGHTS = ("gamma", "beta")


def pointwise(keras: Any, layer: Any) -> bool:
    """A 1 x 1 convolution over all channels: what LoRA adapts in a CNN."""
    return (isinstance(layer, keras.layers.Conv2D) and tuple(layer.kernel_size) == (1, 1)
            and getattr(layer, "groups", 1) == 1 and not isinstance(layer, keras.layers.DepthwiseConv2D))


def adapt(keras: Any, model: Any, adapter: Adapter) -> None:
    """Freeze the base but what ``adapter`` names; the head trains; BatchNorm statistics frozen unless asked."""
    if adapter.kind == "prompt":
        raise ZooBenchError("prompt tuning needs a timm vision transformer, which only the torch backend builds")
    base = model.base
    base.model.trainable = True
    if "app" in base.extra:
        base.extra["app"].trainable = True
    norms = (keras.layers.BatchNormalization, keras.layers.LayerNormalization, keras.layers.GroupNormalization)
    adapted: set[str] = set()
    if adapter.kind == "lora":
        if adapter.dropout > 0:
            raise ZooBenchError(f"lora_dropout = {adapter.dropout:g}: the keras backend's LoRA (Keras's enable_lora) "
                                "has no dropout; use 0, or the torch backend")
        candidates = [layer.name for layer in base.layers
                      if isinstance(layer, keras.layers.Dense) or pointwise(keras, layer)]
        automatic = [layer.name for layer in base.layers if pointwise(keras, layer)]
        adapted = set(match_targets(adapter.targets, candidates, automatic))
        for layer in base.layers:
            if layer.name in adapted:
                layer.enable_lora(adapter.rank, lora_alpha=adapter.alpha)
    for layer in base.layers:
        layer.trainable = True
        for variable in layer.weights:
            if not variable.trainable:  # statistics, and a LoRA layer's frozen kernel
                continue
            name = variable.name.rsplit("/", 1)[-1]
            if adapter.kind == "bias":
                variable.trainable = name in BIASES
            elif adapter.kind == "norm":
                variable.trainable = isinstance(layer, norms) and name in NORM_WEIGHTS
            else:
                variable.trainable = layer.name in adapted and name.startswith("lora_kernel")
    model.head.trainable = True
    base.inference_bn = not adapter.update_stats
