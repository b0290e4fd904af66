"""When a change in epoch time is a regression and not noise.

Millisecond timings on a shared machine move by tens of percent between identical runs, so a relative
limit alone fires on unchanged code. A configuration's mean epoch time regresses only when the change
passes all three of: the gate's relative limit; ``spread_multiple`` times the spread of the baseline's
own epoch timings (a robust standard deviation: 1.4826 x the median absolute deviation of every timed
epoch of its seeds); and an absolute floor. A configuration whose epochs are under the floor, or that
has no epochs to time (a one-shot fit such as ``svm``), is reported and not gated, with the reason.
The same floor decides which trials ``pytest --zoo-suite`` reports as benchmarks.
"""
from __future__ import annotations

from dataclasses import dataclass
from statistics import median
from typing import Any, Iterable

from ..errors import UsageError

FLOOR_MS = 5.0
SPREAD_MULTIPLE = 3.0
MIN_TIMINGS = 3  # fewer timed epochs than this carry no spread


@dataclass(frozen=True)
class TimingRule:
    """The two settings of ``[compare]`` besides the gates: ``timing_floor_ms`` and ``timing_spread_multiple``."""

    floor_ms: float = FLOOR_MS
    spread_multiple: float = SPREAD_MULTIPLE

    @classmethod
    def from_suite(cls, suite: dict[str, Any] | None, floor_ms: float | None = None) -> "TimingRule":
        """The suite's settings (a run's or baseline's stored suite), ``floor_ms`` overriding its floor."""
        table = (suite or {}).get("compare") or {}
        rule = cls(float(table.get("timing_floor_ms", FLOOR_MS)), float(table.get("timing_spread_multiple", SPREAD_MULTIPLE)))
        if floor_ms is not None:
            if floor_ms < 0:
                raise UsageError(f"--timing-floor-ms {floor_ms:g}: must be 0 or more")
            rule = cls(floor_ms, rule.spread_multiple)
        return rule


def epoch_timings(row: dict[str, Any]) -> list[float]:
    """The timed epochs of a trial: those ``epoch_time_s`` is the median of, the first left out."""
    seconds = [s for s in row.get("epoch_seconds") or [] if isinstance(s, (int, float))]
    return seconds[1:] if len(seconds) > 1 else seconds


def robust_spread(values: Iterable[float]) -> float | None:
    """1.4826 x the median absolute deviation: a standard deviation that one slow epoch does not inflate."""
    values = list(values)
    if len(values) < MIN_TIMINGS:
        return None
    middle = median(values)
    return 1.4826 * median(abs(v - middle) for v in values)


def untimed(rows: list[dict[str, Any]], rule: TimingRule) -> str | None:
    """Why these trials' timing is not gated, or None when it is."""
    medians = [r["epoch_time_s"] for r in rows if isinstance(r.get("epoch_time_s"), (int, float))]
    if not medians:
        return "a one-shot fit: no epochs to time"
    typical = median(medians)
    if typical * 1000 < rule.floor_ms:
        return f"epochs of {typical * 1000:.1f} ms are under the {rule.floor_ms:g} ms floor: too short to time reliably"
    return None


@dataclass(frozen=True)
class TimingVerdict:
    failed: bool
    note: str


def judge(baseline_rows: list[dict[str, Any]], current_rows: list[dict[str, Any]], base_mean: float,
          current_mean: float, limit_pct: float, rule: TimingRule) -> TimingVerdict:
    """Whether the mean epoch time regressed past ``limit_pct`` percent, the spread and the floor; the note
    says each rule's number and which one decided."""
    change_s = current_mean - base_mean
    relative = change_s / base_mean * 100 if base_mean else float("inf")
    if change_s <= 0:
        return TimingVerdict(False, f"{relative:+.0f}%, {change_s * 1000:+.1f} ms: not slower")
    spread = robust_spread(t for r in baseline_rows for t in epoch_timings(r))
    whose = "baseline"
    if spread is None:  # a baseline saved before timings were kept: the current run's own spread
        spread, whose = robust_spread(t for r in current_rows for t in epoch_timings(r)), "current"
    checks = [(f"limit +{limit_pct:g}%", "the limit", relative > limit_pct),
              (f"floor {rule.floor_ms:g} ms", "the floor", change_s * 1000 > rule.floor_ms)]
    if spread is not None:
        noise = rule.spread_multiple * spread
        checks.append((f"{rule.spread_multiple:g} x {whose} spread {noise * 1000:.1f} ms", "the spread", change_s > noise))
    failed = all(passed for _, _, passed in checks)
    within = " and ".join(short for _, short, passed in checks if not passed)
    note = (f"{relative:+.0f}%, {change_s * 1000:+.1f} ms against {', '.join(name for name, _, _ in checks)}"
            + ("" if spread is not None else " (no spread recorded)")
            + (": past all" if failed else f": within {within}"))
    return TimingVerdict(failed, note)
