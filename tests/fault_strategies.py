"""Test-only strategies that fail the ways real code does: native crashes, out-of-memory errors."""
from __future__ import annotations

import ctypes
import os
import time

import numpy as np

from zoo_bench import Outcome, Strategy, hookimpl
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


class Sleep(Strategy):
    """Sleeps ``seconds`` and predicts class 0: a trial that costs time and no compute (scaling checks)."""

    name = "sleep"
    params = {"seconds": 1.0}
    pretrained = False

    def run(self, ctx, p):
        time.sleep(p["seconds"])
        return Outcome(test_pred=np.zeros(len(ctx.test.labels), np.int64), train_time_s=p["seconds"])


@hookimpl
def zoo_bench_register_strategies():
    return [Crash, OomAbove, Sleep]
