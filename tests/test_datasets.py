"""The folder, kaggle-flat and synthetic sources, and the message when data is missing."""
import pytest
from PIL import Image

from conftest import TINY_SUITE, write_suite
from zoo_bench.errors import DataError
from zoo_bench.runner import RunOptions, list_dataset
from zoo_bench.suite import parse_suite
from zoo_bench_datasets.sources import FolderSource, KaggleFlatSource, SyntheticSource


def img(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(path)


def test_folder_source(tmp_path):
    for part, n in (("train", 3), ("test", 2)):
        for c in ("cat", "dog"):
            for i in range(n):
                img(tmp_path / part / c / f"{c}.{i}.jpg")
    listing = FolderSource().list(tmp_path, {"train": "train", "test": "test"}, tmp_path)
    assert listing.classes == ("cat", "dog") and len(listing.train) == 6 and len(listing.test) == 4


def test_kaggle_flat_source_labels_from_prefix(tmp_path):
    for part, n in (("train", 3), ("test", 1)):
        for c in ("cat", "dog"):
            for i in range(n):
                img(tmp_path / part / f"{c}.{i}.jpg")
    listing = KaggleFlatSource().list(tmp_path, {"train": "train", "test": "test"}, tmp_path)
    assert listing.classes == ("cat", "dog")
    assert sum(1 for p, y in listing.train if "dog." in p and y == 1) == 3


def test_kaggle_flat_rejects_names_without_prefix(tmp_path):
    img(tmp_path / "train" / "cat.1.jpg")
    img(tmp_path / "train" / "photo_without_label.jpg")
    (tmp_path / "test").mkdir()
    with pytest.raises(DataError, match="photo_without_label.jpg: file name has no class prefix"):
        KaggleFlatSource().list(tmp_path, {"train": "train", "test": "test"}, tmp_path)


def test_synthetic_is_generated_once_and_deterministic(tmp_path):
    opts = dict(SyntheticSource.options, train_per_class=4, test_per_class=2)
    a = SyntheticSource().list(tmp_path, opts, tmp_path / "c")
    b = SyntheticSource().list(tmp_path, opts, tmp_path / "c")
    assert a == b and len(a.train) == 8 and len(a.test) == 4


def test_missing_data_says_what_to_put_where(tmp_path, registry):
    body = TINY_SUITE.replace('source = "synthetic"\nclasses = 2\ntrain_per_class = 16\ntest_per_class = 8\nimage_size = 32',
                              'source = "folder"\npath = "cats_dogs"') + "[strategies.svm]\n"
    suite = parse_suite(write_suite(tmp_path, body), registry)
    with pytest.raises(DataError) as info:
        list_dataset(suite, registry, RunOptions(data_root=tmp_path / "nodata", cache_dir=tmp_path))
    text = str(info.value)
    assert "data set folder" in text and "cats_dogs" in text and "ZOO_BENCH_DATA_ROOT" in text
    assert "zoo-bench data get cats_dogs" in text
