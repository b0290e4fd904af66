"""Data-set sources and downloadable archives, as plugins provide them."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar


@dataclass(frozen=True)
class Listing:
    """The images of a data set: (path, class index) pairs per part, and the class names."""

    classes: tuple[str, ...]
    train: tuple[tuple[str, int], ...]
    test: tuple[tuple[str, int], ...]

    def per_class(self, part: str) -> dict[int, list[str]]:
        """Paths of one part grouped by class index, in listing order."""
        groups: dict[int, list[str]] = {i: [] for i in range(len(self.classes))}
        for path, label in getattr(self, part):
            groups[label].append(path)
        return groups


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
