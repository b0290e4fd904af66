"""Trained models of a run (``zoo-bench run --save-models``), rebuilt for ``zoo-bench predict``.

Each trial's model goes to ``models/<name>/`` in the run folder: its weights in the backend's safe
weights-only format (torch: safetensors; Keras: ``.weights.h5``) and ``model.json``, which says how
the backend rebuilds the network: backbone, image size and resize policy, head, pooling and classes.
Nothing is unpickled or deserialised as code: the backend builds the network from the description,
then loads the weights into it. A linear probe (``svm``, ``logreg``) keeps its frozen base's weights the
same way and its linear map (whether rows are scaled to unit length, the scaler's mean and scale, the
coefficients) in ``linear.npz``, read without pickle.
A model trained on cached features (``last_layer``, ``svm``) is saved with the frozen base it was
trained on, so every saved model classifies image files on its own.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backend import HeadSpec, pooling_kw
from ..errors import UsageError
from ..images import ImageCache, Resize

if TYPE_CHECKING:
    from ..backend import Backend
    from ..plugins import Registry

FORMAT = 1
FOLDER = "models"


def save(folder: Path, backend: "Backend", model: Any, description: dict[str, Any],
         linear: dict[str, np.ndarray] | None = None) -> None:
    """Write one trial's model to ``folder`` (replaced whole: written beside it, then renamed)."""
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = backend.save_weights(model, tmp)
    if linear is not None:
        np.savez(tmp / "linear.npz", **{k: np.asarray(v) for k, v in linear.items()})
    (tmp / "model.json").write_text(json.dumps({"format": FORMAT, **description, "weights_files": weights,
                                                "linear_file": "linear.npz" if linear is not None else None},
                                               indent=2) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


@dataclass
class Saved:
    """A saved model's folder and description."""

    folder: Path
    description: dict[str, Any]


def find(run_dir: Path, trial: str) -> Saved:
    """The saved model of ``trial`` (its id, or a part of it naming exactly one saved trial) in a run folder."""
    models = Path(run_dir) / FOLDER
    saved = []
    for path in sorted(models.glob("*/model.json")) if models.is_dir() else []:
        description = json.loads(path.read_text())
        saved.append(Saved(path.parent, description))
    if not saved:
        raise UsageError(f"{run_dir}: no saved models (run the suite with --save-models)")
    exact = [s for s in saved if s.description["trial_id"] == trial]
    matches = exact or [s for s in saved if trial in s.description["trial_id"]]
    if len(matches) == 1:
        return matches[0]
    ids = [s.description["trial_id"] for s in (matches or saved)]
    what = "names several saved trials" if matches else "names no saved trial"
    raise UsageError(f"{run_dir}: {trial!r} {what} ({'; '.join(ids[:6])}{'; ...' if len(ids) > 6 else ''})")


@dataclass
class Loaded:
    """A rebuilt model, ready to classify images."""

    backend: "Backend"
    model: Any
    description: dict[str, Any]
    linear: dict[str, np.ndarray] | None

    def scores(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Class scores of uint8 images (N, H, W, 3): logits, or an SVM's margins."""
        if self.linear is None:
            return self.backend.logits(self.model, images, batch_size)
        kw = pooling_kw(self.description["head"]["pooling"])
        x = self.backend.features(self.model, images, batch_size, **kw).astype(np.float64)
        if bool(self.linear.get("l2", False)):  # preprocess = "l2"
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        x = (x - self.linear["mean"]) / self.linear["scale"]
        margins = x @ self.linear["coef"].T + self.linear["intercept"]
        return np.stack([-margins[:, 0], margins[:, 0]], axis=1) if margins.shape[1] == 1 else margins


def load(saved: Saved, registry: "Registry", device: str | None = None, weights_dir: str | None = None) -> Loaded:
    """Rebuild a saved model through its backend (no pretrained weights are read: the saved ones are)."""
    d = saved.description
    if d.get("format") != FORMAT:
        raise UsageError(f"{saved.folder / 'model.json'}: format {d.get('format')!r} is not {FORMAT}")
    backend = registry.backends[d["backend"]](device=device or "auto", precision="fp32", weights_dir=weights_dir)
    spec = registry.backbone(d["backend"], d["backbone"])
    base = backend.build_base(spec, pretrained=False, image_size=d["image_size"])
    head = d["head"]
    kw = pooling_kw(head["pooling"])
    if d["kind"] == "linear":
        model = base
        with np.load(saved.folder / d["linear_file"], allow_pickle=False) as data:
            linear = {k: data[k] for k in data.files}
    else:
        width = backend.feature_dim(base, **kw)
        model = backend.attach(base, backend.new_head(width, len(d["classes"]),
                                                      HeadSpec(tuple(head["hidden"]), head["dropout"])), **kw)
        linear = None
    backend.load_weights(model, saved.folder)
    return Loaded(backend, model, d, linear)


def read_images(paths: list[str], description: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """Image files decoded and resized as the trial's images were; unreadable ones refused in one line."""
    r = description["resize"]
    resize = Resize(r["size"], r["crop_pct"], r["interpolation"], r["crop_mode"], tuple(r["fill"]))
    batch = ImageCache(None).load([(str(p), -1) for p in paths], resize)
    if batch.skipped:
        bad = batch.skipped[0]
        why = re.sub(r" *<[^>]*>", "", batch.reasons.get(bad, "unreadable"))  # no object reprs in the line
        raise UsageError(f"{bad}: cannot be read as an image ({why})")
    return batch.images, list(batch.paths)
