"""Which test images a trial got right, from either side of a comparison: a run folder's predictions
files, or a baseline's compact copy of them.

A baseline keeps, once per distinct test set, the images' keys (their paths below the folder the test
images share: :func:`zoo_bench.results.evidence.image_keys`, independent of where the data root was),
and per trial one bit per image, packed and base64-encoded: 2000 test images cost 336 characters a
trial. So ``compare`` can pair a baseline's trial with the current run's on the same images.
"""
from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .evidence import Predictions

TOLERANCE = 1e-9  # a trial's stored accuracy and its predictions' must agree to this


def encode(correct: pd.Series) -> tuple[str, list[str], dict[str, str]]:
    """(the image set's id, its sorted keys, the trial's entry) for a baseline."""
    keys = sorted(str(k) for k in correct.index)
    images = hashlib.sha1("\n".join(keys).encode()).hexdigest()[:16]
    bits = np.packbits(correct[keys].to_numpy(dtype=bool))
    return images, keys, {"images": images, "bits": base64.b64encode(bits.tobytes()).decode("ascii")}


def decode(entry: dict[str, str], images: dict[str, list[str]]) -> pd.Series | str:
    """A baseline trial's correctness by image key, or why there is none."""
    keys = images.get(entry.get("images", ""))
    if keys is None:
        return "the baseline lists no images for its stored correctness"
    try:
        bits = np.unpackbits(np.frombuffer(base64.b64decode(entry["bits"]), dtype=np.uint8))[: len(keys)]
    except (KeyError, ValueError, TypeError) as exc:
        return f"unreadable stored correctness ({type(exc).__name__})"
    if len(bits) != len(keys):
        return "the stored correctness is shorter than its image list"
    return pd.Series(bits.astype(bool), index=keys)


class Correctness:
    """Per-image correctness of one side's trials: from its run folder's predictions files, or from the
    compact copy a baseline stores (``test_images`` and each trial's ``test_correct``)."""

    def __init__(self, run_dir: Path | None = None, images: dict[str, list[str]] | None = None):
        self.predictions = Predictions(run_dir) if run_dir is not None else None
        self.images = images or {}

    def of(self, row: dict[str, Any]) -> pd.Series | str:
        """The trial's correctness by image key, or why it has none. A file that disagrees with the row's
        own accuracy (the row edited, the file replaced) is not used."""
        if isinstance(row.get("test_correct"), dict):
            found = decode(row["test_correct"], self.images)
        elif self.predictions is not None and row.get("predictions_file"):
            read = self.predictions.correct(row)
            found = read if isinstance(read, str) else read[0]
        else:
            return "a side keeps no per-image correctness (a baseline saved before it was kept)"
        if isinstance(found, str):
            return found
        accuracy = row.get("test_accuracy")
        if isinstance(accuracy, (int, float)) and abs(float(found.mean()) - accuracy) > TOLERANCE:
            return f"seed {row.get('seed')}'s predictions give accuracy {found.mean():.4f}, its row {accuracy:.4f}"
        return found
