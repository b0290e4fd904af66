"""Statistics over seeds: mean and a Student-t confidence interval, honest about a single seed."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from scipy import stats as _st

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """Mean of n values and the half-width of its confidence interval (None when n < 2)."""

    mean: float
    half_width: float | None
    n: int

    @property
    def low(self) -> float:
        return self.mean - (self.half_width or 0.0)

    @property
    def high(self) -> float:
        return self.mean + (self.half_width or 0.0)

    def overlaps(self, other: "Estimate") -> bool:
        """Whether the two intervals overlap (a point estimate is an interval of width 0)."""
        return self.low <= other.high and other.low <= self.high


def estimate(values: Iterable[float], confidence: float = CONFIDENCE) -> Estimate | None:
    """Mean and Student-t interval of the finite values; None when there are none."""
    xs = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not xs:
        return None
    n = len(xs)
    mean = sum(xs) / n
    if n < 2:
        return Estimate(mean, None, 1)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = float(_st.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)
    return Estimate(mean, half, n)


def format_estimate(e: Estimate | None, scale: float = 1.0, unit: str = "", digits: int = 1) -> str:
    """``97.9 ±0.5% (n=3)``, or ``97.9% (1 seed, no CI)``."""
    if e is None:
        return "-"
    mean = f"{e.mean * scale:.{digits}f}"
    if e.half_width is None:
        return f"{mean}{unit} (1 seed, no CI)"
    return f"{mean} ±{e.half_width * scale:.{digits}f}{unit} (n={e.n})"
