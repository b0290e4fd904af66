"""Train many small classification heads on the same cached features at once.

Why: a hyper-parameter sweep over heads on frozen-base features repeats the same small fit many
times, and on a GPU each of those fits is dominated by per-step launch and Python overhead, not
arithmetic. ``fit_heads`` runs every head on the same mini-batch in one stacked forward and
backward pass, so that overhead is paid once per step instead of once per head. Each head still
gets exactly the updates its own fit would give: the same shuffle, its own initial weights and
dropout masks, its own torch.optim parameter group, and a gradient that is its solo gradient (the
loss is a sum of per-head losses). On a CPU, heads of realistic width spend most of a step in
their own matrix products and optimizer update, which batching cannot share, so the gain there is
smaller (``benchmarks/head_sweep_speed.py`` measures both).

Grouping: heads with the same ``hidden`` widths are stacked into one group and computed with
batched matrix products (``torch.baddbmm``). Heads with different ``hidden`` widths form separate
groups; all groups still share each step's mini-batch, one backward pass and one ``step()`` per
optimizer kind.

Random streams of one head, both on the host, so a seed gives the same head and the same masks
on every device:

* initial weights: ``torch.Generator().manual_seed(init_seed)``; for each Linear layer in order,
  first its weight of shape ``(out, in)`` then its bias of shape ``(out,)``, each
  ``uniform_(-1/sqrt(in), 1/sqrt(in))`` (the bounds of ``nn.Linear``'s default init);
* dropout masks: ``dropout_rng(init_seed)``, a numpy PCG64 generator on a seed derived from
  ``init_seed`` (its float32 draws cost a fraction of a CPU ``torch.Generator``'s). Masks are
  drawn per block of ``MASK_BLOCK_STEPS`` consecutive steps of an epoch (the last block of an
  epoch may be shorter), one ``rng.random((rows, width), dtype=float32)`` per dropout layer in
  layer order, where ``rows`` is the number of samples in the block; a unit is kept when its draw
  is ``>= dropout`` and then scaled by ``1 / (1 - dropout)`` (inverted dropout, as
  ``nn.Dropout``). A head with ``dropout == 0`` draws nothing. The sequence depends only on the
  head's config, N, batch size and epoch count, never on the other heads.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable, ContextManager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoo_bench.schedules import Schedule

from .models import make_head

OPTIMIZERS = ("adam", "sgd", "rmsprop")
MASK_BLOCK_STEPS = 16  # steps whose dropout masks (and batch rows) are drawn/gathered together
VAL_CHUNK = 1024  # validation rows per stacked forward pass; fixed so results do not depend on k


@dataclass(frozen=True)
class HeadConfig:
    """One head of a sweep: its shape, dropout, optimizer and stopping rule."""

    hidden: tuple[int, ...]
    dropout: float
    optimizer: str
    lr: float
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: Schedule = Schedule()  # the learning rate of each epoch: lr x schedule.factor(epoch, epochs)
    init_seed: int = 0
    patience: int = 0
    restore_best: bool = False

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r} (allowed: {', '.join(OPTIMIZERS)})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if any(int(h) < 1 for h in self.hidden):
            raise ValueError(f"hidden widths must be positive, got {self.hidden}")
        if self.lr < 0 or self.weight_decay < 0 or self.momentum < 0:
            raise ValueError("lr, weight_decay and momentum must be >= 0")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience}")
        if self.init_seed < 0:
            raise ValueError(f"init_seed must be >= 0, got {self.init_seed}")


@dataclass
class HeadEpoch:
    """One epoch of one head; ``seconds`` is the shared training pass, validation excluded."""

    seconds: float
    train_loss: float
    val_loss: float | None
    val_accuracy: float | None
    lr: float


@dataclass
class HeadResult:
    """A trained head and its history."""

    head: nn.Sequential
    epochs: list[HeadEpoch]
    best_epoch: int | None
    diverged_epoch: int | None


def dropout_rng(init_seed: int) -> np.random.Generator:
    """A head's dropout generator: its own stream, derived from ``init_seed`` but not the init stream."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([init_seed, 0x64726F70])))


def init_linear_params(generator: torch.Generator, widths: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, bias) per Linear layer, nn.Linear's bounds, drawn in the documented order on the CPU."""
    layers = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        bound = 1.0 / math.sqrt(fan_in)
        weight = torch.empty(fan_out, fan_in).uniform_(-bound, bound, generator=generator)
        bias = torch.empty(fan_out).uniform_(-bound, bound, generator=generator)
        layers.append((weight, bias))
    return layers


@dataclass
class _Head:
    """A head's leaves and bookkeeping. Weights are stored transposed, (in, out), for stacked bmm."""

    index: int
    config: HeadConfig
    weights_t: list[torch.Tensor]
    biases: list[torch.Tensor]
    dropout_rng: np.random.Generator | None
    group: dict = field(default_factory=dict)  # this head's torch.optim param group
    epochs: list[HeadEpoch] = field(default_factory=list)
    best_key: tuple[float, float] | None = None  # (val accuracy, -val loss) or (-train loss, 0)
    best_epoch: int | None = None
    best_state: list[torch.Tensor] | None = None
    since_best: int = 0
    diverged_epoch: int | None = None
    active: bool = True

    def params(self) -> list[torch.Tensor]:
        return [t for pair in zip(self.weights_t, self.biases) for t in pair]


class _Group:
    """Heads with the same hidden widths, computed together along a leading head dimension.

    The weights of the active heads live in one stacked tensor per layer, ``(k, in, out)`` and
    ``(k, out)``, and each head's leaf parameter is a view of its row. The forward pass reads the
    stacked tensors directly (no per-step ``torch.stack`` copy), the backward pass yields stacked
    gradients whose rows become the heads' ``.grad``, and each optimizer step updates the rows in
    place through the leaves. The stack is rebuilt only when a head stops.
    """

    def __init__(self, hidden: tuple[int, ...], heads: list[_Head]):
        self.hidden = hidden
        self.heads = heads
        self.active: list[_Head] = []
        self.refresh()

    def refresh(self) -> None:
        """Re-pack the stacked weights for the heads still training; stopped heads keep their own copy."""
        for head in self.active:
            if not head.active:
                for param in head.params():
                    param.data = param.detach().clone()
        self.active = [h for h in self.heads if h.active]
        n_layers = len(self.hidden) + 1
        self.rows = [[h.weights_t[i] for h in self.active] for i in range(n_layers)]
        self.rows += [[h.biases[i] for h in self.active] for i in range(n_layers)]
        self.stacked = [torch.stack([p.detach() for p in row]) if row else None for row in self.rows]
        for row, stacked in zip(self.rows, self.stacked):
            for param, view in zip(row, stacked.unbind(0) if stacked is not None else ()):
                param.data = view
        self.has_dropout = any(h.config.dropout > 0 for h in self.active)
        self.loss_total: torch.Tensor | None = None

    def leaves(self) -> list[torch.Tensor]:
        """Fresh autograd leaves aliasing the stacked weights (no copy): weights per layer, then biases."""
        return [s.detach().requires_grad_() for s in self.stacked]

    def set_grads(self, grads: tuple[torch.Tensor, ...]) -> None:
        """Hand each head the rows of the stacked gradients as its own ``.grad``."""
        for row, grad in zip(self.rows, grads):
            for param, g in zip(row, grad.unbind(0)):
                param.grad = g

    def draw_masks(self, rows: int, in_features: int, device: torch.device) -> list[torch.Tensor] | None:
        """Scaled keep-masks (k, rows, width) per dropout layer for the next block, None without dropout.

        Built in place on the host (pinned for CUDA, so the copy does not wait for the device).
        """
        if not self.has_dropout:
            return None
        widths = list(self.hidden) if self.hidden else [in_features]
        pin = device.type == "cuda"
        out = []
        for width in widths:
            masks_t = torch.empty(len(self.active), rows, width, pin_memory=pin)
            masks = masks_t.numpy()
            for i, head in enumerate(self.active):
                p = head.config.dropout
                if p > 0:
                    draw = head.dropout_rng.random((rows, width), dtype=np.float32)
                    np.multiply(draw >= p, np.float32(1.0 / (1.0 - p)), out=masks[i])
                else:
                    masks[i] = 1.0
            out.append(masks_t.to(device, non_blocking=True))
        return out

    def forward(self, xb: torch.Tensor, masks: list[torch.Tensor] | None, lo: int, hi: int,
                params: list[torch.Tensor]) -> torch.Tensor:
        """Logits (k, B, C) of all active heads on the shared batch ``xb`` (B, D)."""
        n_layers = len(params) // 2
        h = xb.unsqueeze(0).expand(len(self.active), -1, -1)
        if masks is not None and not self.hidden:
            h = h * masks[0][:, lo:hi]
        for i in range(n_layers):
            h = torch.baddbmm(params[n_layers + i].unsqueeze(1), h, params[i])
            if i < n_layers - 1:
                h = torch.relu(h)
                if masks is not None:
                    h = h * masks[i][:, lo:hi]
        return h


def _make_optimizer(kind: str, groups: list[dict], device: torch.device) -> torch.optim.Optimizer:
    """One torch.optim optimizer per kind; per-head hyper-parameters live in the param groups."""
    fused = device.type in ("cpu", "cuda")
    if kind == "adam":
        return torch.optim.Adam(groups, lr=groups[0]["lr"], **({"fused": True} if fused else {"foreach": True}))
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=groups[0]["lr"], **({"fused": True} if fused else {"foreach": True}))
    return torch.optim.RMSprop(groups, lr=groups[0]["lr"], foreach=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fit_heads(x: torch.Tensor, y: torch.Tensor, configs: list[HeadConfig], *, num_classes: int, epochs: int,
              batch_size: int, order_rng: np.random.Generator,
              val: tuple[torch.Tensor, torch.Tensor] | None = None,
              autocast: Callable[[], ContextManager] | None = None,
              on_epoch: Callable[[int, int, list[HeadEpoch | None]], None] | None = None) -> list[HeadResult]:
    """Train one head per config on features ``x`` (N, D) and labels ``y`` (N,), all in one pass per step.

    Every epoch draws one ``order_rng.permutation(N)`` shared by all heads, so head ``i`` of a sweep
    ends with the weights and history of ``fit_heads(x, y, [configs[i]], ...)`` given an ``order_rng``
    in the same state. A head stops early (its weights kept) when ``patience`` epochs pass without a
    better epoch or when its mean train loss is not finite (``diverged_epoch``; that epoch cannot be
    the best one). Best epoch: highest val accuracy, then lower val loss, then earlier. Without
    validation data ``patience`` watches the mean train loss, ``best_epoch`` is None and
    ``restore_best`` has no effect.
    """
    if x.dim() != 2 or y.dim() != 1 or len(x) != len(y):
        raise ValueError(f"x must be (N, D) and y (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
    if len(y) == 0:
        raise ValueError("no training samples")
    if batch_size < 1 or epochs < 0 or num_classes < 1:
        raise ValueError("batch_size and num_classes must be >= 1 and epochs >= 0")
    if not configs:
        return []
    device = x.device
    n, in_features = x.shape
    x, y = x.float(), y.long()
    if val is not None:
        val = (val[0].float(), val[1].long()) if len(val[1]) else None
    amp = autocast if autocast is not None else contextlib.nullcontext

    heads: list[_Head] = []
    for index, config in enumerate(configs):
        widths = [in_features, *config.hidden, num_classes]
        layers = init_linear_params(torch.Generator().manual_seed(config.init_seed), widths)
        weights_t = [w.t().contiguous().to(device).requires_grad_() for w, _ in layers]
        biases = [b.to(device).requires_grad_() for _, b in layers]
        rng = dropout_rng(config.init_seed) if config.dropout > 0 else None
        head = _Head(index, config, weights_t, biases, rng)
        head.group = {"params": head.params(), "lr": config.lr, "weight_decay": config.weight_decay}
        if config.optimizer in ("sgd", "rmsprop"):
            head.group["momentum"] = config.momentum
        heads.append(head)

    by_hidden: dict[tuple[int, ...], list[_Head]] = {}
    for head in heads:
        by_hidden.setdefault(tuple(int(h) for h in head.config.hidden), []).append(head)
    groups = [_Group(hidden, members) for hidden, members in by_hidden.items()]
    optimizers: dict[str, torch.optim.Optimizer] = {}
    for kind in OPTIMIZERS:
        kind_groups = [h.group for h in heads if h.config.optimizer == kind]
        if kind_groups:
            optimizers[kind] = _make_optimizer(kind, kind_groups, device)

    block_rows = MASK_BLOCK_STEPS * batch_size
    for epoch in range(epochs):
        live = [g for g in groups if g.active]
        if not live:
            break
        order = torch.from_numpy(order_rng.permutation(n)).to(device)
        for g in live:
            for head in g.active:
                head.group["lr"] = head.config.lr * head.config.schedule.factor(epoch, epochs)
        for g in live:
            g.loss_total = torch.zeros(len(g.active), device=device)
        steppers = [opt for opt in optimizers.values() if opt.param_groups]
        _sync(device)
        start = time.perf_counter()
        for block_start in range(0, n, block_rows):
            block_end = min(block_start + block_rows, n)
            idx = order[block_start:block_end]
            xblock, yblock = x[idx], y[idx]
            masks = [g.draw_masks(block_end - block_start, in_features, device) for g in live]
            for lo in range(0, block_end - block_start, batch_size):
                hi = min(lo + batch_size, block_end - block_start)
                xb, yb = xblock[lo:hi], yblock[lo:hi]
                total = None
                leaves: list[torch.Tensor] = []
                for g, g_masks in zip(live, masks):
                    params = g.leaves()
                    leaves += params
                    with amp():
                        logits = g.forward(xb, g_masks, lo, hi, params)
                    k, rows, classes = logits.shape
                    per_head = F.cross_entropy(logits.float().reshape(k * rows, classes), yb.repeat(k),
                                               reduction="none").view(k, rows).mean(1)
                    g.loss_total.add_(per_head.detach(), alpha=hi - lo)
                    total = per_head.sum() if total is None else total + per_head.sum()
                grads = torch.autograd.grad(total, leaves)
                pos = 0
                for g in live:
                    g.set_grads(grads[pos:pos + len(g.stacked)])
                    pos += len(g.stacked)
                for opt in steppers:
                    opt.step()
        _sync(device)
        seconds = time.perf_counter() - start

        train_losses = torch.cat([g.loss_total for g in live]).double().div_(n).tolist()
        val_stats = _validate(live, val, amp) if val is not None else None
        report: list[HeadEpoch | None] = [None] * len(heads)
        changed = set()
        pos = 0
        for g in live:
            for head in g.active:
                train_loss = train_losses[pos]
                val_loss = val_acc = None
                if val_stats is not None:
                    val_loss, val_acc = val_stats[pos]
                pos += 1
                record = HeadEpoch(seconds=seconds, train_loss=train_loss, val_loss=val_loss,
                                   val_accuracy=val_acc, lr=float(head.group["lr"]))
                head.epochs.append(record)
                report[head.index] = record
                if _finish_epoch(head, epoch + 1, record):
                    changed.add(id(g))
        for g in live:
            if id(g) in changed:
                for head in g.active:
                    if not head.active:
                        opt = optimizers[head.config.optimizer]
                        opt.param_groups = [pg for pg in opt.param_groups if pg is not head.group]
                g.refresh()
        if on_epoch is not None:
            on_epoch(epoch, epochs, report)

    results = []
    for head in heads:
        if head.config.restore_best and head.best_state is not None:
            with torch.no_grad():
                for param, saved in zip(head.params(), head.best_state):
                    param.copy_(saved)
        results.append(HeadResult(head=_to_sequential(head, in_features, num_classes, device), epochs=head.epochs,
                                  best_epoch=head.best_epoch if val is not None else None,
                                  diverged_epoch=head.diverged_epoch))
    return results


def _finish_epoch(head: _Head, epoch: int, record: HeadEpoch) -> bool:
    """Update best/patience/divergence after an epoch; True when the head stops training."""
    if not math.isfinite(record.train_loss):
        head.diverged_epoch = epoch
        head.active = False
        return True
    if record.val_accuracy is not None:
        key = (record.val_accuracy, -record.val_loss)
    else:
        key = (-record.train_loss, 0.0)
    if head.best_key is None or key > head.best_key:  # NaN compares false: never an improvement
        head.best_key, head.best_epoch, head.since_best = key, epoch, 0
        if head.config.restore_best and record.val_accuracy is not None:
            head.best_state = [p.detach().clone() for p in head.params()]
    else:
        head.since_best += 1
    if head.config.patience and head.since_best >= head.config.patience:
        head.active = False
        return True
    return False


@torch.no_grad()
def _validate(groups: list[_Group], val: tuple[torch.Tensor, torch.Tensor],
              amp: Callable[[], ContextManager]) -> list[tuple[float, float]]:
    """(mean val CE, val accuracy) per active head, in group order; one host read for all heads."""
    xv, yv = val
    sums = []
    for g in groups:
        loss_sum = torch.zeros(len(g.active), device=xv.device)
        correct = torch.zeros(len(g.active), device=xv.device, dtype=torch.int64)
        for lo in range(0, len(yv), VAL_CHUNK):
            xb, yb = xv[lo:lo + VAL_CHUNK], yv[lo:lo + VAL_CHUNK]
            with amp():
                logits = g.forward(xb, None, 0, 0, g.stacked).float()
            k, rows, classes = logits.shape
            loss_sum += F.cross_entropy(logits.reshape(k * rows, classes), yb.repeat(k),
                                        reduction="none").view(k, rows).sum(1)
            correct += (logits.argmax(2) == yb).sum(1)
        sums.append(torch.stack([loss_sum.double(), correct.double()], 1))
    host = torch.cat(sums).tolist()
    count = len(yv)
    return [(loss / count, hits / count) for loss, hits in host]


def _to_sequential(head: _Head, in_features: int, num_classes: int, device: torch.device) -> nn.Sequential:
    """The head as ``models.make_head`` lays it out, holding the trained weights."""
    with torch.device("meta"):  # no init draws from the global RNG
        module = make_head(in_features, num_classes, head.config.hidden, head.config.dropout)
    module = module.to_empty(device=device)
    linears = [m for m in module if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for linear, w_t, b in zip(linears, head.weights_t, head.biases):
            linear.weight.copy_(w_t.t())
            linear.bias.copy_(b)
    return module
