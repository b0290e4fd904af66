"""What a trained model costs to run (zoo_bench.run.inference_cost): multiply-adds against a hand count, LoRA
measured merged, sizes from the saved weights, and the suite switch."""
from __future__ import annotations

from zoo_bench import Adapter, HeadSpec
from zoo_bench.run import inference_cost
from zoo_bench.testing import CONTRACT_SPEC
from zoo_bench_torch.backend import TorchBackend

from conftest import lite0_suite, run_inprocess, write_suite

# The contract CNN at 32 px: per block a 3 x 3 conv, a pointwise conv, a 2 x 2 max pool; a linear head 16 -> 2.
HAND_MACS = (32 * 32 * 8 * 3 * 9 + 32 * 32 * 8 * 8) + (16 * 16 * 16 * 8 * 9 + 16 * 16 * 16 * 16) + \
    (8 * 8 * 16 * 16 * 9 + 8 * 8 * 16 * 16) + 16 * 2


def classifier(backend, adapter=None):
    base = backend.build_base(CONTRACT_SPEC, True, 32)
    model = backend.attach(base, backend.new_head(16, 2, HeadSpec((), 0.0)))
    if adapter:
        backend.adapt(model, adapter)
    return model


def test_multiply_adds_are_the_hand_count_and_a_lora_model_is_measured_merged():
    backend = TorchBackend(device="cpu", precision="fp32")
    plain = inference_cost.measure(backend, classifier(backend), 32, 4)
    assert plain.multiply_adds == HAND_MACS
    assert plain.latency_ms > 0 and plain.throughput_ips > 0
    assert abs(plain.model_mb - 4402 * 4 / 1e6) < 0.01  # 4,402 weights and the BatchNorm statistics, fp32
    lora = inference_cost.measure(backend, classifier(backend, Adapter("lora", rank=2)), 32, 4)
    assert lora.multiply_adds == HAND_MACS and lora.model_mb == plain.model_mb  # merged: the plain network
    assert plain.fields(160)["delta_mb"] == 160 * 4 / 1e6


def test_rows_carry_the_cost_once_measured_per_architecture_and_the_switch_turns_it_off(tmp_path, registry):
    strategies = "[strategies.svm]\n[strategies.last_layer]\nepochs = 1\n[strategies.bitfit]\nepochs = 1\n"
    store, _ = run_inprocess(write_suite(tmp_path, lite0_suite("cost", strategies)), registry, tmp_path,
                             tmp_path / "cache")
    rows = {r["strategy"]: r for r in store.rows()}
    assert all(r["status"] == "ok" for r in rows.values())
    # last_layer and bitfit deploy the same network (Lite0, a head of 256): one measurement, shared
    assert rows["last_layer"]["latency_ms"] == rows["bitfit"]["latency_ms"] > 0
    assert rows["last_layer"]["multiply_adds"] > rows["svm"]["multiply_adds"] > 0  # the hidden layer's
    assert rows["bitfit"]["delta_mb"] == rows["bitfit"]["trainable_params"] * 4 / 1e6 < rows["bitfit"]["model_mb"]
    off = write_suite(tmp_path, lite0_suite("cost_off", strategies).replace("batch_size = 8", "batch_size = 8\n"
                                                                           "inference_cost = false"), "off.toml")
    store, _ = run_inprocess(off, registry, tmp_path, tmp_path / "cache")
    assert all(r[f] is None for r in store.rows() for f in inference_cost.FIELDS)
