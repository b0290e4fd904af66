"""The table ``zoo-bench run SUITE --estimate`` prints (through ``report``): expected time per strategy, the caches,
the total."""
from __future__ import annotations

from rich.table import Table

from ..run.estimate import Estimate, TrialEstimate


def duration(seconds: float) -> str:
    """``48 s``, ``7 min 12 s``, ``2 h 05 min``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _source(items: list[TrialEstimate]) -> str:
    earlier = sum(1 for t in items if t.source == "earlier runs")
    if not earlier:
        return "measured here"
    return "earlier runs" if earlier == len(items) else f"earlier runs ({earlier}), measured here ({len(items) - earlier})"


def estimate_table(est: Estimate, title: str) -> Table:
    """One row per backend, backbone and strategy, in run order; the run's start and end; the total."""
    table = Table(title=title, title_justify="left")
    for name, justify in (("backend", "left"), ("backbone", "left"), ("strategy", "left"), ("trials", "right"),
                          ("per trial", "right"), ("decoding", "right"), ("features", "right"),
                          ("estimated", "right"), ("from", "left")):
        table.add_column(name, justify=justify)
    groups: dict[tuple[str, str, str], list[TrialEstimate]] = {}
    for t in est.trials:
        groups.setdefault((t.trial.backend, t.trial.backbone, t.trial.strategy), []).append(t)
    for (backend, backbone, strategy), items in groups.items():
        own = sorted(t.own_s for t in items)
        table.add_row(backend, backbone, strategy, str(len(items)), duration(own[len(own) // 2]),
                      duration(sum(t.images_s for t in items)), duration(sum(t.features_s for t in items)),
                      duration(sum(t.seconds for t in items)), _source(items))
    if est.refits:
        table.add_row("", "", "refit (chosen configurations)", str(est.refits), "", "", "",
                      duration(est.refit_s), "mean of each cell's trials")
    table.add_row("", "", "start (imports, data, backends)", "", "", "", "", duration(est.start_s), "this process")
    table.add_row("", "", "end (tables, paired evidence)", "", "", "", "", duration(est.finish_s), "timed on the dry rows")
    table.add_section()
    table.add_row("", "", "total", str(len(est.trials) + est.refits), "", "", "", duration(est.total_s), "",
                  style="bold")
    return table


def cache_line(est: Estimate) -> str:
    """What the image and feature caches will save: how many images are decoded and how many read back."""
    decoded, cached = est.totals("decoded"), est.totals("images_cached")
    computed, hits = est.totals("features_computed"), est.totals("features_cached")
    return (f"caches: {cached} of {decoded + cached} image loads from the image cache ({decoded} to decode); "
            f"{hits} of {computed + hits} feature rows from the feature cache ({computed} to compute)")


def estimate_lines(est: Estimate) -> list[str]:
    """What goes under the table: the cache hits, then the total and how it was had."""
    return [cache_line(est),
            f"estimated wall time: {duration(est.total_s)} on {est.device or 'this machine'}, trials one after "
            f"another in one process (the estimate took {duration(est.took_s)}: a dry run of each trial, "
            f"{est.timed_passes} timed passes). Every epoch is counted: early stopping can only make the run shorter."]
