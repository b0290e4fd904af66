"""The torch Backend. torch is imported inside methods so that loading the plugin stays cheap.

A torch backbone spec's builder is called as ``builder(pretrained=, image_size=, weights_dir=)``
and returns either ``(blocks, block_names, feature_dim)``: the ordered ``nn.Module`` blocks whose
composition maps normalised NCHW images to a feature map (the backend adds normalisation and
global average pooling), or a ready base module that maps 0..255 NCHW pixels to pooled features
and has ``feature_dim`` and ``groups()`` (timm models: :mod:`.timm_models`).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any

import numpy as np

from zoo_bench.backend import EpochBook, cpu_name, fit_inputs
from zoo_bench import Backend, BackboneSpec, BackendUnavailableError, ZooBenchError, Device, EpochStats, HeadSpec, OptimizerSpec
from zoo_bench.augment import TERMS
from zoo_bench.backend import HeadFit, HeadFitResult

INSTALL = "pip install 'zoo-bench[torch]'"

# glibc's malloc hands each block over 32 MiB (a batch's activations) back to the kernel when freed and
# page-faults it in again at the next batch; measured on a 2-core CPU, that halved the images per second
# of EfficientNet-Lite0 feature extraction (46 against 93) until a large training step had raised its
# threshold by chance. Blocks up to 1 GiB stay in the heap, which is not trimmed.
MALLOC_SETTINGS = {"M_MMAP_THRESHOLD": (-3, 2**30), "M_TRIM_THRESHOLD": (-1, 2**31 - 1), "M_TOP_PAD": (-2, 64 * 2**20)}


def keep_host_memory() -> str | None:
    """Apply :data:`MALLOC_SETTINGS` to this process (glibc only); what was applied, for the row's settings."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        done = [name for name, (option, value) in MALLOC_SETTINGS.items() if libc.mallopt(option, ctypes.c_int(value))]
    except (OSError, AttributeError):  # not glibc (musl, ...): its own allocator's behaviour stands
        return None
    return ", ".join(f"{name}={MALLOC_SETTINGS[name][1]}" for name in done) or None


class TorchBackend(Backend):
    """PyTorch: cuda, then mps, then cpu; bf16 autocast on GPU; channels_last and cudnn autotune on CUDA."""

    name = "torch"
    install_hint = INSTALL
    augmentations = TERMS
    poolings = ("avg", "max", "flatten")
    compiles = True

    def __init__(self, device: str = "auto", precision: str = "auto", weights_dir: str | None = None,
                 cache_dir: str | None = None):
        super().__init__(device, precision, weights_dir, cache_dir)
        import torch

        self.torch = torch
        self._device = self._resolve_device(device)
        if precision == "auto":  # bf16 autocast on GPU; an explicit "bf16" is honoured on CPU too
            precision = "bf16" if self._device.type in ("cuda", "mps") else "fp32"
        self.precision = precision
        self.channels_last = self._device.type == "cuda"
        self.malloc = keep_host_memory() if self._device.type == "cpu" else None
        if self._device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self._rng = np.random.default_rng(0)

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            import torch  # noqa: F401
            import torchvision  # noqa: F401
        except ImportError as exc:
            return False, f"torch backend needs torch and torchvision ({exc}); install with: {INSTALL}"
        return True, ""

    @classmethod
    def param_count(cls, spec: BackboneSpec) -> int | None:
        """Built on torch's meta device: shapes only, no memory, no weights read."""
        if not cls.available()[0]:
            return None
        import torch

        with torch.device("meta"):
            built = spec.builder(pretrained=False, image_size=spec.image_size, weights_dir=None)
        modules = built[0] if isinstance(built, tuple) else [built]
        return sum(p.numel() for m in modules for p in m.parameters())

    @classmethod
    def has_accelerator(cls) -> bool:
        if not cls.available()[0]:
            return False
        import torch

        return bool(torch.cuda.is_available() or (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()))

    def accelerators(self) -> int:
        return self.torch.cuda.device_count() if self.device().kind == "cuda" else 0

    def _resolve_device(self, requested: str):
        torch = self.torch
        if requested == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda")
            if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
                return torch.device("mps")
            return torch.device("cpu")
        if requested == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError("device 'cuda' was asked for but torch sees no CUDA GPU")
        if requested == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise BackendUnavailableError("device 'mps' was asked for but torch sees no MPS device")
        return torch.device(requested)

    def device(self) -> Device:
        kind = self._device.type
        name = self.torch.cuda.get_device_name(self._device) if kind == "cuda" else (
            "Apple MPS" if kind == "mps" else cpu_name())
        settings = {"autocast": self.precision if self.precision != "fp32" else None,
                    "channels_last": self.channels_last,
                    "cudnn_benchmark": bool(kind == "cuda"),
                    "threads": self.torch.get_num_threads(), "compile": self.compile, "malloc": self.malloc}
        return Device(kind=kind, name=name, precision=self.precision, settings=settings)

    def versions(self) -> dict[str, str]:
        import torchvision

        return {"torch": self.torch.__version__, "torchvision": torchvision.__version__}

    def seed(self, seed: int) -> None:
        self.torch.manual_seed(seed)
        self._rng = np.random.default_rng(seed)

    # -- models ---------------------------------------------------------------------------------
    def build_base(self, spec: BackboneSpec, pretrained: bool, image_size: int) -> Any:
        from .models import Base

        built = spec.builder(pretrained=pretrained, image_size=image_size, weights_dir=self.weights_dir)
        if isinstance(built, tuple):  # (blocks, names, feature width): a torchvision-style base
            blocks, names, dim = built
            built = Base(blocks, names, dim, spec.mean, spec.std)
        base = built.to(self._device)  # else a ready base module (timm), pooled features out
        base.image_size = image_size
        if not pretrained:  # ports of TF weights carry momentum 0.01; random init learns its stats at 0.1
            for module in base.modules():
                if isinstance(module, self.torch.nn.modules.batchnorm._BatchNorm):
                    module.momentum = 0.1
        if self.channels_last:
            base = base.to(memory_format=self.torch.channels_last)
        return base

    def block_count(self, base: Any) -> int:
        return len(base.groups())

    def feature_dim(self, base: Any, pooling: str = "avg") -> int:
        if pooling == "avg":
            return int(base.feature_dim)
        self._check_pooling(base, pooling)
        key = f"_dim_{pooling}"
        if not hasattr(base, key):  # flatten's width depends on the map's size: one blank image tells it
            with self._blank_pass(base) as blank:
                setattr(base, key, int(base.pooled(blank, pooling).shape[1]))
        return getattr(base, key)

    @contextmanager
    def _blank_pass(self, model: Any):
        """One blank image for a shape-finding pass, with ``model`` in inference mode meanwhile: a BatchNorm
        in training mode would average the blank into its running statistics."""
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        size = getattr(model, "image_size", None) or model.base.image_size
        try:
            with self.torch.inference_mode(), self._autocast():
                yield self.torch.zeros((1, 3, size, size), device=self._device)
        finally:
            for m, mode in modes:
                m.training = mode

    def _check_pooling(self, base: Any, pooling: str) -> None:
        if pooling != "avg" and not hasattr(base, "pooled"):
            raise ZooBenchError(f"pooling {pooling!r} needs a backbone whose features are a feature map; this one "
                                f"pools the way the model defines (a vision transformer's class token, timm's head): "
                                f"use pooling = \"avg\", which means that pooling here")

    def new_head(self, in_features: int, num_classes: int, head: HeadSpec) -> Any:
        from .models import make_head

        return make_head(in_features, num_classes, head.hidden, head.dropout).to(self._device)

    def attach(self, base: Any, head: Any, pooling: str = "avg") -> Any:
        from .models import Classifier

        self._check_pooling(base, pooling)
        return Classifier(base, head, pooling).to(self._device)

    def set_trainable(self, model: Any, last_blocks: int | None, bn_inference: bool, parts: Any = None) -> None:
        from .models import open_parts, set_trainable

        if parts is not None:
            open_parts(model, parts.blocks, parts.layers)
        else:
            set_trainable(model, last_blocks, bn_inference)

    def unfreeze_units(self, base: Any) -> tuple[list[str], list[str]]:
        from .models import layer_names

        return [g.name for g in base.groups()], layer_names(base)

    def count_params(self, model: Any) -> tuple[int, int]:
        params = list(model.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    # -- data -----------------------------------------------------------------------------------
    def _to_tensor(self, x: np.ndarray):
        torch = self.torch
        t = torch.from_numpy(np.ascontiguousarray(x))
        if self._device.type == "cuda":
            t = t.pin_memory().to(self._device, non_blocking=True)
        else:
            t = t.to(self._device)
        if x.dtype == np.uint8 and x.ndim == 4:  # NHWC pixels -> NCHW view, channels_last in memory: no copy,
            t = t.permute(0, 3, 1, 2)  # and on CPU the NHWC-strided input makes the first convolutions faster
        return t

    def _fetch_views(self, views: Any, order: np.ndarray, have: np.ndarray, x_dev: Any) -> None:
        """Put the activations of the views an epoch drew and no earlier epoch did into ``x_dev``."""
        n = views.n
        for flip in (False, True):
            wanted = order[(order >= n) == flip]
            missing = np.unique(wanted[~have[wanted]])
            if len(missing):
                x_dev[self._to_tensor(missing)] = self._to_tensor(views.fetch(missing - n * flip, flip))
                have[missing] = True

    def _resident(self, x: np.ndarray):
        """uint8 NHWC images as one tensor on the device (on CPU: the array itself, no copy), or None where
        they would take more than a quarter of the accelerator's free memory (then each batch is copied)."""
        torch = self.torch
        if self._device.type == "cpu":
            return torch.from_numpy(np.ascontiguousarray(x))
        if self._device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self._device)
            if x.nbytes > free // 4:
                return None
        return torch.from_numpy(np.ascontiguousarray(x)).to(self._device)

    def _autocast(self):
        torch = self.torch
        if self.precision == "bf16":
            return torch.autocast(device_type=self._device.type, dtype=torch.bfloat16)
        return torch.autocast(device_type=self._device.type, enabled=False)

    def _sync(self) -> None:
        if self._device.type == "cuda":
            self.torch.cuda.synchronize(self._device)
        elif self._device.type == "mps":
            self.torch.mps.synchronize()

    # -- verbs ----------------------------------------------------------------------------------
    def _infer(self, module: Any, forward: Any, x: np.ndarray, batch_size: int) -> np.ndarray | None:
        """``forward`` over ``x`` batch by batch, ``module`` in eval mode, as float32 NumPy (None: no input)."""
        module.eval()
        out = []
        with self.torch.inference_mode(), self._autocast():
            for start in range(0, len(x), batch_size):
                out.append(forward(self._to_tensor(x[start:start + batch_size])).float().contiguous().cpu().numpy())
        return np.concatenate(out) if out else None

    def features(self, base: Any, images: np.ndarray, batch_size: int, pooling: str = "avg") -> np.ndarray:
        self._check_pooling(base, pooling)
        forward = base if pooling == "avg" else (lambda x: base.pooled(x, pooling))
        out = self._infer(base, forward, images, batch_size)
        return out if out is not None else np.zeros((0, self.feature_dim(base, pooling)), np.float32)

    def cut(self, model: Any) -> Any:
        """Below the first block with a trainable parameter; torchvision-style and Lite bases only (a timm
        model runs as one module, so its blocks cannot be entered half-way)."""
        from zoo_bench.backend import Cut

        from .models import Above, Below, cut_index

        base = getattr(model, "base", None)
        if not hasattr(base, "below"):
            return None
        index = cut_index(model)
        if index == 0:
            return None
        lower = Below(model, index)
        with self._blank_pass(model) as blank:
            shape = tuple(lower(blank).shape[1:])
        return Cut(index=index, blocks=len(base.groups()), lower=lower, upper=Above(model, index), shape=shape)

    def activations(self, lower: Any, images: np.ndarray, batch_size: int, flip: bool = False) -> np.ndarray:
        out = self._infer(lower, (lambda xb: lower(xb.flip(-1))) if flip else lower, images, batch_size)
        return out if out is not None else np.zeros((0,), np.float32)

    def param_groups(self, model: Any, spec: OptimizerSpec) -> list[dict]:
        """The trainable parameters as optimiser groups: one, or one per depth under ``layer_decay``.

        Depth: the head 0, the base's top block 1, the next 2, ...; parameters of the base outside
        every block count as its first block.
        """
        params = [p for p in model.parameters() if p.requires_grad]
        if spec.layer_decay == 1.0 or not hasattr(model, "base"):
            return [{"params": params, "lr": spec.lr}]
        blocks = model.base.groups()
        depth = {id(p): len(blocks) for p in model.base.parameters()}
        for index, block in enumerate(blocks):
            for p in block.parameters:
                depth[id(p)] = len(blocks) - index
        by_depth: dict[int, list] = {}
        for p in params:
            by_depth.setdefault(depth.get(id(p), 0), []).append(p)
        return [{"params": ps, "lr": spec.lr * spec.layer_decay ** d} for d, ps in sorted(by_depth.items())]

    def adapt(self, model: Any, adapter: Any) -> None:
        from .adapters import adapt

        adapt(model, adapter)

    def merge(self, model: Any) -> Any:
        from .adapters import merged

        return merged(model)

    def multiply_adds(self, model: Any, image_size: int) -> int:
        from torch.utils.flop_counter import FlopCounterMode

        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            with self.torch.inference_mode(), self._autocast(), FlopCounterMode(display=False) as counter:
                model(self.torch.zeros((1, 3, image_size, image_size), device=self._device))
        finally:
            for m, mode in modes:
                m.training = mode
        return int(counter.get_total_flops() // 2)

    def save_weights(self, model: Any, folder: Any) -> list[str]:
        from safetensors.torch import save_model

        from .adapters import merged, save_prompts

        network = merged(model)  # LoRA merged: loads into the plain model
        base = getattr(network, "base", None)
        prompts = getattr(base, "prompts", None)
        if prompts is None:
            save_model(network, str(folder / "model.safetensors"))
            return ["model.safetensors"]
        base.prompts = None  # saved beside the weights (they cannot be merged), so the plain model loads them
        try:
            save_model(network, str(folder / "model.safetensors"))
        finally:
            base.prompts = prompts
        return ["model.safetensors"] + save_prompts(network, folder)

    def load_weights(self, model: Any, folder: Any) -> None:
        from safetensors.torch import load_model

        from .adapters import load_prompts

        missing, unexpected = load_model(model, str(folder / "model.safetensors"), strict=False,
                                         device=str(self._device))
        if missing or unexpected:
            raise ZooBenchError(f"{folder / 'model.safetensors'}: does not fit the rebuilt model "
                                f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
        load_prompts(model, folder)

    def activation_maps(self, model: Any, images: np.ndarray, classes: Any = None) -> tuple[np.ndarray, np.ndarray]:
        from .gradcam import grad_cam
        from .models import pool

        base = model.base
        if not hasattr(base, "feature_map"):
            raise ZooBenchError(f"activation maps need the backbone's last feature map, which {type(base).__name__} "
                                "does not expose (timm backbones)")
        model.eval()
        return grad_cam(base.feature_map, lambda fmap: model.head(pool(fmap, model.pooling)),
                        self._to_tensor(images), classes)

    def set_dropout(self, model: Any, rate: float) -> int:
        layers = [m for m in model.modules() if isinstance(m, self.torch.nn.Dropout)]
        if not layers:
            raise ZooBenchError("finetune_dropout: the head has no dropout layer (give it a hidden layer or dropout > 0)")
        for m in layers:
            m.p = float(rate)
        return len(layers)

    def _optimizer(self, spec: OptimizerSpec, params: list):
        optim = self.torch.optim
        fused = {"fused": True} if self._device.type == "cuda" else {}
        if spec.name == "adam":
            return optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay, **fused)
        if spec.name == "sgd":
            return optim.SGD(params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
        if spec.name == "rmsprop":
            return optim.RMSprop(params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
        raise ValueError(f"unknown optimizer {spec.name!r} (allowed: adam, sgd, rmsprop)")

    def fit(self, model, x, y, *, epochs, optimizer, batch_size, inputs=None, val=None, augment=False, on_epoch=None,
            monitor=None):
        """``x``: uint8 images, pooled features, activations at a cut, or a ``CutViews`` of them."""
        from zoo_bench.augment import Augment
        from zoo_bench.backend import CutViews

        from .augment import augment as augment_batch

        torch = self.torch
        phase = fit_inputs(x, inputs)
        views = x if isinstance(x, CutViews) else None
        images, spatial = phase == "images", phase == "cut"
        n = len(y)
        aug = augment if isinstance(augment, Augment) else Augment(flip=bool(augment))
        opt = self._optimizer(optimizer, self.param_groups(model, optimizer))
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: optimizer.schedule.factor(e, epochs))
        loss_fn = torch.nn.CrossEntropyLoss()
        if views is not None:  # filled on first use; under a flip, index n + i is image i mirrored
            copies = 2 if views.flip else 1
            x_dev = torch.empty((copies * n, *views.shape), device=self._device)
            y_dev = self._to_tensor(np.tile(y, copies))
            have = np.zeros(copies * n, bool)
        elif images:  # uint8 pixels on the device for the whole fit where they fit (always, on CPU)
            x_dev, y_dev = self._resident(x), self._to_tensor(y)
        else:  # features are small: keep them on the device for the whole fit
            x_dev, y_dev = self._to_tensor(x.astype(np.float32)), self._to_tensor(y)
        net = model
        if self.compile and images:  # compiled on the first step: the first epoch carries the compile time
            net = torch.compile(model)
        book = EpochBook(self, model, phase=phase, epochs=epochs, batch_size=batch_size, val=val, on_epoch=on_epoch,
                         monitor=monitor, snapshot=lambda: self._weights(model), restore=model.load_state_dict)
        for epoch in range(epochs):
            order = self._rng.permutation(n)
            if views is not None:
                if views.flip:
                    order = order + n * (self._rng.random(n) < 0.5)[order]
                self._fetch_views(views, order, have, x_dev)
            if x_dev is not None:  # index on the device: no host-to-device copy per step
                order = self._to_tensor(order)
            model.train()
            self._sync()
            start = time.perf_counter()
            total_loss = torch.zeros((), device=self._device)
            seen = 0
            data_seconds = 0.0
            for i in range(0, len(order), batch_size):
                idx = order[i:i + batch_size]
                if spatial and len(idx) < 2:  # BatchNorm in training mode cannot take one image
                    continue
                tick = time.perf_counter()
                if images:
                    if x_dev is not None:
                        xb, yb = x_dev[idx].permute(0, 3, 1, 2), y_dev[idx]  # NCHW view, channels_last in memory
                    else:
                        xb, yb = self._to_tensor(x[idx]), self._to_tensor(y[idx])
                    xb = augment_batch(xb, aug)  # on the device
                else:
                    xb, yb = x_dev[idx], y_dev[idx]
                data_seconds += time.perf_counter() - tick
                with self._autocast():
                    logits = net(xb)
                loss = loss_fn(logits.float(), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total_loss += loss.detach() * len(idx)
                seen += len(idx)
            self._sync()
            seconds = time.perf_counter() - start
            mean_loss = float(total_loss.item() / max(seen, 1))
            stop = book.end_epoch(epoch, seconds=seconds, images=seen, train_loss=mean_loss,
                                  lr=float(opt.param_groups[0]["lr"]), data_seconds=data_seconds)
            scheduler.step()
            if stop:
                break
        return book.finish()

    def fit_heads(self, x, y, fits: list[HeadFit], *, num_classes, epochs, batch_size, seed, val=None,
                  on_epoch=None) -> list[HeadFitResult]:
        """Every head of a sweep in one stacked pass per step (``head_sweep.fit_heads``).

        Seeds: initial weights from ``seed``, the shuffle from its own stream derived from ``seed``,
        dropout masks per head; so a head's result is the same alone or in any sweep. Without
        validation data there is no best epoch and no early stopping (as :class:`Monitor`).
        """
        from .head_sweep import HeadConfig, fit_heads

        configs = [HeadConfig(hidden=tuple(int(h) for h in f.head.hidden), dropout=float(f.head.dropout),
                              optimizer=f.optimizer.name, lr=f.optimizer.lr, weight_decay=f.optimizer.weight_decay,
                              momentum=f.optimizer.momentum, schedule=f.optimizer.schedule, init_seed=seed,
                              patience=f.patience if val is not None else 0, restore_best=f.restore_best)
                   for f in fits]
        x_dev, y_dev = self._to_tensor(x.astype(np.float32)), self._to_tensor(y)
        val_dev = (self._to_tensor(val[0].astype(np.float32)), self._to_tensor(val[1])) if val is not None else None
        order_rng = np.random.default_rng([seed, 0x73687566])  # the shuffle's own stream ("shuf")
        autocast = self._autocast if self.precision != "fp32" else None
        n = len(y)

        def stats_of(record: Any, active: int) -> EpochStats:
            return EpochStats(phase="features", seconds=record.seconds / max(active, 1), images=n,
                              train_loss=record.train_loss, val_accuracy=record.val_accuracy,
                              val_loss=record.val_loss, lr=record.lr)

        def report(epoch: int, total: int, records: list) -> None:
            if on_epoch is not None and records[0] is not None:
                on_epoch(epoch, total, stats_of(records[0], sum(r is not None for r in records)))

        results = fit_heads(x_dev, y_dev, configs, num_classes=num_classes, epochs=epochs, batch_size=batch_size,
                            order_rng=order_rng, val=val_dev, autocast=autocast, on_epoch=report)
        out = []
        for result in results:
            stats = [stats_of(r, sum(len(o.epochs) > e for o in results)) for e, r in enumerate(result.epochs)]
            diverged_loss = result.epochs[-1].train_loss if result.diverged_epoch is not None else None
            out.append(HeadFitResult(head=result.head, epochs=stats, best_epoch=result.best_epoch,
                                     diverged_epoch=result.diverged_epoch, diverged_loss=diverged_loss))
        return out

    def _weights(self, model: Any) -> dict:
        """A copy of every weight and buffer (for restoring the best epoch)."""
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    def recalibrate_batchnorm(self, model: Any, x: np.ndarray, batch_size: int) -> None:
        torch = self.torch
        frozen = {id(m) for m in getattr(model, "inference_bn", [])}
        bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and id(m) not in frozen]
        if not bns:
            return
        saved = [m.momentum for m in bns]
        model.eval()
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the pass
            m.train()
        with torch.no_grad(), self._autocast():
            for start in range(0, len(x), batch_size):
                if len(x) - start >= 2:
                    model(self._to_tensor(x[start:start + batch_size]))
        for m, momentum in zip(bns, saved):
            m.momentum = momentum
        model.eval()

    def logits(self, model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
        if x.dtype != np.uint8:
            x = x.astype(np.float32)
            batch_size = max(batch_size, 1024)
        out = self._infer(model, model, x, batch_size)
        return out if out is not None else np.zeros((0, 0), np.float32)

    def predict(self, model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
        scores = self.logits(model, x, batch_size)
        return scores.argmax(axis=1).astype(np.int64) if len(scores) else np.zeros(0, np.int64)

    def is_out_of_memory(self, exc: BaseException) -> bool:
        oom = getattr(self.torch.cuda, "OutOfMemoryError", ())
        return isinstance(exc, oom) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())

    def release_memory(self) -> None:
        if self._device.type == "cuda":
            self.torch.cuda.empty_cache()
        elif self._device.type == "mps":
            self.torch.mps.empty_cache()

    def reset_peak_memory(self) -> None:
        if self._device.type == "cuda":
            self.torch.cuda.reset_peak_memory_stats(self._device)

    def peak_memory_mb(self) -> float | None:
        if self._device.type == "cuda":
            return self.torch.cuda.max_memory_allocated(self._device) / 2**20
        return None
