"""Executors: where the trials of a run execute. The driver (``zoo_bench.run.runner``) submits units and
records the results they give back, in whatever order they finish; only the driver writes the run folder.

* :class:`InProcessExecutor` (``base``): every trial in the driver's own process, one after another.
* :class:`PoolExecutor` (``pool``): worker processes on this machine, one per GPU or a share of the cores.
* :class:`RayExecutor` (``ray_cluster``): Ray tasks on a local Ray instance or a cluster (``[ray]`` extra).

What a worker does with a unit, wherever it runs, is ``worker``.
"""
from .base import Executor, InProcessExecutor, Unit, error_result, make_units
from .pool import PoolExecutor, describe_exit
from .worker import WorkerSetup, check_storage, run_unit, worker_env, worker_setup

__all__ = ["Executor", "InProcessExecutor", "PoolExecutor", "Unit", "WorkerSetup", "check_storage", "describe_exit",
           "error_result", "make_units", "run_unit", "worker_env", "worker_setup"]
