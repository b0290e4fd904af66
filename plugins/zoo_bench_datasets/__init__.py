"""Data-set sources (folder, kaggle-flat, synthetic, hf) and the cats_dogs download."""
from zoo_bench import hookimpl

from .download import CATS_DOGS
from .hf import HuggingFaceSource
from .sources import FolderSource, KaggleFlatSource, SyntheticSource


@hookimpl
def zoo_bench_register_datasets() -> list[type]:
    return [FolderSource, KaggleFlatSource, SyntheticSource, HuggingFaceSource]


@hookimpl
def zoo_bench_register_downloads() -> list:
    return [CATS_DOGS]
