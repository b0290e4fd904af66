"""Paired evidence and a recommendation: each difference in a table with its interval, and what to use.

Every configuration of a cell (backend, backbone, size) is tested on the same images and, seed for
seed, trained on the same subset, so two configurations are compared on their per-image predictions
(:func:`zoo_bench.results.stats.paired_difference`), not through their separate intervals over seeds. Images
are paired by their path below the folder a trial's test images share, never by the stored path,
which depends on where the data root was; what is not paired is refused in one line saying why.

Three families of tests per cell, each Holm-corrected on its own and none across cells: all pairs;
each configuration against the observed best (the recommendation reads these); tuned against
default of each strategy. The same for one strategy across backbones at one size.

The recommendation per cell, and per size across backbones: the best (highest mean), the candidates
equivalent to it (the lower bound of the 90% interval of candidate - best above ``-equivalence``
points), the others "not separated" (Holm p >= 0.05 against the best) or "worse", and the cheapest of
the best and its equivalents by trial time and by trained parameters.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .selection import choose, default_rows, strip_tuned
from .stats import PairedDifference, holm, paired_difference
from .store import atomic_write, row_labels

EQUIVALENCE = 1.0  # points: the default margin of [compare] equivalence
ALPHA = 0.05
FILE = "evidence.json"


@dataclass
class Config:
    """One row of a table at one size: its ok trials by seed, mean accuracy (points) and cost."""

    backend: str
    backbone: str
    label: str
    size: int
    rows: dict[int, dict[str, Any]]  # seed -> trial row
    accuracy: float
    cost_s: float | None
    trainable_params: int | None
    order: int = 0  # position in the table, for ties
    latency_ms: float | None = None  # inference at batch 1, as deployed (run.inference_cost)

    @property
    def seeds(self) -> list[int]:
        return sorted(self.rows)

    def name(self, with_backbone: bool = False) -> str:
        return f"{self.backbone} {self.label}" if with_backbone else self.label


@dataclass
class Comparison:
    """A - B in points, or why the two cannot be paired."""

    a: Config
    b: Config
    diff: PairedDifference | None
    why: str | None = None
    p_holm: float | None = None

    def as_dict(self, with_backbone: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"a": self.a.name(with_backbone), "b": self.b.name(with_backbone),
                               "a_accuracy": self.a.accuracy, "b_accuracy": self.b.accuracy}
        if self.diff is None:
            return {**out, "paired": False, "why": self.why}
        return {**out, "paired": True, **self.diff.as_dict(), "p_holm": self.p_holm}


class Predictions:
    """Per-image correctness of trials, read from their predictions files once each."""

    def __init__(self, run_dir: Path | None):
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self._cache: dict[str, tuple[pd.Series, pd.Series] | str] = {}

    def correct(self, row: dict[str, Any]) -> tuple[pd.Series, pd.Series] | str:
        """(correct, label) indexed by image key, or why there is none."""
        name = row.get("predictions_file")
        if not isinstance(name, str) or not name:
            return f"{row['trial_id']}: no stored predictions"
        if name not in self._cache:
            self._cache[name] = self._read(name)
        return self._cache[name]

    def _read(self, name: str) -> tuple[pd.Series, pd.Series] | str:
        if self.run_dir is None:
            return f"{name}: no run folder to read it from"
        path = self.run_dir / name
        try:
            frame = pd.read_parquet(path, columns=["image", "label", "pred"])
        except (OSError, ValueError, ImportError) as exc:
            return f"{path}: cannot read the predictions ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        if frame.empty:
            return f"{path}: no test images"
        keys = image_keys([str(p) for p in frame["image"]])
        if len(set(keys)) != len(keys):
            return f"{path}: an image is listed twice"
        label = pd.Series(frame["label"].to_numpy(), index=keys)
        return pd.Series((frame["label"] == frame["pred"]).to_numpy(), index=keys), label


def image_keys(paths: list[str]) -> list[str]:
    """Each image's path below the folder all of them share (the data set's test part): independent of
    where the data root was when the trial ran."""
    if len(paths) == 1:
        return [os.path.basename(paths[0])]
    common = os.path.commonpath(paths)
    return [os.path.relpath(p, common) for p in paths]


def pair(a: Config, b: Config, predictions: Predictions) -> Comparison:
    """Paired difference A - B over the seeds both have, on the images both were tested on."""
    seeds = sorted(set(a.rows) & set(b.rows))
    if not seeds:
        return Comparison(a, b, None, f"no seed in common ({_seeds(a)} against {_seeds(b)})")
    rows_a, rows_b = [], []
    keys = None
    for seed in seeds:
        ca, cb = predictions.correct(a.rows[seed]), predictions.correct(b.rows[seed])
        for found in (ca, cb):
            if isinstance(found, str):
                return Comparison(a, b, None, found)
        (corr_a, lab_a), (corr_b, lab_b) = ca, cb
        if set(corr_a.index) != set(corr_b.index):
            common = len(set(corr_a.index) & set(corr_b.index))
            return Comparison(a, b, None, f"not the same test images at seed {seed} ({len(corr_a)} and "
                                          f"{len(corr_b)} images, {common} in common)")
        if keys is None:
            keys = sorted(corr_a.index)
        elif set(keys) != set(corr_a.index):
            return Comparison(a, b, None, f"seed {seed} was tested on other images than seed {seeds[0]}")
        if not (lab_a[keys].to_numpy() == lab_b[keys].to_numpy()).all():
            return Comparison(a, b, None, f"the same images carry different labels at seed {seed}")
        rows_a.append(corr_a[keys].to_numpy())
        rows_b.append(corr_b[keys].to_numpy())
    return Comparison(a, b, paired_difference(rows_a, rows_b))


def _seeds(c: Config) -> str:
    return "seeds " + ",".join(str(s) for s in c.seeds)


def cost_of(row: dict[str, Any], tuned: bool) -> float | None:
    """Training time: the fit or the epochs (``train_time_s``); tuned: of every configuration tried, refit
    included. Decoding, feature extraction (paid once for every strategy on cached features, by whichever
    trial ran first) and evaluation are left out, so the order trials ran in does not change the answer."""
    if tuned and _num(row.get("tuning_train_s")) is not None:
        return _num(row.get("tuning_train_s"))
    return _num(row.get("train_time_s"))


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def configs(df: pd.DataFrame, tuned: bool = False) -> list[Config]:
    """The table's rows at each size, from its ok trials (the frame a results table shows)."""
    if df.empty:
        return []
    df = df.assign(_label=row_labels(df))
    ok = df[df["status"] == "ok"]
    out = []
    for order, ((backend, backbone, label, size), g) in enumerate(
            ok.groupby(["backend", "backbone", "_label", "size_per_class"], sort=False)):
        rows = {int(r["seed"]): r for r in g.to_dict("records")}
        costs = [c for c in (cost_of(r, tuned) for r in rows.values()) if c is not None]
        params = [int(p) for p in g["trainable_params"] if _num(p) is not None]
        latency = [v for v in (_num(r.get("latency_ms")) for r in rows.values()) if v is not None]
        out.append(Config(str(backend), str(backbone), str(label), int(size), rows,
                          100 * float(pd.to_numeric(g["test_accuracy"]).mean()),
                          sum(costs) / len(costs) if costs else None, params[0] if params else None, order,
                          sum(latency) / len(latency) if latency else None))
    return out


def best_of(group: list[Config]) -> Config:
    """Highest mean accuracy; ties to the cheaper, then to the first in the table."""
    return min(group, key=lambda c: (-round(c.accuracy, 9), c.cost_s if c.cost_s is not None else math.inf, c.order))


def all_pairs(group: list[Config], predictions: Predictions) -> list[Comparison]:
    """Every pair once, the higher mean first, Holm-corrected as one family."""
    pairs = []
    for i, a in enumerate(group):
        for b in group[i + 1:]:
            first, second = (a, b) if a.accuracy >= b.accuracy else (b, a)
            pairs.append(pair(first, second, predictions))
    return _holm(pairs)


def against_best(group: list[Config], best: Config, predictions: Predictions) -> list[Comparison]:
    """Each other configuration minus the best, Holm-corrected as one family."""
    return _holm([pair(c, best, predictions) for c in group if c is not best])


def _holm(comparisons: list[Comparison]) -> list[Comparison]:
    tested = [c for c in comparisons if c.diff is not None]
    for c, p in zip(tested, holm([c.diff.p for c in tested])):
        c.p_holm = p
    return comparisons


@dataclass
class Recommendation:
    """What to use in one cell (or one size across backbones), as data and as one sentence."""

    backend: str
    backbone: str | None  # None: across backbones
    size: int
    best: Config
    versus: list[Comparison]
    equivalence: float
    verdicts: dict[str, str] = field(default_factory=dict)  # config name -> equivalent | not separated | worse | not compared

    @property
    def with_backbone(self) -> bool:
        return self.backbone is None

    def members(self, verdict: str) -> list[Comparison]:
        return [c for c in self.versus if self.verdicts[c.a.name(self.with_backbone)] == verdict]

    def cheapest(self) -> tuple[Config | None, Config | None]:
        """(by trial time, by trained parameters) among the best and its equivalents."""
        pool = [self.best] + [c.a for c in self.members("equivalent")]
        timed = [c for c in pool if c.cost_s is not None]
        counted = [c for c in pool if c.trainable_params is not None]
        return (min(timed, key=lambda c: (c.cost_s, c.order)) if timed else None,
                min(counted, key=lambda c: (c.trainable_params, c.order)) if counted else None)

    def fastest(self) -> Config | None:
        """The quickest to run (latency at batch 1) among the best and its equivalents."""
        pool = [c for c in [self.best] + [c.a for c in self.members("equivalent")] if c.latency_ms is not None]
        return min(pool, key=lambda c: (c.latency_ms, c.order)) if pool else None

    def one_seed(self) -> bool:
        return all(c.diff is None or c.diff.seeds == 1 for c in self.versus) and len(self.best.rows) == 1

    def text(self) -> str:
        wb = self.with_backbone
        head = f"n={self.size}" + (", across backbones" if wb else "")
        if self.one_seed():
            head += " (one seed: test images only, one training run)"
        parts = [f"{head}: best {self.best.name(wb)} {self.best.accuracy:.1f}"]
        eq = self.members("equivalent")
        if len(self.versus) == 0:
            parts.append("nothing else to compare")
        elif eq:
            parts.append(f"equivalent within {self.equivalence:g} pt: " + ", ".join(
                f"{c.a.name(wb)} ({c.diff.delta:+.1f}, 90% CI {c.diff.low90:+.1f} ... {c.diff.high90:+.1f})" for c in eq))
        else:
            parts.append(f"nothing equivalent within {self.equivalence:g} pt")
        for verdict in ("not separated", "worse"):
            members = self.members(verdict)
            if members:
                parts.append(f"{verdict}: " + ", ".join(f"{c.a.name(wb)} ({c.diff.delta:+.1f}, {format_p(c.p_holm)})"
                                                        for c in members))
        refused = self.members("not compared")
        if refused:
            parts.append("not compared: " + ", ".join(f"{c.a.name(wb)} ({c.why})" for c in refused))
        if eq:
            by_time, by_params = self.cheapest()
            if by_time is not None:
                parts.append(f"cheapest of the equivalent to train: {by_time.name(wb)} ({format_seconds(by_time.cost_s)}"
                             + (", the best itself)" if by_time is self.best else
                                f" against {format_seconds(self.best.cost_s)})"))
            if by_params is not None:
                parts.append(f"fewest trained parameters: {by_params.name(wb)} ({format_count(by_params.trainable_params)}"
                             + (", the best itself)" if by_params is self.best else
                                f" against {format_count(self.best.trainable_params)})"
                                if self.best.trainable_params is not None else ")"))
            fastest = self.fastest()
            if fastest is not None:
                parts.append(f"fastest to run: {fastest.name(wb)} ({fastest.latency_ms:.1f} ms an image"
                             + (", the best itself)" if fastest is self.best else
                                f" against {self.best.latency_ms:.1f})" if self.best.latency_ms is not None else ")"))
        return "; ".join(parts) + "."

    def as_dict(self) -> dict[str, Any]:
        wb = self.with_backbone
        by_time, by_params = self.cheapest()

        def entry(c: Config) -> dict[str, Any]:
            return {"config": c.name(wb), "accuracy": c.accuracy, "seeds": c.seeds, "cost_s": c.cost_s,
                    "trainable_params": c.trainable_params, "latency_ms": c.latency_ms}

        return {
            "backend": self.backend, "backbone": self.backbone, "size": self.size, "equivalence": self.equivalence,
            "best": entry(self.best),
            "versus": [{**c.as_dict(wb), "verdict": self.verdicts[c.a.name(wb)]} for c in self.versus],
            "equivalent": [c.a.name(wb) for c in self.members("equivalent")],
            "not_separated": [c.a.name(wb) for c in self.members("not separated")],
            "worse": [c.a.name(wb) for c in self.members("worse")],
            "not_compared": [c.a.name(wb) for c in self.members("not compared")],
            "cheapest_by_time": by_time.name(wb) if by_time is not None and self.members("equivalent") else None,
            "fewest_params": by_params.name(wb) if by_params is not None and self.members("equivalent") else None,
            "fastest_to_run": (self.fastest().name(wb) if self.fastest() is not None and self.members("equivalent")
                               else None),
            "text": self.text(),
        }


def verdict_of(c: Comparison, equivalence: float) -> str:
    """``equivalent`` (90% lower bound of candidate - best above -equivalence), else ``not separated``
    (Holm p >= 0.05 against the best) or ``worse``; ``not compared`` when the two are not paired."""
    if c.diff is None:
        return "not compared"
    if c.diff.low90 > -equivalence:
        return "equivalent"
    return "worse" if (c.p_holm if c.p_holm is not None else c.diff.p) < ALPHA else "not separated"


def recommend(group: list[Config], predictions: Predictions, equivalence: float,
              backbone: str | None) -> Recommendation:
    best = best_of(group)
    versus = against_best(group, best, predictions)
    rec = Recommendation(best.backend, backbone, best.size, best, versus, equivalence)
    rec.verdicts = {c.a.name(backbone is None): verdict_of(c, equivalence) for c in versus}
    return rec


@dataclass
class TableEvidence:
    """The pairs, the comparisons with the best and the recommendations of one results table."""

    name: str  # "trials", "defaults" or "tuned"
    cells: list[tuple[str, str, int, list[Comparison]]]  # (backend, backbone, size, all pairs)
    recommendations: list[Recommendation]
    backbones: list[tuple[str, str, int, list[Comparison]]]  # (backend, row label, size, all pairs across backbones)
    across: list[Recommendation]  # per (backend, size) across backbones


def analyse_table(name: str, df: pd.DataFrame, predictions: Predictions, equivalence: float) -> TableEvidence:
    found = configs(df, tuned=name == "tuned")
    ev = TableEvidence(name, [], [], [], [])
    by_cell: dict[tuple[str, str, int], list[Config]] = {}
    by_size: dict[tuple[str, int], list[Config]] = {}
    for c in found:
        by_cell.setdefault((c.backend, c.backbone, c.size), []).append(c)
        by_size.setdefault((c.backend, c.size), []).append(c)
    for (backend, backbone, size), group in sorted(by_cell.items(), key=lambda kv: (kv[0][0], kv[1][0].order, kv[0][2])):
        ev.cells.append((backend, backbone, size, all_pairs(group, predictions)))
        ev.recommendations.append(recommend(group, predictions, equivalence, backbone))
    for (backend, size), group in sorted(by_size.items()):
        if len({c.backbone for c in group}) < 2:
            continue
        by_label: dict[str, list[Config]] = {}
        for c in group:
            by_label.setdefault(c.label, []).append(c)
        for label, same in by_label.items():
            if len(same) > 1:
                ev.backbones.append((backend, label, size, all_pairs(same, predictions)))
        ev.across.append(recommend(group, predictions, equivalence, None))
    return ev


def tuning_family(defaults: pd.DataFrame, tuned: pd.DataFrame, predictions: Predictions) -> list[tuple[str, str, int, list[Comparison]]]:
    """Per cell, tuned minus default of each strategy ("did tuning help?"), Holm-corrected per cell.
    A strategy that had one configuration to try (its value pinned by the suite) is its default: left out."""
    by_key = {(c.backend, c.backbone, c.size, c.label): c for c in configs(defaults)}
    cells: dict[tuple[str, str, int], list[Comparison]] = {}
    for t in configs(tuned, tuned=True):
        d = by_key.get((t.backend, t.backbone, t.size, t.label))
        tried = max(int(_num(r.get("configs_tried")) or 0) for r in t.rows.values())
        if d is not None and tried > 1:
            cells.setdefault((t.backend, t.backbone, t.size), []).append(pair(t, d, predictions))
    return [(backend, backbone, size, _holm(comps)) for (backend, backbone, size), comps in cells.items()]


def table_frames(df: pd.DataFrame, selection: dict[str, Any] | None) -> list[tuple[str, pd.DataFrame]]:
    """The frames the results tables show: the trials; or, with ``[select]``, defaults and tuned."""
    if not selection:
        return [("trials", df)]
    return [("defaults", strip_tuned(default_rows(df, selection), selection)),
            ("tuned", strip_tuned(choose(df, selection), selection))]


@dataclass
class Evidence:
    """Everything this module finds in a run."""

    equivalence: float
    tables: list[TableEvidence]
    tuning: list[tuple[str, str, int, list[Comparison]]]

    def as_dict(self) -> dict[str, Any]:
        def family(items: list[tuple[str, str, int, list[Comparison]]], key: str, wb: bool = False) -> list[dict[str, Any]]:
            return [{"backend": b, key: k, "size": n, "pairs": [c.as_dict(wb) for c in comps]} for b, k, n, comps in items]

        return {
            "equivalence": self.equivalence, "confidence": 0.95, "alpha": ALPHA,
            "tables": [{"table": t.name, "pairs": family(t.cells, "backbone"),
                        "recommendations": [r.as_dict() for r in t.recommendations],
                        "backbone_pairs": family(t.backbones, "strategy", wb=True),
                        "across_backbones": [r.as_dict() for r in t.across]} for t in self.tables],
            "tuning": family(self.tuning, "backbone"),
        }


def equivalence_of(meta: dict[str, Any]) -> float:
    """The suite's ``[compare] equivalence`` (points), else the default 1."""
    compare = (meta.get("suite") or {}).get("compare") or {}
    value = _num(compare.get("equivalence")) if isinstance(compare, dict) else None
    return value if value is not None and value > 0 else EQUIVALENCE


def analyse(df: pd.DataFrame, meta: dict[str, Any], run_dir: Path | None,
            frames: list[tuple[str, pd.DataFrame]] | None = None) -> Evidence:
    """The paired evidence of a run's tables, from its stored predictions (old run folders included)."""
    predictions = Predictions(run_dir)
    equivalence = equivalence_of(meta)
    frames = frames if frames is not None else table_frames(df, meta.get("selection"))
    tables = [analyse_table(name, frame, predictions, equivalence) for name, frame in frames]
    named = dict(frames)
    tuning = tuning_family(named["defaults"], named["tuned"], predictions) if "tuned" in named else []
    return Evidence(equivalence, tables, tuning)


def write(evidence: Evidence, run_dir: Path) -> Path:
    """``evidence.json`` in the run folder, replaced atomically."""
    import json

    path = Path(run_dir) / FILE
    atomic_write(path, (json.dumps(evidence.as_dict(), indent=1, allow_nan=False, default=_plain) + "\n").encode())
    return path


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


def format_p(p: float | None) -> str:
    if p is None:
        return "p -"
    return "p<0.001" if p < 0.001 else f"p={p:.2g}" if p < 0.1 else f"p={p:.2f}"


def format_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 0.01:
        return f"{s * 1000:.2g} ms"
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.1f} s" if s < 100 else f"{s:.0f} s"


def format_count(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e3:.1f}k" if n >= 1000 else str(n)
