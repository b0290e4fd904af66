"""Test-only strategies that fail the ways real code does: native crashes, out-of-memory errors."""
from __future__ import annotations

import ctypes
import os

from zoo_bench import hookimpl
from zoo_bench_strategies.strategies import Scratch


class Crash(Scratch):
    """``scratch``, unless ``how`` names a way to kill the process first."""

    name = "crash"
    params = {**Scratch.params, "epochs": 1, "how": "none"}

    def run(self, ctx, p):
        if p["how"] == "segfault":
            ctypes.string_at(0)  # reads address 0: SIGSEGV
        elif p["how"] == "abort":
            os.abort()
        elif p["how"] == "exit":
            os._exit(3)
        return super().run(ctx, p)


class OomAbove(Scratch):
    """``scratch`` that raises torch's real CUDA out-of-memory error above ``fits`` images a batch."""

    name = "oom_above"
    params = {**Scratch.params, "epochs": 1, "fits": 4}

    def run(self, ctx, p):
        import torch

        if ctx.batch_size > p["fits"]:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate at batch {ctx.batch_size}")
        return super().run(ctx, p)


@hookimpl
def zoo_bench_register_strategies():
    return [Crash, OomAbove]
