"""Data-set sources (folder, kaggle-flat, synthetic) and the cats_dogs download."""
from zoo_bench import hookimpl

from .download import CATS_DOGS
from .sources import FolderSource, KaggleFlatSource, SyntheticSource


@hookimpl
def zoo_bench_register_datasets() -> list[type]:
    return [FolderSource, KaggleFlatSource, SyntheticSource]


@hookimpl
def zoo_bench_register_downloads() -> list:
    return [CATS_DOGS]
