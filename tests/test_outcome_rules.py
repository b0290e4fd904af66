"""What a strategy returns is checked when it returns: a broken Outcome is an error row, never "ok"."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import TINY_SUITE, run_inprocess, write_suite
from zoo_bench import EpochStats, Outcome, SuiteError
from zoo_bench.outcome_rules import outcome_problems
from zoo_bench.plugins import load_plugins
from zoo_bench.results import fields
from zoo_bench.plan.suite import parse_suite
from zoo_bench.testing import check_plugin

GOOD = dict(test_pred=np.array([0, 1, 1]), val_pred=np.array([1, 0]))


@pytest.mark.parametrize("outcome, expected", [
    ({"test_pred": [0, 1, 1]}, "run() returned a dict, expected a zoo_bench.Outcome"),
    (Outcome(test_pred=np.array([0, 7, 1])), "test_pred has class 7 (1 of 3 predictions), but the data set has classes 0..1"),
    (Outcome(test_pred=np.array([-1, 0, 1])), "test_pred has class -1 (1 of 3 predictions)"),
    (Outcome(test_pred=np.array([0.0, 1.0, 1.0])), "test_pred is float64 of shape (3,), expected integer classes of shape (3,)"),
    (Outcome(test_pred=np.array([0, 1])), "test_pred is int64 of shape (2,), expected integer classes of shape (3,)"),
    (Outcome(**GOOD, test_scores=np.zeros((3, 3))), "test_scores is float64 of shape (3, 3), expected floats of shape (3, 2)"),
    (Outcome(**GOOD, test_scores=np.full((3, 2), np.nan)), "test_scores has NaN"),
    (Outcome(test_pred=np.array([0, 1, 1]), val_pred=np.array([0, 1, 1])), "val_pred is int64 of shape (3,)"),
    (Outcome(**GOOD, trainable_params=10, total_params=5), "trainable_params (10) is more than total_params (5)"),
    (Outcome(**GOOD, epochs=[{"loss": 1.0}]), "epochs is a list, expected a list of zoo_bench.EpochStats"),
    (Outcome(**GOOD, train_time_s=-1.0), "train_time_s is -1.0, expected None or seconds >= 0"),
])
def test_each_broken_rule_is_one_line(outcome, expected):
    problems = outcome_problems(outcome, n_test=3, n_val=2, classes=2)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_a_kept_contract_has_no_problem_and_minus_infinity_scores_are_allowed():
    with np.errstate(divide="ignore"):
        scores = np.log(np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]))  # knn's log vote shares: -inf for none
    outcome = Outcome(**GOOD, test_scores=scores, epochs=[EpochStats("features", 0.1, 3, 0.5)],
                      trainable_params=3, total_params=5, train_time_s=0.5)
    assert outcome_problems(outcome, 3, 2, 2, needs_val=True) == []


def test_validation_predictions_are_required_only_when_the_suite_tunes_on_them():
    outcome = Outcome(test_pred=np.array([0, 1, 1]))
    assert outcome_problems(outcome, 3, 2, 2) == []
    assert outcome_problems(outcome, 3, 2, 2, needs_val=True) == [
        "val_pred is None, but the suite tunes this strategy on the validation images ([select]): it must predict them"]
    assert outcome_problems(outcome, 3, 0, 2, needs_val=True) == []  # a refit holds no validation image


@pytest.fixture()
def broken_registry():
    import broken_strategies
    import tiny_backbone

    return load_plugins(extra=[tiny_backbone, broken_strategies])


def test_broken_outcomes_are_error_rows_naming_the_strategy_and_its_plugin(tmp_path, broken_registry, cache_dir):
    suite = write_suite(tmp_path, TINY_SUITE + """
[select]
tune = ["lr"]
[strategies.class_seven]
[strategies.dict_outcome]
[strategies.no_validation]
lr = [0.1, 0.2]
[strategies.constant]
""")
    store, _ = run_inprocess(suite, broken_registry, tmp_path, cache_dir)
    rows = {}
    for r in store.rows():
        rows.setdefault(r["strategy"], r)
    plugin = "plugin 'broken_strategies' (in-process)"
    assert all(set(r) == set(fields.NAMES) for r in store.rows())  # error rows carry every field too
    assert rows["constant"]["status"] == "ok"
    assert rows["class_seven"]["status"] == "error" and rows["class_seven"]["error"] == (
        f"strategy 'class_seven' from {plugin} broke the Outcome contract: test_pred has class 7 (16 of 16 "
        "predictions), but the data set has classes 0..1")
    assert rows["dict_outcome"]["error"] == (
        f"strategy 'dict_outcome' from {plugin} broke the Outcome contract: run() returned a dict, expected a "
        "zoo_bench.Outcome")
    assert rows["no_validation"]["status"] == "error"
    assert rows["no_validation"]["error"].endswith("val_pred is None, but the suite tunes this strategy on the "
                                                   "validation images ([select]): it must predict them")


def test_validate_refuses_to_tune_a_strategy_that_declares_no_validation_predictions(tmp_path, broken_registry):
    body = TINY_SUITE + "[select]\ntune = [\"lr\"]\n[strategies.declared_no_validation]\nlr = [0.1, 0.2]\n"
    with pytest.raises(SuiteError) as err:
        parse_suite(write_suite(tmp_path, body), broken_registry)
    assert "strategies.declared_no_validation: is tuned by [select] (lr), but it gives no validation predictions" \
        in str(err.value)
    parse_suite(write_suite(tmp_path, body.replace("[0.1, 0.2]", "0.1")), broken_registry)  # one value: nothing to tune


def test_check_plugin_reports_a_dict_outcome_and_still_checks_the_other_strategies():
    import broken_strategies

    report = check_plugin(broken_strategies, raise_on_failure=False)
    assert "strategy 'constant'" in report.checked and "strategy 'declared_no_validation'" in report.checked
    assert "strategy 'dict_outcome': run() returned a dict, expected a zoo_bench.Outcome" in report.failures
    assert any(f.startswith("strategy 'class_seven': test_pred has class 7") for f in report.failures)
    assert any(f.startswith("strategy 'no_validation': val_pred is None") for f in report.failures)
    assert not any(f.startswith(("strategy 'constant'", "strategy 'declared_no_validation'")) for f in report.failures)


def test_what_plugins_use_is_exported_and_every_outcome_field_is_documented():
    import dataclasses

    import zoo_bench

    for name in ("Outcome", "Strategy", "Param", "Batch", "Listing", "TrialContext", "BackboneSpec", "DatasetSource"):
        assert name in zoo_bench.__all__ and hasattr(zoo_bench, name), name
    doc = zoo_bench.Outcome.__doc__
    for f in dataclasses.fields(zoo_bench.Outcome):
        assert f"\n        {f.name}:" in doc or f" {f.name}," in doc or f", {f.name}:" in doc, f.name
