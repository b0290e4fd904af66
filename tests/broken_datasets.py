"""Test-only data sources: one keeps the Listing contract (a CSV of path,class), three break it."""
from __future__ import annotations

import csv
from pathlib import Path

from zoo_bench import DatasetSource, Listing, hookimpl


class CsvSource(DatasetSource):
    """``train.csv`` and ``test.csv`` in the folder, rows of (file, class name)."""

    name = "csv_ok"
    options = {"delimiter": ","}

    def list(self, root: Path, config, cache_dir) -> Listing:
        parts = {p: [(str(root / f), c) for f, c in csv.reader((root / f"{p}.csv").open(), delimiter=config["delimiter"])]
                 for p in ("train", "test")}
        classes = tuple(sorted({c for rows in parts.values() for _, c in rows}))
        index = {c: i for i, c in enumerate(classes)}
        return Listing(classes, *(tuple((f, index[c]) for f, c in parts[p]) for p in ("train", "test")))


class DictSource(CsvSource):
    name = "csv_dict"

    def list(self, root, config, cache_dir):
        listing = super().list(root, config, cache_dir)
        return {"classes": listing.classes, "train": listing.train, "test": listing.test}


class OutOfRange(CsvSource):
    name = "csv_out_of_range"

    def list(self, root, config, cache_dir):
        listing = super().list(root, config, cache_dir)
        return Listing(listing.classes, listing.train[:-1] + ((listing.train[-1][0], 5),), listing.test)


class MissingFile(CsvSource):
    name = "csv_missing_file"

    def list(self, root, config, cache_dir):
        listing = super().list(root, config, cache_dir)
        return Listing(listing.classes, listing.train + ((str(root / "gone.png"), 0),), listing.test)


@hookimpl
def zoo_bench_register_datasets():
    return [CsvSource, DictSource, OutOfRange, MissingFile]
