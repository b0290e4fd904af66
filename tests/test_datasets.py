"""The folder, kaggle-flat and synthetic sources, and the message when data is missing."""
import pytest
from PIL import Image

from conftest import TINY_SUITE, write_suite
from zoo_bench.errors import DataError
from zoo_bench.run.runner import RunOptions, list_dataset
from zoo_bench.plan.suite import parse_suite
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


def _csv_folder(root):
    root.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", 4), ("test", 2)):
        rows = []
        for cls in ("a", "b"):
            for i in range(n):
                img(root / f"{part}_{cls}{i}.png")
                rows.append(f"{part}_{cls}{i}.png,{cls}")
        (root / f"{part}.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture()
def csv_registry():
    import broken_datasets
    import tiny_backbone

    from zoo_bench.plugins import load_plugins

    return load_plugins(extra=[tiny_backbone, broken_datasets])


@pytest.mark.parametrize("source, expected", [
    ("csv_dict", "broke the Listing contract: list() returned dict, expected a zoo_bench.Listing"),
    ("csv_out_of_range", "broke the Listing contract: train[7] ({root}/train_b3.png) has class 5, but there are 2 "
                         "classes (0..1)"),
])
def test_a_data_source_that_breaks_the_listing_rules_is_one_line_naming_its_plugin(tmp_path, csv_registry,
                                                                                    source, expected):
    root = _csv_folder(tmp_path / "data" / "set")
    body = TINY_SUITE.replace('source = "synthetic"\nclasses = 2\ntrain_per_class = 16\ntest_per_class = 8\nimage_size = 32',
                              f'source = "{source}"\npath = "set"').replace("sizes = [8]", "sizes = [2]") + "[strategies.svm]\n"
    suite = parse_suite(write_suite(tmp_path, body), csv_registry)
    with pytest.raises(DataError) as info:
        list_dataset(suite, csv_registry, RunOptions(data_root=tmp_path / "data", cache_dir=tmp_path))
    assert str(info.value) == (f"{suite.path}: dataset: source {source!r} from plugin 'broken_datasets' (in-process) "
                               + expected.format(root=root))
    good = parse_suite(write_suite(tmp_path, body.replace(source, "csv_ok")), csv_registry)
    listing = list_dataset(good, csv_registry, RunOptions(data_root=tmp_path / "data", cache_dir=tmp_path))
    assert listing.classes == ("a", "b") and len(listing.train) == 8


def test_check_plugin_lists_each_data_source_and_reports_each_broken_rule(tmp_path):
    import broken_datasets

    from zoo_bench.testing import check_plugin

    root = _csv_folder(tmp_path / "set")
    names = ("csv_ok", "csv_dict", "csv_out_of_range", "csv_missing_file")
    report = check_plugin(broken_datasets, raise_on_failure=False, datasets={n: root for n in names})
    assert report.checked == [f"dataset {n!r}" for n in names]
    assert report.failures == [
        "dataset 'csv_dict': list() returned dict, expected a zoo_bench.Listing",
        f"dataset 'csv_out_of_range': train[7] ({root}/train_b3.png) has class 5, but there are 2 classes (0..1)",
        f"dataset 'csv_missing_file': train[8]: no such file: {root}/gone.png",
    ]
