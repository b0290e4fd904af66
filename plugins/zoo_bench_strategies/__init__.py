"""zoo-bench's probes and transfer strategies, registered as a plugin like any third party's.

None imports a framework: each speaks to the Backend API through its TrialContext.
"""
from zoo_bench import hookimpl

from .peft import PEFT_STRATEGIES
from .strategies import ALL_STRATEGIES


@hookimpl
def zoo_bench_register_strategies() -> list[type]:
    return [*ALL_STRATEGIES, *PEFT_STRATEGIES]
