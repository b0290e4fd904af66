"""The Backend seam: optional verbs are declared (``supports``), never guessed from a NotImplementedError."""
import numpy as np
import pytest

from zoo_bench import Backend, ZooBenchError
from zoo_bench.backend import OPTIONAL_VERBS
from zoo_bench_torch.backend import TorchBackend


def test_each_backend_says_which_optional_verbs_it_has():
    torch_backend = TorchBackend(device="cpu")
    assert {v for v in OPTIONAL_VERBS if torch_backend.supports(v)} == set(OPTIONAL_VERBS)
    with pytest.raises(ValueError, match="'fit' is not an optional Backend verb"):
        torch_backend.supports("fit")


def test_keras_lacks_what_it_does_not_implement():
    pytest.importorskip("keras")
    from zoo_bench_keras.backend import KerasBackend

    keras_backend = KerasBackend(device="cpu")
    assert not keras_backend.supports("fit_heads") and not keras_backend.supports("cut")
    assert keras_backend.supports("logits") and keras_backend.supports("save_weights")


class NoLogits(TorchBackend):
    name = "no_logits"
    logits = Backend.logits  # the verb left out, as a third-party backend might

    def predict(self, model, x, batch_size):  # torch's own predict goes through its logits
        return TorchBackend.logits(self, model, x, batch_size).argmax(axis=1).astype(np.int64)


class BrokenLogits(TorchBackend):
    name = "broken_logits"

    def logits(self, model, x, batch_size):
        raise NotImplementedError("an operator deep inside the framework")


def head_and_data(backend):
    from zoo_bench import HeadSpec

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 4)).astype(np.float32), np.arange(12) % 2
    return backend.new_head(4, 2, HeadSpec((), 0.0)), (x, y)


def test_a_backend_without_logits_evaluates_by_predictions_and_says_so_when_asked():
    backend = NoLogits(device="cpu")
    assert not backend.supports("logits")
    head, val = head_and_data(backend)
    accuracy, loss = backend.evaluate(head, val, 4)
    assert 0.0 <= accuracy <= 1.0 and loss is None
    with pytest.raises(ZooBenchError, match=r"backend 'no_logits' does not implement logits\(\)"):
        backend.logits(head, val[0], 4)


def test_a_not_implemented_error_inside_a_verb_is_an_error_not_a_missing_verb():
    backend = BrokenLogits(device="cpu")
    assert backend.supports("logits")
    head, val = head_and_data(backend)
    with pytest.raises(NotImplementedError, match="deep inside"):
        backend.evaluate(head, val, 4)


def test_a_trial_context_is_its_inputs_and_what_the_trial_measures_is_apart():
    import dataclasses

    from zoo_bench import TrialContext
    from zoo_bench.context import TrialMeasures

    assert TrialContext.__dataclass_params__.frozen  # a strategy cannot change what its trial was given
    given = {f.name for f in dataclasses.fields(TrialContext)}
    measured = {f.name for f in dataclasses.fields(TrialMeasures)}
    assert "measured" in given and not (given & measured)
    assert measured == {"feature_time_s", "cut_time_s", "cut_used", "sweep_heads", "random_base"}
