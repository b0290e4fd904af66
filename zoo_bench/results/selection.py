"""Model selection on validation data: per cell, the configuration with the best validation score.

A cell is (backend, backbone, strategy, the parameters not tuned, size, seed). Among its trials
(one per combination of the tuned parameters) the chosen one has the best validation score:
highest ``val_accuracy`` or ``val_balanced_accuracy``, or lowest ``val_loss``. Ties go to the
lower validation loss (for the accuracy metrics; the higher validation accuracy for ``val_loss``),
then to the trial id that sorts first. Only trials that finished ``ok`` can be chosen. Where the
metric is missing for a strategy (``val_loss`` of an SVM, whose margins are not probabilities), the
cell falls back to ``val_accuracy`` and says so in ``selected_by``. Test columns are never read
here: the reported number is the chosen trial's test accuracy.
"""
from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from ..plan.trial import strategy_label

TUNED_COLUMNS = ["chosen", "configs_tried", "configs_ok", "tuning_time_s", "tuning_train_s", "chosen_time_s",
                 "selected_by", "select_metric", "refit_status", "cv_sd", "cv_runner_up"]


def _num(v: Any) -> float | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return float(v)


def _cell_key(row: pd.Series, tuned: list[str]) -> str:
    rest = {k: v for k, v in (row["params"] or {}).items() if k not in tuned}
    return json.dumps(rest, sort_keys=True, default=str)


def _rank(row: pd.Series, metric: str) -> tuple:
    """A sort key: smaller is better. Uses validation columns only."""
    acc, loss = _num(row.get("val_accuracy")), _num(row.get("val_loss"))
    inf = math.inf
    if metric == "val_loss":
        return (loss if loss is not None else inf, -(acc if acc is not None else -inf), row["trial_id"])
    score = _num(row.get(metric))
    return (-(score if score is not None else -inf), loss if loss is not None else inf, row["trial_id"])


def tuned_of(selection: dict[str, Any] | None, strategy: str) -> list[str]:
    return list(((selection or {}).get("tuned") or {}).get(strategy, []))


def strip_tuned(df: pd.DataFrame, selection: dict[str, Any] | None) -> pd.DataFrame:
    """Rows with the tuned parameters taken out of ``params`` (and the trial id), so tables group by the rest."""
    if df.empty or not selection:
        return df
    df = df.copy()
    params, ids = [], []
    for _, row in df.iterrows():
        tuned = tuned_of(selection, row["strategy"])
        rest = {k: v for k, v in (row["params"] or {}).items() if k not in tuned}
        params.append(rest)
        ids.append(f"{row['backend']}/{row['backbone']}/{strategy_label(row['strategy'], rest)}"
                   f"/n={row['size_per_class']}/seed={row['seed']}")
    df["params"], df["trial_id"] = params, ids
    return df


def default_rows(df: pd.DataFrame, selection: dict[str, Any] | None) -> pd.DataFrame:
    """The trials whose tuned parameters are at the strategy's defaults: what an untuned run reports."""
    if df.empty or not selection:
        return df
    if "refit" in df.columns:
        df = df[~df["refit"].fillna(False).astype(bool)]
    defaults = selection.get("defaults") or {}

    def at_default(row: pd.Series) -> bool:
        d = defaults.get(row["strategy"], {})
        return all(k in d and (row["params"] or {}).get(k) == d[k] for k in tuned_of(selection, row["strategy"]))

    return df[df.apply(at_default, axis=1)] if len(df) else df


def choose(df: pd.DataFrame, selection: dict[str, Any]) -> pd.DataFrame:
    """One row per cell: the chosen trial, with what was chosen, how many configurations were tried and the cost.

    Extra columns: ``chosen`` (the tuned parameters' values), ``configs_tried`` (trials in the cell,
    failed ones included), ``configs_ok``, ``tuning_time_s`` (the sum of ``wall_s`` over the cell's
    trials, and the refit's), ``tuning_train_s`` (the sum of their ``train_time_s``),
    ``chosen_time_s`` (the chosen trial's ``wall_s``), ``selected_by`` (the
    metric used), ``refit_status`` (with ``refit``: the refit trial's status, "missing" before it ran; its
    test numbers replace the chosen trial's when it is ok). Cells without any ok trial are left out.
    """
    metric = "cv_accuracy" if selection.get("folds") else selection.get("metric", "val_accuracy")
    out = []
    refits = {}
    if "refit" in df.columns:  # refit rows are results of a choice, not candidates
        is_refit = df["refit"].fillna(False).astype(bool)
        refits = {tid.rsplit("/refit", 1)[0]: row for tid, row in zip(df.loc[is_refit, "trial_id"],
                                                                        df[is_refit].to_dict("records"))}
        df = df[~is_refit]
    if df.empty:
        return df.assign(**{c: None for c in TUNED_COLUMNS})
    keys = df.apply(lambda r: (r["backend"], r["backbone"], r["strategy"], _cell_key(r, tuned_of(selection, r["strategy"])),
                               r["size_per_class"], r["seed"]), axis=1)
    for _, cell in df.groupby(keys, sort=False):
        ok = cell[cell["status"] == "ok"]
        if ok.empty:
            continue
        used = metric
        if all(_num(v) is None for v in ok.get(metric, pd.Series([None] * len(ok)))):
            used = "val_accuracy"
        ranked = sorted((row for _, row in ok.iterrows()), key=lambda r: _rank(r, used))
        best = ranked[0].copy()
        best["cv_sd"], best["cv_runner_up"] = None, None
        if used == "cv_accuracy":
            best, note = _cross_validated(ranked, selection)
            used += note
        tuned = tuned_of(selection, best["strategy"])
        best["chosen"] = {k: best["params"].get(k) for k in tuned}
        best["configs_tried"] = len(cell)
        best["configs_ok"] = len(ok)
        best["tuning_time_s"] = float(pd.to_numeric(cell["wall_s"], errors="coerce").fillna(0).sum())
        best["tuning_train_s"] = float(pd.to_numeric(cell["train_time_s"], errors="coerce").fillna(0).sum()
                                       + pd.to_numeric(cell.get("cv_train_s", pd.Series(dtype=float)),
                                                       errors="coerce").fillna(0).sum())
        best["chosen_time_s"] = _num(best.get("wall_s"))
        best["selected_by"] = used
        best["select_metric"] = metric
        best["refit_status"] = None
        if selection.get("refit"):
            refit = refits.get(best["trial_id"])
            best["refit_status"] = "missing" if refit is None else refit.get("status")
            if refit is not None and refit.get("status") == "ok":  # report the refit model's test numbers
                for col in ("test_accuracy", "test_loss", "test_balanced_accuracy", "test_macro_f1", "confusion",
                            "per_class_accuracy", "epoch_time_s", "head_epoch_time_s", "cut", "train_time_s", "epochs",
                            "predictions_file"):
                    if col in refit:
                        best[col] = refit[col]
                best["tuning_time_s"] += float(refit.get("wall_s") or 0.0)
                best["tuning_train_s"] += float(refit.get("train_time_s") or 0.0)
        out.append(best)
    return pd.DataFrame(out).reset_index(drop=True) if out else df.iloc[0:0].assign(**{c: None for c in TUNED_COLUMNS})


def _fold_scores(row: pd.Series) -> list[float]:
    scores = row.get("cv_scores")
    return [float(v) for v in scores if _num(v) is not None] if isinstance(scores, (list, tuple)) or hasattr(scores, "tolist") else []


def _cross_validated(ranked: list[pd.Series], selection: dict[str, Any]) -> tuple[pd.Series, str]:
    """The configuration chosen on the folds: the best mean fold score, or with ``one_se`` the simplest
    within one standard error of it (the best's fold scores' standard deviation over the square root of
    their count; descriptive: fold scores are not independent, Nadeau and Bengio 2003). Keeps the fold
    scores' spread and the runner-up's mean, which say how clear the choice was."""
    top = ranked[0]
    scores = _fold_scores(top)
    sd = float(pd.Series(scores).std(ddof=1)) if len(scores) > 1 else None
    chosen, note = top, ""
    simpler = ((selection.get("simpler") or {}).get(top["strategy"]) or {})
    if selection.get("one_se") and sd is not None and simpler:
        floor = _num(top.get("cv_accuracy")) - sd / len(scores) ** 0.5
        within = [r for r in ranked if (_num(r.get("cv_accuracy")) or -1.0) >= floor - 1e-12]

        def simplicity(row: pd.Series) -> tuple:
            p = row["params"] or {}
            return tuple((p.get(k) if d == "low" else -p.get(k)) if isinstance(p.get(k), (int, float)) else 0
                         for k, d in simpler.items())

        chosen = min(within, key=lambda r: (simplicity(r), _rank(r, "cv_accuracy")))
        note = ", one-SE"
    out = chosen.copy()
    out["cv_sd"] = float(pd.Series(_fold_scores(chosen)).std(ddof=1)) if len(_fold_scores(chosen)) > 1 else None
    others = [_num(r.get("cv_accuracy")) for r in ranked if r["trial_id"] != chosen["trial_id"]]
    others = [v for v in others if v is not None]
    out["cv_runner_up"] = max(others) if others else None
    return out, note


def tuned_rows(df: pd.DataFrame, selection: dict[str, Any]) -> pd.DataFrame:
    """The chosen trials, tuned parameters stripped from ``params`` and ids prefixed ``tuned:``, for tables and compare."""
    chosen = strip_tuned(choose(df, selection), selection)
    if not chosen.empty:
        chosen["trial_id"] = "tuned:" + chosen["trial_id"]
    return chosen


def format_chosen(group: pd.DataFrame) -> str:
    """``lr=0.001 ×2, lr=0.0003 ×1``: the values chosen across a cell's seeds, most frequent first."""
    counts: dict[str, int] = {}
    for chosen in group["chosen"]:
        text = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted((chosen or {}).items()))
        counts[text] = counts.get(text, 0) + 1
    parts = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(parts) == 1:
        return parts[0][0]
    return ", ".join(f"{t} ×{n}" for t, n in parts)


def display_frame(df: pd.DataFrame, selection: dict[str, Any] | None) -> pd.DataFrame:
    """What plots and reports show of a run with ``[select]``: each strategy at its defaults, and tuned.

    Tuned rows are the chosen trials under the strategy name ``"<strategy> tuned"``, with ``wall_s``
    set to the cell's whole tuning cost (and no separate training time), so a cost plot places a tuned
    strategy at what tuning it took. A run without selection is returned as it is.
    """
    if not selection or df.empty:
        return df
    defaults = strip_tuned(default_rows(df, selection), selection)
    tuned = strip_tuned(choose(df, selection), selection)
    if not tuned.empty:
        tuned = tuned.assign(strategy=tuned["strategy"] + " tuned", wall_s=tuned["tuning_time_s"],
                             train_time_s=None, feature_time_s=None)
        tuned["trial_id"] = [t.replace(f"/{s}", f"/{s} tuned", 1) for t, s in
                             zip(tuned["trial_id"], tuned["strategy"].str.replace(" tuned", ""))]
    return pd.concat([defaults, tuned], ignore_index=True)
