"""Learning-rate schedules, layer-wise rates and the fine-tuning dropout, in both backends."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import TINY_SUITE, lite0_suite, run_inprocess, write_suite
from zoo_bench import HeadSpec, OptimizerSpec, ZooBenchError
from zoo_bench.schedules import Schedule


def test_factors():
    assert [Schedule("constant").factor(e, 5) for e in range(5)] == [1.0] * 5
    assert [Schedule("step", step_epochs=2, gamma=0.5).factor(e, 6) for e in range(6)] == [1, 1, .5, .5, .25, .25]
    cosine = [Schedule("cosine").factor(e, 4) for e in range(4)]
    assert cosine == pytest.approx([1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))])
    warm = [Schedule("cosine", warmup_epochs=2).factor(e, 6) for e in range(6)]
    assert warm[:3] == pytest.approx([1 / 3, 2 / 3, 1.0]) and warm[-1] > 0
    assert Schedule("step", warmup_epochs=1, step_epochs=3, gamma=0.2).describe() == "step 3 x0.2, warm-up 1"
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        Schedule("linear")


@pytest.mark.parametrize("backend_name", ["torch", "keras"])
@pytest.mark.parametrize("schedule", [Schedule("cosine", warmup_epochs=1), Schedule("step", step_epochs=2, gamma=0.5)])
def test_each_epoch_trains_at_the_scheduled_rate(backend_name, schedule, registry):
    if backend_name == "keras":
        pytest.importorskip("keras")
    backend = registry.backends[backend_name](device="cpu", precision="fp32")
    backend.seed(0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(24, 8)).astype(np.float32), np.arange(24) % 2
    head = backend.new_head(8, 2, HeadSpec((4,), 0.0))
    spec = OptimizerSpec("sgd", 0.1, momentum=0.0, schedule=schedule)
    stats = backend.fit(head, x, y, epochs=5, optimizer=spec, batch_size=8)
    assert [s.lr for s in stats] == pytest.approx([0.1 * schedule.factor(e, 5) for e in range(5)], rel=1e-6)


def test_torch_layer_decay_gives_each_block_its_rate(registry):
    backend = registry.backends["torch"](device="cpu", precision="fp32")
    base = backend.build_base(registry.backbone("torch", "vgg16"), pretrained=False, image_size=32)
    model = backend.attach(base, backend.new_head(512, 2, HeadSpec((8,), 0.0)))
    backend.set_trainable(model, 2, bn_inference=True)  # block4, block5 and the head
    groups = backend.param_groups(model, OptimizerSpec("sgd", 1.0, layer_decay=0.5))
    rates = sorted(((g["lr"], sum(p.numel() for p in g["params"])) for g in groups), reverse=True)
    head = 512 * 8 + 8 + 8 * 2 + 2
    block5, block4 = 3 * 2_359_808, 1_180_160 + 2 * 2_359_808
    assert rates == [(1.0, head), (0.5, block5), (0.25, block4)]
    flat = backend.param_groups(model, OptimizerSpec("sgd", 1.0))
    assert len(flat) == 1 and sum(p.numel() for p in flat[0]["params"]) == head + block5 + block4


def test_keras_refuses_layer_decay_in_one_line(registry):
    pytest.importorskip("keras")
    backend = registry.backends["keras"](device="cpu", precision="fp32")
    head = backend.new_head(8, 2, HeadSpec((4,), 0.0))
    x, y = np.zeros((4, 8), np.float32), np.array([0, 1, 0, 1])
    with pytest.raises(ZooBenchError, match="layer_decay: the keras backend has one learning rate per phase"):
        backend.fit(head, x, y, epochs=1, optimizer=OptimizerSpec("sgd", 0.1, layer_decay=0.5), batch_size=4)


@pytest.mark.parametrize("backend_name", ["torch", "keras"])
def test_set_dropout_changes_every_dropout_of_the_head(backend_name, registry):
    if backend_name == "keras":
        pytest.importorskip("keras")
    backend = registry.backends[backend_name](device="cpu", precision="fp32")
    head = backend.new_head(8, 2, HeadSpec((4, 4), 0.2))
    assert backend.set_dropout(head, 0.6) == 2
    x = np.ones((64, 8), np.float32)
    if backend_name == "torch":
        import torch

        head.train()
        hidden = head[:3](torch.from_numpy(x))  # Linear, ReLU, Dropout
        rates = [m.p for m in head.modules() if isinstance(m, torch.nn.Dropout)]
    else:
        rates = [layer.rate for layer in head.layers if type(layer).__name__ == "Dropout"]
        hidden = None
    assert rates == [0.6, 0.6]
    if hidden is not None:
        dropped = float((hidden == 0).float().mean())
        assert 0.45 < dropped < 0.75
    with pytest.raises(ZooBenchError, match="finetune_dropout: the head has no dropout layer"):
        backend.set_dropout(backend.new_head(8, 2, HeadSpec((), 0.0)), 0.5)


@pytest.mark.parametrize("backend_name", ["torch", "keras"])
def test_two_phase_keys_reach_their_phase(tmp_path, registry, tiny_weights, backend_name):
    """fpt with a warmed-up cosine fine-tuning phase, a stepped head phase and a raised dropout."""
    if backend_name == "keras":
        pytest.importorskip("keras")
    strategies = (
        '[strategies.fpt]\nhead_epochs = 3\nfinetune_epochs = 3\nhead_lr = 0.01\nfinetune_lr = 0.001\n'
        'head_schedule = "step"\nhead_step_epochs = 1\nhead_step_gamma = 0.5\n'
        'finetune_schedule = "cosine"\nfinetune_warmup_epochs = 1\nfinetune_dropout = 0.7\n')
    body = TINY_SUITE + strategies if backend_name == "torch" else lite0_suite("sched", strategies, "keras")
    store, _ = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, tmp_path / "cache")
    [row] = store.rows()
    assert row["status"] == "ok", row["error"]
    assert "finetune_schedule=cosine" in row["trial_id"] and "finetune_dropout=0.7" in row["trial_id"]
    history = json.loads(row["history"]) if isinstance(row["history"], str) else row["history"]
    lrs = [h["lr"] for h in history]
    cos = Schedule("cosine", warmup_epochs=1)
    assert lrs == pytest.approx([0.01, 0.005, 0.0025] + [0.001 * cos.factor(e, 3) for e in range(3)], rel=1e-5)


def test_bad_schedule_keys_are_refused_in_one_line(tmp_path, registry):
    from zoo_bench.errors import SuiteError
    from zoo_bench.plan.suite import parse_suite

    body = TINY_SUITE + '[strategies.full]\nschedule = "linear"\n'
    with pytest.raises(SuiteError, match="strategies.full.schedule: 'linear' is not allowed "
                                         r"\(allowed: one of constant, step, cosine\)"):
        parse_suite(write_suite(tmp_path, body), registry)


def test_head_sweeps_follow_each_heads_schedule(tmp_path, registry, tiny_weights):
    """last_layer heads train together on cached features (torch), each at its own scheduled rate."""
    body = TINY_SUITE + ('[strategies.last_layer]\nepochs = 3\nlr = 0.01\nschedule = ["constant", "step"]\n'
                         'step_epochs = 1\nstep_gamma = 0.5\n')
    store, _ = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, tmp_path / "cache")
    rows = {("step" if "schedule=step" in r["trial_id"] else "constant"): r for r in store.rows()}
    assert all(r["status"] == "ok" for r in rows.values())
    assert rows["step"]["sweep_heads"] == 2
    lrs = {k: [h["lr"] for h in r["history"]] for k, r in rows.items()}
    assert lrs == {"constant": pytest.approx([0.01] * 3), "step": pytest.approx([0.01, 0.005, 0.0025])}
