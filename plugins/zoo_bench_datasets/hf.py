"""Hugging Face ``datasets`` as a data source: a folder written by ``save_to_disk``, a local ``imagefolder``,
or a data set on the Hub at a revision.

zoo-bench reads images from files, so images a data set holds as bytes are written once under the cache
folder, keyed by the data set's fingerprint (a file an ``imagefolder`` names is read where it is). Class
names come from the label column's ``ClassLabel`` feature (else its sorted distinct values). A data set
without a test split is refused unless ``test_fraction`` says how much of the train split to hold out
(stratified by class, seeded). What was read (fingerprints per split, the Hub name and revision) goes to
``run.json``'s ``dataset_provenance``.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

from zoo_bench import DataError, DatasetSource, Listing

INSTALL = "pip install 'zoo-bench[hf]'"
TEST_SEED = 0  # the held-out test part of a data set without a test split is the same every run


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise DataError(f"dataset.source = \"hf\" needs Hugging Face datasets ({exc}); install it with: {INSTALL}") from None
    return datasets


def _load(datasets: Any, root: Path, config: dict[str, Any]) -> tuple[Any, dict[str, Any], str]:
    """The data set (a DatasetDict or a Dataset), what to record of where it came from, and how to name it."""
    hub = config.get("hub") or ""
    if hub:
        revision = config.get("revision") or None
        where = f"{hub}@{revision or 'main'}"
        try:
            loaded = datasets.load_dataset(hub, revision=revision)
        except Exception as exc:  # offline and not cached, no such data set or revision
            from huggingface_hub.constants import HF_HUB_CACHE

            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise DataError(f"hf: {where}: cannot be loaded, and it is not in the Hub cache ({HF_HUB_CACHE}) either: "
                            f"{first}") from None
        return loaded, {"hub": hub, "revision": revision or "main"}, where
    if not root.exists():
        raise DataError(f"hf: {root} does not exist (a folder written by save_to_disk, or an imagefolder; or set "
                        f"dataset.hub to a Hub name)")
    if (root / "dataset_dict.json").exists() or (root / "state.json").exists():
        try:
            return datasets.load_from_disk(str(root)), {"path": str(root), "format": "save_to_disk"}, str(root)
        except Exception as exc:
            raise DataError(f"hf: {root}: load_from_disk failed: {str(exc).splitlines()[0][:300]}") from None
    try:
        loaded = datasets.load_dataset("imagefolder", data_dir=str(root))
    except Exception as exc:
        raise DataError(f"hf: {root}: not a save_to_disk folder, and as an imagefolder: "
                        f"{str(exc).splitlines()[0][:300]}") from None
    return loaded, {"path": str(root), "format": "imagefolder"}, str(root)


def _class_names(datasets: Any, split: Any, column: str) -> list[str] | None:
    feature = split.features[column]
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def _write_images(split: Any, image_column: str, folder: Path) -> list[str]:
    """A file path per row: the file an imagefolder names, else the row's bytes written under ``folder``.

    ``COMPLETE`` lists them once every file is written, one per row (a name under ``folder``, or the path
    of a file read in place), so a later listing reads that instead of the column's bytes."""
    from PIL import Image

    done = folder / "COMPLETE"
    if done.exists():
        names = done.read_text().splitlines()
        if len(names) == len(split) and names != ["ok"]:  # "ok": a marker written before it listed the files
            return [name if Path(name).is_absolute() else str(folder / name) for name in names]
    paths: list[str] = []
    folder.mkdir(parents=True, exist_ok=True)
    for i, item in enumerate(split[image_column]):
        data, source = (item or {}).get("bytes"), (item or {}).get("path")
        if not data and source and Path(source).is_file():
            paths.append(os.path.abspath(source))
            continue
        if not data:
            raise DataError(f"hf: row {i} of column {image_column!r} has no image (neither bytes nor a readable file)")
        suffix = Path(source).suffix.lower() if source and Path(source).suffix else ""
        if not suffix:
            try:
                suffix = "." + (Image.open(io.BytesIO(data)).format or "bin").lower()
            except Exception:
                suffix = ".bin"  # the decoder names the unreadable image later, as for any file
        target = folder / f"{i:07d}{suffix}"
        if not done.exists():
            target.write_bytes(data)
        paths.append(str(target))
    done.write_text("".join(f"{Path(p).name if Path(p).parent == folder else p}\n" for p in paths))
    return paths


class HuggingFaceSource(DatasetSource):
    """A Hugging Face data set (``datasets``): see the module docstring."""

    name = "hf"
    options = {"hub": "", "revision": "", "image_column": "image", "label_column": "label",
               "train_split": "train", "test_split": "test", "test_fraction": 0.0}
    description = "Hugging Face datasets: a save_to_disk folder, a local imagefolder, or hub = NAME at a revision"

    def list(self, root: Path, config: dict[str, Any], cache_dir: Path) -> Listing:
        datasets = _datasets()
        opts = {k: config.get(k, v) for k, v in self.options.items()}
        if not 0.0 <= float(opts["test_fraction"]) < 1.0:
            raise DataError(f"dataset.test_fraction: must be at least 0 and below 1, got {opts['test_fraction']}")
        loaded, provenance, where = _load(datasets, root, config)
        splits = loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({opts["train_split"]: loaded})
        train_name, test_name = opts["train_split"], opts["test_split"]
        if train_name not in splits:
            raise DataError(f"hf: {where}: no split {train_name!r} (it has: {', '.join(splits)}); name it with "
                            f"dataset.train_split")
        train = splits[train_name]
        image_col, label_col = opts["image_column"], opts["label_column"]
        for column in (image_col, label_col):
            if column not in train.column_names:
                key = "image_column" if column == image_col else "label_column"
                raise DataError(f"hf: {where}: split {train_name!r} has no column {column!r} (it has: "
                                f"{', '.join(train.column_names)}); name it with dataset.{key}")
        if test_name in splits:
            test = splits[test_name]
        elif float(opts["test_fraction"]) > 0:
            stratify = label_col if _class_names(datasets, train, label_col) is not None else None
            parts = train.train_test_split(test_size=float(opts["test_fraction"]), seed=TEST_SEED,
                                           stratify_by_column=stratify)
            train, test = parts["train"], parts["test"]
            provenance["test_fraction"] = float(opts["test_fraction"])
        else:
            raise DataError(f"hf: {where}: no split {test_name!r} (it has: {', '.join(splits)}): name the test split "
                            f"with dataset.test_split, or hold out part of {train_name!r} with dataset.test_fraction")
        names = _class_names(datasets, train, label_col)
        if names is None:  # plain values: their sorted distinct values are the classes
            names = sorted({str(v) for v in train[label_col]})
            index = {n: i for i, n in enumerate(names)}
            labels = {part: [index.get(str(v), -1) for v in split[label_col]] for part, split in
                      (("train", train), ("test", test))}
        else:
            labels = {"train": list(train[label_col]), "test": list(test[label_col])}
        if len(names) < 2:
            raise DataError(f"hf: {where}: need at least two classes, found {names}")
        unknown = sorted({str(v) for v, i in zip(test[label_col], labels["test"]) if i < 0})
        if unknown:
            raise DataError(f"hf: {where}: test labels {unknown[:5]} do not appear in the train split")
        fingerprints = {"train": getattr(train, "_fingerprint", None), "test": getattr(test, "_fingerprint", None)}
        key = hashlib.sha1(json.dumps([fingerprints, image_col], sort_keys=True).encode()).hexdigest()[:16]
        folder = cache_dir / "hf" / key
        paths = {part: _write_images(split.cast_column(image_col, datasets.Image(decode=False)), image_col, folder / part)
                 for part, split in (("train", train), ("test", test))}
        provenance.update(fingerprints=fingerprints, datasets=datasets.__version__,
                          splits={"train": train_name, "test": test_name if test_name in splits else None})
        return Listing(classes=tuple(str(n) for n in names),
                       train=tuple(zip(paths["train"], map(int, labels["train"]))),
                       test=tuple(zip(paths["test"], map(int, labels["test"]))),
                       provenance=provenance)
