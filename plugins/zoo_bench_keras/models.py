"""Keras models: applications cut into the same blocks as in torch, EfficientNet-Lite0/1/2, heads.

Every base takes float 0..255 RGB pixels and outputs a feature map; its preprocessing is inside.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np

from zoo_bench import WeightsUnavailableError
from zoo_bench.images import load_npz, save_npz
from zoo_bench_torch.weights_files import lite_weights_file  # the same files both backends load

# name -> (constructor, preprocessing module, weights file for 224 px without top)
APPLICATIONS: dict[str, tuple[str, str, str]] = {
    "vgg16": ("VGG16", "vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "vgg19": ("VGG19", "vgg19", "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "resnet50": ("ResNet50", "resnet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "inception_v3": ("InceptionV3", "inception_v3", "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "mobilenet_v2": ("MobileNetV2", "mobilenet_v2", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"),
    "efficientnet_b0": ("EfficientNetB0", "efficientnet", "efficientnetb0_notop.h5"),
}
FEATURE_DIMS = {"vgg16": 512, "vgg19": 512, "resnet50": 2048, "inception_v3": 2048, "mobilenet_v2": 1280,
                "efficientnet_b0": 1280, "efficientnet_lite0": 1280, "efficientnet_lite1": 1280,
                "efficientnet_lite2": 1280}


@dataclass
class KerasBase:
    """A base model (pixels -> feature map), the layers that hold weights, and each layer's block."""

    model: Any
    layers: list[Any]
    block_of: list[int]
    block_names: list[str]
    feature_dim: int
    image_size: int
    inference_bn: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def keras_cache_dir() -> Path:
    """Where keras.utils.get_file keeps application weights (``$KERAS_HOME/models``)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


# ---------------------------------------------------------------------------------------------
# block assignment: layer name -> block index (None: same block as the layer before)


def _vgg_block(name: str) -> int | None:
    m = re.match(r"block(\d)_", name)
    return int(m.group(1)) - 1 if m else None


def _resnet_block(name: str) -> int | None:
    m = re.match(r"(conv|pool)(\d)_", name)
    return int(m.group(2)) - 1 if m else None


def _mobilenet_block(name: str) -> int | None:
    if name in ("Conv1", "bn_Conv1", "Conv1_relu", "Conv1_pad"):
        return 0
    if name.startswith("expanded_conv"):
        return 1
    m = re.match(r"block_(\d+)_", name)
    if m:
        return int(m.group(1)) + 1
    if name in ("Conv_1", "Conv_1_bn", "out_relu"):
        return 18
    return None


def _efficientnet_block(name: str) -> int | None:
    if name.startswith(("stem_", "rescaling", "normalization")):
        return 0
    m = re.match(r"block(\d)[a-z]_", name)
    if m:
        return int(m.group(1))
    if name.startswith("top_"):
        return 8
    return None


def _lite_block(name: str) -> int | None:
    if name.startswith("stem_"):
        return 0
    m = re.match(r"stage(\d)_", name)
    if m:
        return int(m.group(1))
    return 8 if name.startswith("head_") else None


def _assign_blocks(layers: list[Any], rule: Callable[[str], int | None], inception: bool = False) -> list[int]:
    blocks, current, pools = [], 0, 0
    for layer in layers:
        if inception:  # stem ends at the second max-pool; mixedK ends block K+1
            index = current
            if isinstance(layer, keras.layers.MaxPooling2D) and current == 0:
                pools += 1
                if pools == 2:
                    blocks.append(0)
                    current = 1
                    continue
            m = re.fullmatch(r"mixed(\d+)", layer.name)
            blocks.append(index)
            if m:
                current = int(m.group(1)) + 2
            continue
        index = rule(layer.name)
        current = current if index is None else index
        blocks.append(current)
    return blocks


BLOCK_RULES = {"vgg16": _vgg_block, "vgg19": _vgg_block, "resnet50": _resnet_block,
               "mobilenet_v2": _mobilenet_block, "efficientnet_b0": _efficientnet_block,
               "efficientnet_lite0": _lite_block, "efficientnet_lite1": _lite_block,
               "efficientnet_lite2": _lite_block}
BLOCK_NAMES = {
    "vgg16": [f"block{i}" for i in range(1, 6)], "vgg19": [f"block{i}" for i in range(1, 6)],
    "resnet50": ["stem", "conv2", "conv3", "conv4", "conv5"],
    "inception_v3": ["stem"] + [f"mixed{i}" for i in range(11)],
    "mobilenet_v2": ["stem", "expanded_conv"] + [f"block_{i}" for i in range(1, 17)] + ["head_conv"],
    "efficientnet_b0": ["stem"] + [f"stage{i}" for i in range(1, 8)] + ["head_conv"],
    **{f"efficientnet_lite{v}": ["stem"] + [f"stage{i}" for i in range(1, 8)] + ["head_conv"] for v in (0, 1, 2)},
}


# ---------------------------------------------------------------------------------------------
# applications


def _application(name: str, pretrained: bool, image_size: int, weights_dir: str | None) -> tuple[Any, Any]:
    ctor_name, module_name, filename = APPLICATIONS[name]
    if name == "mobilenet_v2":
        rows = min((96, 128, 160, 192, 224), key=lambda r: abs(r - image_size)) if image_size not in (96, 128, 160, 192, 224) else image_size
        filename = filename.format(rows=rows)
    ctor = getattr(keras.applications, ctor_name)
    preprocess = getattr(getattr(keras.applications, module_name), "preprocess_input")
    shape = (image_size, image_size, 3)
    weights: str | None = None
    if pretrained:
        local = [Path(weights_dir) / filename] if weights_dir else []
        local.append(keras_cache_dir() / filename)
        found = next((p for p in local if p.is_file()), None)
        weights = str(found) if found else "imagenet"
    try:
        app = ctor(include_top=False, weights=weights, input_shape=shape)
    except Exception as exc:  # keras raises several types for a failed download
        if weights != "imagenet":
            raise
        where = f"{weights_dir} or {keras_cache_dir()}" if weights_dir else str(keras_cache_dir())
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsUnavailableError(
            f"{name}: pretrained weights file {filename} is not in {where} and could not be downloaded "
            f"({reason}); put {filename} in {keras_cache_dir()} or pass --weights-dir DIR holding it") from None
    return app, preprocess


def build(kind: str, name: str, *, pretrained: bool, image_size: int, weights_dir: str | None,
          cache_dir: str | None = None) -> KerasBase:
    """Build a base: preprocessing + backbone, with its layers assigned to blocks."""
    if kind.startswith("lite"):
        variant = int(kind[4:])
        app = lite_model(variant, image_size, include_top=False)
        if pretrained:
            load_lite_weights(variant, app, weights_dir, cache_dir)
        preprocess = _imagenet_normalise
    else:
        app, preprocess = _application(name, pretrained, image_size, weights_dir)
    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    outputs = app(preprocess(inputs))
    model = keras.Model(inputs, outputs, name=f"{name}_base")
    layers = list(app.layers)
    block_of = _assign_blocks(layers, BLOCK_RULES.get(name, _vgg_block), inception=(name == "inception_v3"))
    return KerasBase(model=model, layers=layers, block_of=block_of, block_names=BLOCK_NAMES[name],
                     feature_dim=FEATURE_DIMS[name], image_size=image_size, extra={"app": app})


def _imagenet_normalise(x):
    mean = np.array([0.485, 0.456, 0.406], np.float32) * 255.0
    std = np.array([0.229, 0.224, 0.225], np.float32) * 255.0
    return (x - mean) / std


# ---------------------------------------------------------------------------------------------
# EfficientNet-Lite0/1/2 in Keras, mirroring efficientnet_lite_pytorch

# Per variant, per stage: repeats, kernel, stride, expand ratio, in, out (efficientnet_lite_pytorch's
# block arguments after its width and depth scaling; Lite keeps the stem (32) and head (1280) fixed).
LITE_STAGES = {
    0: [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
        (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)],
    1: [(1, 3, 1, 1, 32, 16), (3, 3, 2, 6, 16, 24), (3, 5, 2, 6, 24, 40), (4, 3, 2, 6, 40, 80),
        (4, 5, 1, 6, 80, 112), (5, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)],
    2: [(1, 3, 1, 1, 32, 16), (3, 3, 2, 6, 16, 24), (3, 5, 2, 6, 24, 48), (4, 3, 2, 6, 48, 88),
        (4, 5, 1, 6, 88, 120), (5, 5, 2, 6, 120, 208), (1, 3, 1, 6, 208, 352)],
}
BN = {"epsilon": 1e-3, "momentum": 0.99}
CONVERT_VERSION = 1  # part of the converted-weights cache key: bump when _torch_to_keras_weights changes


def lite_model(variant: int, image_size: int, include_top: bool) -> Any:
    """The Lite``variant`` architecture; TF 'same' padding equals the PyTorch port's static same padding."""
    L = keras.layers
    inputs = keras.Input((image_size, image_size, 3))
    x = L.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = L.BatchNormalization(name="stem_bn", **BN)(x)
    x = L.ReLU(6.0, name="stem_relu")(x)
    for s, (repeats, k, stride, expand, cin, cout) in enumerate(LITE_STAGES[variant], start=1):
        for j in range(repeats):
            p = f"stage{s}_b{j}_"
            block_in, inp_ch, st = x, (cin if j == 0 else cout), (stride if j == 0 else 1)
            if expand != 1:
                x = L.Conv2D(inp_ch * expand, 1, use_bias=False, name=p + "expand")(x)
                x = L.BatchNormalization(name=p + "expand_bn", **BN)(x)
                x = L.ReLU(6.0, name=p + "expand_relu")(x)
            x = L.DepthwiseConv2D(k, strides=st, padding="same", use_bias=False, name=p + "dw")(x)
            x = L.BatchNormalization(name=p + "dw_bn", **BN)(x)
            x = L.ReLU(6.0, name=p + "dw_relu")(x)
            x = L.Conv2D(cout, 1, use_bias=False, name=p + "project")(x)
            x = L.BatchNormalization(name=p + "project_bn", **BN)(x)
            if st == 1 and inp_ch == cout:
                x = L.Add(name=p + "add")([x, block_in])
    x = L.Conv2D(1280, 1, use_bias=False, name="head_conv")(x)
    x = L.BatchNormalization(name="head_bn", **BN)(x)
    x = L.ReLU(6.0, name="head_relu")(x)
    if include_top:
        x = L.GlobalAveragePooling2D(name="top_pool")(x)
        x = L.Dense(1000, name="top_fc")(x)
    return keras.Model(inputs, x, name=f"efficientnet_lite{variant}")


def _torch_to_keras_weights(state: dict[str, np.ndarray], include_top: bool, variant: int = 0
                            ) -> dict[str, list[np.ndarray]]:
    """Layer name -> Keras weight list, from the PyTorch port's state dict."""
    def conv(key):  # (out, in, kh, kw) -> (kh, kw, in, out)
        return [state[key].transpose(2, 3, 1, 0)]

    def dw(key):  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        return [state[key].transpose(2, 3, 0, 1)]

    def bn(prefix):
        return [state[prefix + ".weight"], state[prefix + ".bias"], state[prefix + ".running_mean"],
                state[prefix + ".running_var"]]

    out = {"stem_conv": conv("_conv_stem.weight"), "stem_bn": bn("_bn0"),
           "head_conv": conv("_conv_head.weight"), "head_bn": bn("_bn1")}
    index = 0
    for s, (repeats, *_rest) in enumerate(LITE_STAGES[variant], start=1):
        expand = LITE_STAGES[variant][s - 1][3]
        for j in range(repeats):
            p, t = f"stage{s}_b{j}_", f"_blocks.{index}."
            if expand != 1:
                out[p + "expand"] = conv(t + "_expand_conv.weight")
                out[p + "expand_bn"] = bn(t + "_bn0")
            out[p + "dw"] = dw(t + "_depthwise_conv.weight")
            out[p + "dw_bn"] = bn(t + "_bn1")
            out[p + "project"] = conv(t + "_project_conv.weight")
            out[p + "project_bn"] = bn(t + "_bn2")
            index += 1
    if include_top:
        out["top_fc"] = [state["_fc.weight"].T, state["_fc.bias"]]
    return out


def _lite_cache_file(variant: int, source: Path, include_top: bool, cache_dir: str | None) -> Path:
    """Keyed by the weight file's bytes, the top flag and CONVERT_VERSION, not by path or mtime."""
    digest = hashlib.blake2b(source.read_bytes(), digest_size=10).hexdigest()  # 19 MB: tens of ms
    key = f"{digest}-{'top' if include_top else 'notop'}-v{CONVERT_VERSION}"
    return Path(cache_dir or Path.home() / ".cache" / "zoo-bench") / "keras" / f"efficientnet_lite{variant}-{key}.npz"


def _fits(model: Any, converted: dict[str, list[np.ndarray]]) -> bool:
    """Whether ``converted`` holds a float array of the right shape for every weight of ``model``."""
    for layer in model.layers:
        if not layer.weights:
            continue
        arrays = converted.get(layer.name, [])
        if len(arrays) != len(layer.weights):
            return False
        if any(a.dtype.kind != "f" or tuple(a.shape) != tuple(w.shape) for a, w in zip(arrays, layer.weights)):
            return False
    return True


def _read_converted(cache: Path, model: Any) -> dict[str, list[np.ndarray]] | None:
    """The cached Keras weights, or None when the file is missing, damaged (CRC-32) or does not fit."""
    arrays = load_npz(cache) if cache.exists() else None
    if not arrays or not all(name.rpartition("/")[2].isdigit() for name in arrays):
        return None
    grouped: dict[str, list[tuple[int, np.ndarray]]] = {}
    for name, value in arrays.items():
        layer, _, index = name.rpartition("/")
        grouped.setdefault(layer, []).append((int(index), value))
    converted = {layer: [v for _, v in sorted(items, key=lambda item: item[0])] for layer, items in grouped.items()}
    return converted if _fits(model, converted) else None


def load_lite_weights(variant: int, model: Any, weights_dir: str | None, cache_dir: str | None) -> None:
    """Convert the PyTorch file to Keras arrays once (cached as .npz) and set them on ``model``.

    A cache file that fails its checks is converted again and replaced atomically.
    """
    from .pth_reader import load_legacy_state_dict

    source = lite_weights_file(variant, weights_dir)
    include_top = any(layer.name == "top_fc" for layer in model.layers)
    cache = _lite_cache_file(variant, source, include_top, cache_dir)
    converted = _read_converted(cache, model)
    if converted is None:
        converted = _torch_to_keras_weights(load_legacy_state_dict(source), include_top, variant)
        with contextlib.suppress(OSError):  # an unwritable cache only costs a conversion next time
            save_npz(cache, {f"{k}/{i}": w for k, ws in converted.items() for i, w in enumerate(ws)})
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(converted[layer.name])


class InferenceMode(keras.layers.Layer):
    """Runs a wrapped model with ``training=False`` whatever the caller's mode.

    Keras 3 functional models pass the outer ``training`` flag down to every nested call, so the
    guide's ``base(x, training=False)`` inside a functional model is overridden during ``fit``;
    a layer whose ``call`` takes no ``training`` argument is not.
    """

    def __init__(self, inner: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.inner = inner

    def call(self, x):
        return self.inner(x, training=False)


def make_head(in_features: int, num_classes: int, hidden: tuple[int, ...], dropout: float) -> Any:
    """Hidden Dense+ReLU+Dropout layers, then the class layer (float32 logits under mixed precision)."""
    L = keras.layers
    inputs = keras.Input((in_features,))
    x = inputs
    for h in hidden:
        x = L.Dense(h, activation="relu")(x)
        x = L.Dropout(dropout)(x)
    if not hidden and dropout > 0:
        x = L.Dropout(dropout)(x)
    outputs = L.Dense(num_classes, dtype="float32")(x)
    return keras.Model(inputs, outputs, name="head")
