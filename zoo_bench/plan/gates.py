"""A regression gate (``accuracy:-1pt``, ``epoch_time:+25%@*/svm*``): what ``compare`` fails on.

Its own module so that the suite parser can check ``[compare] fail`` without importing ``compare``.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from ..errors import UsageError

METRICS = {"accuracy": ("test_accuracy", "pt"), "epoch_time": ("epoch_time_s", "%")}  # metric -> (row column, unit)
DEFAULT_GATES = ["accuracy:-1pt"]


@dataclass(frozen=True)
class Gate:
    """``accuracy:-1pt``: fail when accuracy drops by more than 1 point; ``epoch_time:+25%``.

    ``accuracy:-3pt@*/full*`` applies only to the configurations (trial ids without the seed) that the
    shell pattern matches, so one comparison can hold cheap, stable strategies to a tighter limit than
    noisier ones, and leave others ungated (reported as ``info``).
    """

    metric: str
    limit: float
    unit: str
    pattern: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Gate":
        m = re.fullmatch(r"(\w+):([+-]?\d+(?:\.\d+)?)(pt|%)(?:@(\S+))?", text.strip())
        if not m or m.group(1) not in METRICS:
            raise UsageError(f"--fail {text!r}: expected METRIC:LIMIT[@PATTERN] with METRIC in "
                             f"{', '.join(METRICS)}, LIMIT like -1pt or +25% and PATTERN a shell pattern on "
                             "trial ids such as '*/svm*'")
        metric, limit, unit, pattern = m.group(1), float(m.group(2)), m.group(3), m.group(4)
        if metric == "accuracy" and unit != "pt":
            raise UsageError(f"--fail {text!r}: accuracy limits are in points, like accuracy:-1pt")
        return cls(metric, limit, unit, pattern)

    def applies(self, metric: str, config: str) -> bool:
        """Whether this gate judges ``metric`` of the configuration ``config``."""
        return self.metric == metric and (self.pattern is None or fnmatch.fnmatchcase(config, self.pattern))
