"""Scores of a trial's predictions: accuracy, loss, confusion matrix, per-class and balanced accuracy, macro-F1.

Computed by the runner from predictions and class scores, so every strategy and backend is scored
by the same code (scikit-learn's metrics).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import log_softmax


def cross_entropy(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Mean cross-entropy of softmax(scores) against the labels; None without scores or labels."""
    if scores is None or not len(labels) or scores.ndim != 2 or scores.shape[0] != len(labels):
        return None
    logp = log_softmax(np.asarray(scores, np.float64), axis=1)
    return float(-logp[np.arange(len(labels)), labels].mean())


def scores_of(pred: np.ndarray, labels: np.ndarray, num_classes: int, scores: np.ndarray | None) -> dict[str, Any]:
    """Every metric of one part (test or validation) as plain Python values."""
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score

    classes = list(range(num_classes))
    matrix = confusion_matrix(labels, pred, labels=classes)
    support = matrix.sum(axis=1)
    per_class = [float(matrix[c, c] / support[c]) if support[c] else None for c in classes]
    return {
        "accuracy": float(np.mean(pred == labels)) if len(labels) else None,
        "loss": cross_entropy(scores, labels) if scores is not None else None,
        "balanced_accuracy": float(balanced_accuracy_score(labels, pred)) if len(labels) else None,
        "macro_f1": float(f1_score(labels, pred, labels=classes, average="macro", zero_division=0))
        if len(labels) else None,
        "confusion": matrix.astype(int).tolist(),
        "per_class_accuracy": per_class,
    }
