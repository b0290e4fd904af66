"""Timing gates that do not cry wolf: a change fails only past the relative limit, the floor and the
baseline's own spread; trials too short or without epochs are reported and not gated."""
from zoo_bench.plan.gates import Gate
from zoo_bench.results.compare import Side, compare
from zoo_bench.results.timing import TimingRule, epoch_timings, judge, robust_spread, untimed


def rows(name: str, epochs_by_seed: list[list[float]], accuracy: float = 0.9) -> list[dict]:
    out = []
    for seed, seconds in enumerate(epochs_by_seed):
        timed = seconds[1:]
        out.append({"trial_id": f"torch/m/{name}/n=8/seed={seed}", "backend": "torch", "backbone": "m", "strategy": name,
                    "params": None, "size_per_class": 8, "seed": seed, "status": "ok", "test_accuracy": accuracy,
                    "epoch_seconds": seconds or None,
                    "epoch_time_s": sorted(timed)[len(timed) // 2] if timed else None,
                    "train_time_s": sum(seconds) if seconds else 0.01})
    return out


def side(*groups: list[dict]) -> Side:
    return Side("s", [r for g in groups for r in g], {"devices": {"torch": "cpu"}, "cpu_count": 2}, {})


STEADY = [[0.3, 0.100, 0.101, 0.099]] * 3  # spread about 1.5 ms
NOISY = [[0.3, 0.07, 0.13, 0.10], [0.3, 0.08, 0.12, 0.10], [0.3, 0.06, 0.14, 0.10]]  # spread about 30 ms


def test_the_spread_ignores_the_first_epoch_and_one_slow_epoch():
    assert epoch_timings({"epoch_seconds": [9.0, 1.0, 2.0]}) == [1.0, 2.0]
    assert robust_spread([1.0, 1.0, 1.0, 50.0]) == 0.0
    assert robust_spread([1.0, 2.0]) is None  # too few to carry a spread


def test_a_slowdown_past_the_limit_the_floor_and_the_spread_fails_and_the_note_says_why():
    slower = [[0.3, 0.130, 0.131, 0.129]] * 3  # +30%, +30 ms
    result = compare(side(rows("steady", STEADY)), side(rows("steady", slower)), [Gate.parse("epoch_time:+25%")])
    [line] = [line for line in result.lines if line.metric == "epoch_time"]
    assert line.status == "fail" and result.exit_code == 1
    assert line.note.startswith("+30%, +30.0 ms against limit +25%, floor 5 ms, 3 x baseline spread ") and \
        line.note.endswith(": past all"), line.note


def test_the_same_change_within_the_baselines_own_spread_passes():
    slower = [[0.3, 0.091, 0.169, 0.13], [0.3, 0.104, 0.156, 0.13], [0.3, 0.078, 0.182, 0.13]]  # +30%, noisy
    result = compare(side(rows("noisy", NOISY)), side(rows("noisy", slower)), [Gate.parse("epoch_time:+25%")])
    [line] = [line for line in result.lines if line.metric == "epoch_time"]
    assert line.status == "pass" and result.exit_code == 0
    assert line.note.endswith("3 x baseline spread 89.0 ms: within the spread"), line.note


def test_a_change_under_the_floor_passes_and_a_suite_can_move_the_floor():
    base = [[0.01, 0.004, 0.004, 0.004]] * 3  # 4 ms epochs: under the 5 ms floor, not gated at all
    slower = [[0.01, 0.008, 0.008, 0.008]] * 3  # doubled
    gate = [Gate.parse("epoch_time:+25%")]
    [line] = [line for line in compare(side(rows("head", base)), side(rows("head", slower)), gate).lines
              if line.metric == "epoch_time"]
    assert line.status == "skipped" and line.note == \
        "not gated: epochs of 4.0 ms are under the 5 ms floor: too short to time reliably"
    low_floor = TimingRule(floor_ms=1.0)
    [line] = [line for line in compare(side(rows("head", base)), side(rows("head", slower)), gate, timing=low_floor).lines
              if line.metric == "epoch_time"]
    assert line.status == "fail" and "floor 1 ms" in line.note
    assert TimingRule.from_suite({"compare": {"timing_floor_ms": 2, "timing_spread_multiple": 4}}) == TimingRule(2.0, 4.0)


def test_a_one_shot_fit_is_reported_and_not_gated():
    result = compare(side(rows("svm", [[]] * 3)), side(rows("svm", [[]] * 3)), [Gate.parse("epoch_time:+25%")])
    [line] = [line for line in result.lines if line.metric == "epoch_time"]
    assert (line.status, line.note) == ("skipped", "not gated: a one-shot fit: no epochs to time")


def test_a_baseline_saved_before_epochs_were_kept_uses_the_current_runs_spread():
    old = [dict(r, epoch_seconds=None) for r in rows("steady", STEADY)]
    slower = rows("steady", [[0.3, 0.130, 0.131, 0.129]] * 3)
    verdict = judge(old, slower, 0.100, 0.130, 25, TimingRule())
    assert verdict.failed and "3 x current spread" in verdict.note
    neither = judge(old, [dict(r, epoch_seconds=None) for r in slower], 0.100, 0.130, 25, TimingRule())
    assert neither.failed and "(no spread recorded)" in neither.note
    assert untimed(old, TimingRule()) is None
