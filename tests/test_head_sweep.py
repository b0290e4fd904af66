"""fit_heads: a head trained in a stacked sweep must equal the same head trained alone.

On the development CPU (AMD EPYC, torch 2.14 CPU build, MKL) every head of the mixed sweep below
was bitwise equal to its solo fit (weights, per-epoch losses and predictions); the assertions
allow 1e-6 so that a BLAS that picks a different kernel per batch count still passes.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from zoo_bench_torch.head_sweep import MASK_BLOCK_STEPS, HeadConfig, HeadResult, dropout_rng, fit_heads
from zoo_bench_torch.models import make_head

N, N_VAL, D, CLASSES = 192, 64, 24, 3
TOL = 1e-6


def make_data(seed: int = 0, noise: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features whose class is a noisy linear function of them, so heads can learn but not perfectly."""
    gen = torch.Generator().manual_seed(seed)
    proj = torch.randn(D, CLASSES, generator=gen)
    x = torch.randn(N + N_VAL, D, generator=gen)
    y = (x @ proj + noise * torch.randn(N + N_VAL, CLASSES, generator=gen)).argmax(1)
    return x[:N], y[:N], x[N:], y[N:]


DATA = make_data()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tensors here are tiny: extra threads only add synchronisation cost."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(configs: list[HeadConfig], *, epochs: int = 6, batch_size: int = 20, seed: int = 7, data=DATA,
        with_val: bool = True, on_epoch=None) -> list[HeadResult]:
    x, y, xv, yv = data
    return fit_heads(x, y, configs, num_classes=CLASSES, epochs=epochs, batch_size=batch_size,
                     order_rng=np.random.default_rng(seed), val=(xv, yv) if with_val else None,
                     on_epoch=on_epoch)


def max_weight_diff(a: nn.Module, b: nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max((sa[k] - sb[k]).abs().max().item() for k in sa)


def assert_same_fit(batched: HeadResult, solo: HeadResult) -> None:
    assert len(batched.epochs) == len(solo.epochs)
    assert batched.best_epoch == solo.best_epoch
    assert batched.diverged_epoch == solo.diverged_epoch
    for eb, es in zip(batched.epochs, solo.epochs):
        assert abs(eb.train_loss - es.train_loss) <= TOL
        assert abs(eb.val_loss - es.val_loss) <= TOL
        assert eb.val_accuracy == es.val_accuracy
        assert eb.lr == es.lr
    assert max_weight_diff(batched.head, solo.head) <= TOL
    xv = DATA[2]
    batched.head.eval()
    solo.head.eval()
    with torch.no_grad():
        assert torch.equal(batched.head(xv).argmax(1), solo.head(xv).argmax(1))


SWEEP = [
    HeadConfig((16,), 0.0, "adam", 1e-3),
    HeadConfig((16,), 0.3, "adam", 3e-3, weight_decay=1e-2, init_seed=1),
    HeadConfig((16,), 0.5, "sgd", 5e-2, momentum=0.5, init_seed=2, restore_best=True),
    HeadConfig((16,), 0.1, "rmsprop", 1e-3, weight_decay=1e-3, momentum=0.8, init_seed=3),
    HeadConfig((16,), 0.0, "sgd", 3.0, momentum=0.0, init_seed=4, patience=1),  # stops early
    HeadConfig((16,), 0.2, "adam", 1e-2, init_seed=5, patience=2, restore_best=True),
    HeadConfig((8, 6), 0.25, "adam", 3e-3, init_seed=6),
    HeadConfig((8, 6), 0.0, "rmsprop", 3e-3, momentum=0.0, init_seed=7, restore_best=True),
    HeadConfig((), 0.4, "sgd", 1e-1, weight_decay=1e-3, init_seed=8),
    HeadConfig((), 0.0, "adam", 1e-2, init_seed=9, patience=1),
]


def test_each_head_of_a_mixed_sweep_equals_its_solo_fit():
    batched = run(SWEEP)
    assert any(len(r.epochs) < 6 for r in batched), "the sweep should exercise a head stopped by patience"
    for config, result in zip(SWEEP, batched):
        assert_same_fit(result, run([config])[0])


def test_heads_learn_and_differ():
    """Guards the equality test against an engine that does nothing or trains every head alike."""
    first, _, _, fourth = run([SWEEP[0], SWEEP[1], SWEEP[2], SWEEP[6]], epochs=8)
    assert first.epochs[-1].train_loss < first.epochs[0].train_loss
    assert first.epochs[-1].val_accuracy > 0.5
    assert max_weight_diff(first.head, run([SWEEP[0]], epochs=0)[0].head) > 1e-3
    assert max_weight_diff(first.head, run([SWEEP[0]], epochs=8, seed=8)[0].head) > 1e-4
    assert len(fourth.head) == len(make_head(D, CLASSES, (8, 6), 0.25))


def test_solo_head_matches_plain_torch_training():
    """Without dropout, a head is what nn.Sequential + torch.optim would train from the same start."""
    x, y, _, _ = DATA
    for config in [HeadConfig((16,), 0.0, "adam", 3e-3, weight_decay=1e-2, init_seed=3),
                   HeadConfig((16,), 0.0, "sgd", 5e-2, weight_decay=1e-3, momentum=0.7, init_seed=4),
                   HeadConfig((), 0.0, "rmsprop", 1e-3, weight_decay=1e-3, momentum=0.5, init_seed=5)]:
        model = run([config], epochs=0)[0].head
        cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop}[config.optimizer]
        extra = {} if config.optimizer == "adam" else {"momentum": config.momentum}
        opt = cls(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, **extra)
        rng = np.random.default_rng(7)
        losses = []
        for _ in range(4):
            order = torch.from_numpy(rng.permutation(N))
            total = 0.0
            for i in range(0, N, 20):
                idx = order[i:i + 20]
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            losses.append(total / N)
        ours = run([config], epochs=4)[0]
        assert max_weight_diff(ours.head, model) <= 1e-5
        assert [e.train_loss for e in ours.epochs] == pytest.approx(losses, abs=1e-5)


def test_init_is_nn_linear_bounds_and_seeded():
    before = torch.random.get_rng_state()
    a, b, c = run([HeadConfig((16,), 0.0, "adam", 1e-3, init_seed=11),
                   HeadConfig((16,), 0.5, "sgd", 1e-1, init_seed=11),
                   HeadConfig((16,), 0.0, "adam", 1e-3, init_seed=12)], epochs=0)
    assert torch.equal(torch.random.get_rng_state(), before)  # torch's global generator is left alone
    assert max_weight_diff(a.head, b.head) == 0.0  # dropout and optimizer do not touch the init stream
    assert max_weight_diff(a.head, c.head) > 0.01
    for layer in (m for m in a.head if isinstance(m, nn.Linear)):
        bound = 1 / math.sqrt(layer.in_features)
        assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
        assert layer.weight.abs().max() > 0.8 * bound
    assert a.epochs == [] and a.best_epoch is None


def test_patience_stops_one_head_without_changing_the_others():
    noisy = make_data(seed=3, noise=6.0)  # labels mostly noise: validation stops improving quickly
    other = HeadConfig((16,), 0.2, "adam", 3e-3, init_seed=1)
    patient = HeadConfig((16,), 0.0, "sgd", 0.5, init_seed=2, patience=1)
    stopped, other_a = run([patient, other], epochs=10, data=noisy)
    full, other_b = run([HeadConfig((16,), 0.0, "sgd", 0.5, init_seed=2), other], epochs=10, data=noisy)
    assert len(stopped.epochs) < 10 and len(full.epochs) == 10 and len(other_a.epochs) == 10
    assert stopped.diverged_epoch is None
    last = len(stopped.epochs)
    assert last - stopped.best_epoch == 1  # stopped after one epoch without improvement
    for a, b in zip(stopped.epochs, full.epochs):  # same trajectory until it stopped
        assert abs(a.train_loss - b.train_loss) <= TOL and a.val_accuracy == b.val_accuracy
    assert max_weight_diff(other_a.head, other_b.head) <= TOL
    assert [e.train_loss for e in other_a.epochs] == pytest.approx([e.train_loss for e in other_b.epochs], abs=TOL)


def test_patience_without_validation_watches_train_loss():
    config = HeadConfig((16,), 0.0, "sgd", 0.3, momentum=0.9, init_seed=2, patience=1)
    (result,) = run([config], epochs=10, with_val=False)
    losses = [e.train_loss for e in result.epochs]
    assert result.best_epoch is None and result.diverged_epoch is None and result.epochs[0].val_loss is None
    assert 2 <= len(losses) < 10
    assert losses[-1] >= min(losses[:-1]) and all(b < a for a, b in zip(losses[:-2], losses[1:-1]))


def _val_metrics(head: nn.Module) -> tuple[float, float]:
    _, _, xv, yv = DATA
    head.eval()
    with torch.no_grad():
        logits = head(xv)
    return nn.functional.cross_entropy(logits, yv).item(), (logits.argmax(1) == yv).float().mean().item()


def test_restore_best_returns_the_best_epochs_weights():
    base = dict(hidden=(16,), dropout=0.3, optimizer="adam", lr=3e-2, init_seed=4)
    restored, last = run([HeadConfig(**base, restore_best=True), HeadConfig(**base)], epochs=10)
    assert restored.best_epoch is not None and restored.best_epoch < len(restored.epochs), \
        "pick a config whose last epoch is not its best, or the test proves nothing"
    best = restored.epochs[restored.best_epoch - 1]
    # the recorded best is the highest accuracy, then the lowest loss, then the earliest epoch
    keys = [(e.val_accuracy, -e.val_loss) for e in restored.epochs]
    assert keys.index(max(keys)) + 1 == restored.best_epoch
    loss, acc = _val_metrics(restored.head)
    assert acc == pytest.approx(best.val_accuracy, abs=1e-9)
    assert loss == pytest.approx(best.val_loss, rel=1e-5)
    loss, acc = _val_metrics(last.head)
    assert acc == pytest.approx(last.epochs[-1].val_accuracy, abs=1e-9)
    assert loss == pytest.approx(last.epochs[-1].val_loss, rel=1e-5)
    assert acc != pytest.approx(best.val_accuracy, abs=1e-9)
    assert max_weight_diff(restored.head, last.head) > 1e-4


def test_best_epoch_ties_go_to_lower_loss_then_earlier_epoch():
    frozen = HeadConfig((16,), 0.0, "sgd", 0.0, init_seed=2, patience=2)  # lr 0: every epoch ties
    creeping = HeadConfig((16,), 0.0, "sgd", 1e-5, momentum=0.0, init_seed=2)  # same accuracy, falling loss
    tied, slow = run([frozen, creeping], epochs=6)
    assert len({(e.val_accuracy, e.val_loss) for e in tied.epochs}) == 1
    assert tied.best_epoch == 1 and len(tied.epochs) == 3
    losses = [e.val_loss for e in slow.epochs]
    assert len({e.val_accuracy for e in slow.epochs}) == 1 and losses == sorted(losses, reverse=True)
    assert losses[0] > losses[-1] and slow.best_epoch == 6


@pytest.mark.parametrize("hidden", [(), (16,)])
def test_dropout_masks_follow_the_documented_stream(hidden):
    """With lr 0 the epoch loss is the loss under the documented masks: stream, order and scaling."""
    x, y, _, _ = DATA
    p, batch = 0.4, 4
    (result,) = run([HeadConfig(hidden, p, "sgd", 0.0, init_seed=5)], epochs=2, batch_size=batch, with_val=False)
    linears = [m for m in result.head if isinstance(m, nn.Linear)]
    gen = dropout_rng(5)
    rng = np.random.default_rng(7)
    for epoch in result.epochs:
        order = torch.from_numpy(rng.permutation(N))
        total = 0.0
        for start in range(0, N, MASK_BLOCK_STEPS * batch):
            rows = order[start:start + MASK_BLOCK_STEPS * batch]
            h = x[rows]
            if not hidden:
                h = h * torch.from_numpy(gen.random((len(rows), D), dtype=np.float32) >= p) / (1 - p)
            for i, layer in enumerate(linears):
                h = layer(h)
                if i < len(linears) - 1:
                    keep = torch.from_numpy(gen.random((len(rows), h.shape[1]), dtype=np.float32) >= p)
                    h = torch.relu(h) * keep / (1 - p)
            total += nn.functional.cross_entropy(h, y[rows], reduction="sum").item()
        assert epoch.train_loss == pytest.approx(total / N, rel=1e-5)


def test_divergent_head_stops_and_leaves_the_others_alone():
    absurd = HeadConfig((16,), 0.0, "sgd", 1e30, init_seed=3)
    sweep = [SWEEP[0], absurd, SWEEP[3]]
    seen: list[list] = []
    results = run(sweep, on_epoch=lambda i, total, per_head: seen.append([i, total, per_head]))
    bad = results[1]
    assert bad.diverged_epoch is not None and len(bad.epochs) == bad.diverged_epoch
    assert not math.isfinite(bad.epochs[-1].train_loss)
    for index in (0, 2):
        assert_same_fit(results[index], run([sweep[index]])[0])
    assert [s[0] for s in seen] == list(range(6)) and all(s[1] == 6 for s in seen)
    for i, _, per_head in seen:
        assert per_head[0] is results[0].epochs[i]
        assert (per_head[1] is None) == (i >= bad.diverged_epoch)


def test_autocast_wraps_the_forward_pass_and_keeps_heads_independent():
    x, y, xv, yv = DATA
    sweep = [SWEEP[1], SWEEP[3], SWEEP[6], SWEEP[8]]

    def fit(configs: list[HeadConfig]) -> list[HeadResult]:
        return fit_heads(x, y, configs, num_classes=CLASSES, epochs=3, batch_size=20,
                         order_rng=np.random.default_rng(7), val=(xv, yv),
                         autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16))

    batched = fit(sweep)
    for config, result in zip(sweep, batched):
        solo = fit([config])[0]
        assert max_weight_diff(result.head, solo.head) <= TOL
        assert [e.train_loss for e in result.epochs] == pytest.approx([e.train_loss for e in solo.epochs], abs=TOL)
        assert all(p.dtype == torch.float32 for p in result.head.parameters())
    assert max_weight_diff(batched[0].head, run([sweep[0]], epochs=3)[0].head) > 1e-4  # bf16 did run


@pytest.mark.parametrize("hidden,dropout", [((16,), 0.3), ((8, 6), 0.0), ((), 0.0), ((), 0.5)])
def test_returned_head_has_make_heads_layout(hidden, dropout):
    (result,) = run([HeadConfig(hidden, dropout, "adam", 1e-3)], epochs=1)
    reference = make_head(D, CLASSES, hidden, dropout)
    assert [type(m) for m in result.head] == [type(m) for m in reference]
    assert sum(p.numel() for p in result.head.parameters()) == sum(p.numel() for p in reference.parameters())
    assert [p.shape for p in result.head.parameters()] == [p.shape for p in reference.parameters()]
    assert all(p.requires_grad for p in result.head.parameters())


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="optimizer"):
        HeadConfig((16,), 0.0, "adagrad", 1e-3)
    with pytest.raises(ValueError, match="dropout"):
        HeadConfig((16,), 1.0, "adam", 1e-3)
    assert run([]) == []
