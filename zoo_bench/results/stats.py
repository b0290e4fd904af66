"""Statistics: mean and Student-t interval over seeds, Wilson intervals over test images, paired differences."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

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


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a proportion (scipy's): for one trial's accuracy over its test images."""
    from scipy.stats import binomtest

    if n <= 0:
        return (math.nan, math.nan)
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def format_single(accuracy: float, test_images: int, scale: float = 100.0, unit: str = "%", digits: int = 1) -> str:
    """One training run: ``97.9 [97.2, 98.4]% (1 seed)``, the 95% Wilson interval over its test images."""
    low, high = wilson(round(accuracy * test_images), test_images)
    return f"{accuracy * scale:.{digits}f} [{low * scale:.{digits}f}, {high * scale:.{digits}f}]{unit} (1 seed)"


def format_accuracy(accuracies: Iterable[float], test_images: Iterable[Any]) -> str:
    """A table cell's accuracy: the interval over seeds with several, a Wilson interval over the test
    images with one (when its image count is known)."""
    accs = [float(a) for a in accuracies if a is not None and not (isinstance(a, float) and math.isnan(a))]
    e = estimate(accs)
    images = [i for i in test_images if i is not None and not (isinstance(i, float) and math.isnan(i))]
    if e is not None and e.n == 1 and images and int(images[0]) > 0:
        return format_single(accs[0], int(images[0]))
    return format_estimate(e, scale=100, unit="%")


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: the discordant images, binomial with p = 1/2 (1.0 with none)."""
    from scipy.stats import binomtest

    n = int(a_only) + int(b_only)
    if n == 0:
        return 1.0
    return float(binomtest(min(int(a_only), int(b_only)), n, 0.5).pvalue)


def newcombe_paired(both: int, a_only: int, b_only: int, neither: int,
                    confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Interval of p_A - p_B on paired outcomes: Newcombe's (1998) method 10, built from two Wilson intervals
    and the correlation of the pairs (no continuity correction). Written here because neither scipy nor
    scikit-learn has it."""
    n = both + a_only + b_only + neither
    p1, p2 = (both + a_only) / n, (both + b_only) / n
    l1, u1 = wilson(both + a_only, n, confidence)
    l2, u2 = wilson(both + b_only, n, confidence)
    denom = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    phi = (both * neither - a_only * b_only) / math.sqrt(denom) if denom > 0 else 0.0
    delta = p1 - p2
    dl1, du1, dl2, du2 = p1 - l1, u1 - p1, p2 - l2, u2 - p2
    low = delta - math.sqrt(max(0.0, dl1 ** 2 - 2 * phi * dl1 * du2 + du2 ** 2))
    high = delta + math.sqrt(max(0.0, du1 ** 2 - 2 * phi * du1 * dl2 + dl2 ** 2))
    return max(-1.0, low), min(1.0, high)


@dataclass(frozen=True)
class PairedDifference:
    """Accuracy of A minus accuracy of B on the same test images over the seeds they share, in points.

    ``method``: ``seeds+images`` (a t interval whose variance adds the spread over seeds and the
    sampling of test images, Welch-Satterthwaite degrees of freedom); ``mcnemar`` (one seed: exact
    McNemar p and Newcombe's paired Wilson interval, test images only, one training run);
    ``identical`` (the same prediction correctness on every image and seed: 0, width 0).
    """

    delta: float
    low: float
    high: float
    low90: float
    high90: float
    p: float
    seeds: int
    images: int
    method: str
    df: float | None = None
    a_only: int = 0  # images A got right and B wrong, summed over seeds
    b_only: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def paired_difference(correct_a: Any, correct_b: Any) -> PairedDifference:
    """The paired difference of two configurations from their per-image correctness, seeds x images.

    With S seeds and N images, ``d_s`` the difference of seed s and ``dbar_i`` image i's difference
    averaged over seeds: ``delta = mean(d_s)``, ``SE^2 = var(d_s)/S + var(dbar_i)/N``; the second term
    is test-set sampling, which the spread over seeds cannot see since every seed uses the same images.
    """
    import numpy as np
    from scipy import stats as st

    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"correctness arrays must be seeds x images of one shape, got {a.shape} and {b.shape}")
    s, n = a.shape
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    if a_only == 0 and b_only == 0:
        return PairedDifference(0.0, 0.0, 0.0, 0.0, 0.0, 1.0, s, n, "identical")
    d = a.astype(np.float64) - b.astype(np.float64)
    if s == 1:
        both, neither = int((a & b).sum()), int((~a & ~b).sum())
        low, high = newcombe_paired(both, a_only, b_only, neither, CONFIDENCE)
        low90, high90 = newcombe_paired(both, a_only, b_only, neither, 0.90)
        return PairedDifference(100 * float(d.mean()), 100 * low, 100 * high, 100 * low90, 100 * high90,
                                mcnemar_exact(a_only, b_only), 1, n, "mcnemar", None, a_only, b_only)
    d_s = d.mean(axis=1)
    dbar = d.mean(axis=0)
    delta = float(d_s.mean())
    v_seeds = float(d_s.var(ddof=1)) / s
    v_images = float(dbar.var(ddof=1)) / n
    se2 = v_seeds + v_images
    if se2 <= 0.0:  # every image differs the same way in every seed: no spread to put an interval on
        return PairedDifference(100 * delta, 100 * delta, 100 * delta, 100 * delta, 100 * delta, 0.0, s, n,
                                "seeds+images", None, a_only, b_only)
    df = se2 ** 2 / (v_seeds ** 2 / (s - 1) + v_images ** 2 / (n - 1))
    se = math.sqrt(se2)
    t95, t90 = float(st.t.ppf(0.975, df)), float(st.t.ppf(0.95, df))
    p = float(2 * st.t.sf(abs(delta) / se, df))
    return PairedDifference(100 * delta, 100 * (delta - t95 * se), 100 * (delta + t95 * se),
                            100 * (delta - t90 * se), 100 * (delta + t90 * se), p, s, n, "seeds+images", df,
                            a_only, b_only)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (a few lines; no dependency carries it here)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted
