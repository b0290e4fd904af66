"""Data-set sources and downloadable archives, as plugins provide them."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar


@dataclass(frozen=True)
class Listing:
    """The images of a data set: (path, class index) pairs per part, and the class names.

    ``provenance``: what identifies the data set beyond its files, for ``run.json`` (a Hugging Face data
    set's fingerprints, a Hub name and revision); empty for a folder of files.
    """

    classes: tuple[str, ...]
    train: tuple[tuple[str, int], ...]
    test: tuple[tuple[str, int], ...]
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)

    def per_class(self, part: str) -> dict[int, list[str]]:
        """Paths of one part grouped by class index, in listing order."""
        groups: dict[int, list[str]] = {i: [] for i in range(len(self.classes))}
        for path, label in getattr(self, part):
            groups[label].append(path)
        return groups


def listing_problems(listing: object, check_files: bool = True, limit: int = 3) -> list[str]:
    """Why ``listing`` is not a usable :class:`Listing`, one line each (at most ``limit``); empty when it is.

    The rules a data source's ``list`` must keep: a Listing; class names as strings; train and test as
    (path, class index) pairs with indices in range; with ``check_files``, every file present.
    """
    import os

    if not isinstance(listing, Listing):
        return [f"list() returned {type(listing).__name__}, expected a zoo_bench.Listing"]
    classes = listing.classes
    if not isinstance(classes, (tuple, list)) or not classes or not all(isinstance(c, str) for c in classes):
        return [f"classes is {classes!r:.80}, expected a non-empty tuple of class names (str)"]
    problems = []
    for part in ("train", "test"):
        items = getattr(listing, part)
        if not isinstance(items, (tuple, list)):
            problems.append(f"{part} is {type(items).__name__}, expected a tuple of (path, class index) pairs")
            continue
        for i, item in enumerate(items):
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)
                    and isinstance(item[1], int) and not isinstance(item[1], bool)):
                problems.append(f"{part}[{i}] is {item!r:.80}, expected a (path, class index) pair")
                break
            if not 0 <= item[1] < len(classes):
                problems.append(f"{part}[{i}] ({item[0]}) has class {item[1]}, but there are {len(classes)} "
                                f"classes (0..{len(classes) - 1})")
                break
            if check_files and not os.path.isfile(item[0]):
                problems.append(f"{part}[{i}]: no such file: {item[0]}")
                break
    return problems[:limit]


class DatasetSource(ABC):
    """Lists a data set's images from a suite's ``[dataset]`` table.

    Class attributes:
        name: the suite's ``dataset.source`` value.
        options: extra ``[dataset]`` keys this source accepts, with defaults (types from them).
        description: one line for ``zoo-bench plugins``.
    """

    name: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}
    description: ClassVar[str] = ""

    @abstractmethod
    def list(self, root: Path, config: dict[str, Any], cache_dir: Path) -> Listing:
        """Return the listing. ``root`` is the data set folder (path resolved against the data root).

        Raise :class:`zoo_bench.errors.DataError` with what to put where when data is missing.
        """


@dataclass(frozen=True)
class DownloadSpec:
    """A public archive that ``zoo-bench data get NAME`` fetches, verifies and lays out."""

    name: str
    url: str
    sha256: str
    prepare: Callable[[Path, Path], dict[str, int]]  # (archive, destination) -> counts to report
    description: str = ""
