"""One exception tree for zoo-bench, so callers catch what they mean.

    ZooBenchError                  base; its message is one line, shown without a traceback
    ├── SuiteError                 a suite file is invalid (file, key, allowed values); exit 2
    ├── PluginError                a plugin failed to load or clashes with another
    ├── DataError                  a data set is missing or unreadable
    ├── WeightsUnavailableError    pretrained weights are missing (file name and folder)
    ├── BackendUnavailableError    a backend's framework is not installed (install command)
    ├── UsageError                 bad command-line use; exit 2
    ├── DivergedError              a trial's loss became NaN or infinite (its status is "diverged")
    └── TrialCrashedError          an isolated trial's process died (segfault, abort, os._exit)
"""
from __future__ import annotations


class ZooBenchError(Exception):
    """Base of every error zoo-bench raises on purpose; the message is for the user."""


class SuiteError(ZooBenchError):
    """A suite file is invalid. Carries one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class PluginError(ZooBenchError):
    """A plugin could not be loaded, or two plugins register the same name."""


class DataError(ZooBenchError):
    """A data set is missing, empty or laid out wrongly."""


class WeightsUnavailableError(ZooBenchError):
    """Pretrained weights are not on disk and could not be downloaded."""


class BackendUnavailableError(ZooBenchError):
    """The framework a backend needs is not installed."""


class UsageError(ZooBenchError):
    """The command line asks for something that cannot be done."""


class DivergedError(ZooBenchError):
    """Training produced a NaN or infinite loss; the trial ends early with status "diverged"."""

    def __init__(self, epoch: int, loss: float):
        self.epoch, self.loss = epoch, loss
        super().__init__(f"loss became {loss} in epoch {epoch}")


class TrialCrashedError(ZooBenchError):
    """The child process running an isolated trial died without reporting a result."""


def one_line(exc: BaseException, always_type: bool = False) -> str:
    """An exception as one line: a zoo-bench error's own message (it is written for the user), any other
    exception's type and first line. ``always_type`` names the type of zoo-bench errors too (a plugin's)."""
    message = str(exc).strip()
    first = message.splitlines()[0] if message else ""
    if isinstance(exc, ZooBenchError) and not always_type:
        return first or type(exc).__name__
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
