"""Reading results: the run folder (:mod:`.store`), and what is concluded from its rows: selection on
validation, paired evidence, compare against a baseline, ranks across data sets, the statistics they share.

``zoo_bench.results`` itself keeps the run folder's reading API (``load_run``, ``RunStore``...), the
names it had when it was one module.
"""
from .store import (  # noqa: F401
    COLUMNS, FINISHED, RunStore, atomic_write, in_suite_order, load_run, new_run_id, now_iso, row_labels,
    to_dataframe,
)
