"""The Hugging Face data source (zoo_bench_datasets/hf.py), with the real `datasets` library: a save_to_disk
folder and an imagefolder built from real photos give what the folder source gives, and what is missing
is said in one line."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import copy_photos, run_inprocess, write_suite
from zoo_bench import DataError
from zoo_bench.plugins import load_plugins

datasets = pytest.importorskip("datasets")

FEATURE_STRATEGIES = "[strategies.svm]\n[strategies.logreg]\n[strategies.knn]\nk = 3\n"


def suite_body(dataset: str) -> str:
    return f"""
[suite]
name = "hf"
seeds = [0, 1]
[dataset]
{dataset}
val_fraction = 0.25
sizes = [8]
[run]
backends = ["torch"]
backbones = ["efficientnet_lite0"]
image_size = 64
batch_size = 8
{FEATURE_STRATEGIES}
"""


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """12 train and 6 test cats_dogs photos per class as a folder data set, and the same images, in the
    folder source's order, as a DatasetDict written by save_to_disk (image bytes inside)."""
    root = tmp_path_factory.mktemp("hf_photos")
    folder = copy_photos(root / "folder", 12, 6)
    parts = {}
    for part in ("train", "test"):
        files = [(str(p), label) for label, cls in enumerate(("cat", "dog"))
                 for p in sorted((folder / part / cls).iterdir())]
        parts[part] = datasets.Dataset.from_dict(
            {"image": [f for f, _ in files], "label": [lab for _, lab in files]},
            features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])}))
    dd = datasets.DatasetDict(parts)
    dd = dd.map(lambda row: row)  # embed: the saved copy holds the images' bytes, not paths to them
    dd.save_to_disk(str(root / "saved"))
    return root


def run(tmp_path, photos, dataset: str, run_id: str):
    registry = load_plugins()
    store, _ = run_inprocess(write_suite(tmp_path, suite_body(dataset), f"{run_id}.toml"), registry, tmp_path,
                             tmp_path / "cache", run_id=run_id, data_root=photos)
    return store


def test_a_saved_dataset_gives_the_folder_sources_accuracies_and_its_fingerprints_go_to_run_json(tmp_path, photos):
    folder = run(tmp_path, photos, 'source = "folder"\npath = "folder"', "folder")
    hf = run(tmp_path, photos, 'source = "hf"\npath = "saved"', "hf")
    accuracy = {store: {(r["strategy"], r["seed"]): r["test_accuracy"] for r in s.rows()}
                for store, s in (("folder", folder), ("hf", hf))}
    assert len(accuracy["hf"]) == 6 and accuracy["hf"] == accuracy["folder"]
    for f_row, h_row in zip(folder.rows(), hf.rows()):  # the same scores image by image, not just the same count
        f_pred = pd.read_parquet(folder.run_dir / f_row["predictions_file"])
        h_pred = pd.read_parquet(hf.run_dir / h_row["predictions_file"])
        assert (f_row["strategy"], f_row["seed"]) == (h_row["strategy"], h_row["seed"])
        assert list(f_pred["label"]) == list(h_pred["label"])
        np.testing.assert_allclose(np.stack(f_pred["scores"]), np.stack(h_pred["scores"]), rtol=1e-5, atol=1e-6)
    provenance = hf.meta()["dataset_provenance"]
    assert provenance["format"] == "save_to_disk" and set(provenance["fingerprints"]) == {"train", "test"}
    assert all(isinstance(v, str) and v for v in provenance["fingerprints"].values())
    assert hf.meta()["classes"] == ["cat", "dog"] and folder.meta()["dataset_provenance"] is None


def test_an_imagefolder_is_read_where_its_files_are(tmp_path, photos):
    from zoo_bench_datasets.hf import HuggingFaceSource

    listing = HuggingFaceSource().list(photos / "folder", dict(HuggingFaceSource.options), tmp_path / "cache")
    assert listing.classes == ("cat", "dog") and len(listing.train) == 24 and len(listing.test) == 12
    assert all(path.startswith(str(photos / "folder")) for path, _ in listing.train + listing.test)
    assert {(path.split("/")[-2], label) for path, label in listing.test} == {("cat", 0), ("dog", 1)}
    assert listing.provenance["format"] == "imagefolder"
    assert HuggingFaceSource().list(photos / "folder", dict(HuggingFaceSource.options), tmp_path / "cache") == listing


def test_a_second_listing_reads_the_written_files_names_instead_of_the_images(tmp_path, photos, monkeypatch):
    import PIL.Image
    from zoo_bench_datasets.hf import HuggingFaceSource

    source, options = HuggingFaceSource(), dict(HuggingFaceSource.options)
    listing = source.list(photos / "saved", options, tmp_path / "cache")
    written = sorted((tmp_path / "cache").rglob("COMPLETE"))
    assert sorted(len(p.read_text().splitlines()) for p in written) == sorted([len(listing.test), len(listing.train)])

    def refuse(*args, **kwargs):
        raise AssertionError("an image was opened again")

    monkeypatch.setattr(PIL.Image, "open", refuse)
    assert source.list(photos / "saved", options, tmp_path / "cache") == listing


def test_no_test_split_is_refused_in_one_line_unless_test_fraction_holds_one_out(tmp_path, photos):
    from zoo_bench_datasets.hf import HuggingFaceSource

    only_train = datasets.load_from_disk(str(photos / "saved"))["train"]
    only_train.save_to_disk(str(tmp_path / "train_only"))
    source, options = HuggingFaceSource(), dict(HuggingFaceSource.options)
    with pytest.raises(DataError) as err:
        source.list(tmp_path / "train_only", options, tmp_path / "cache")
    assert str(err.value) == (f"hf: {tmp_path / 'train_only'}: no split 'test' (it has: train): name the test split "
                              "with dataset.test_split, or hold out part of 'train' with dataset.test_fraction")
    listing = source.list(tmp_path / "train_only", {**options, "test_fraction": 0.25}, tmp_path / "cache")
    assert (len(listing.train), len(listing.test)) == (18, 6)
    assert sorted(label for _, label in listing.test) == [0, 0, 0, 1, 1, 1]  # stratified by class
    assert listing == source.list(tmp_path / "train_only", {**options, "test_fraction": 0.25}, tmp_path / "cache")


def test_wrong_columns_and_an_unreachable_hub_name_what_is_missing(tmp_path, photos, monkeypatch):
    from zoo_bench_datasets.hf import HuggingFaceSource

    source, options = HuggingFaceSource(), dict(HuggingFaceSource.options)
    with pytest.raises(DataError, match=r"split 'train' has no column 'labels' \(it has: image, label\); name it "
                                        r"with dataset.label_column$"):
        source.list(photos / "saved", {**options, "label_column": "labels"}, tmp_path / "cache")
    import huggingface_hub.constants

    # Offline as a user sets it (the variables are read when the libraries are imported, so set here too):
    # the lookup fails at once instead of retrying a network that is not there.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    with pytest.raises(DataError) as err:
        source.list(tmp_path / "unused", {**options, "hub": "zoo-bench/no-such-dataset", "revision": "v1"},
                    tmp_path / "cache")
    text = str(err.value)
    assert text.startswith("hf: zoo-bench/no-such-dataset@v1: cannot be loaded, and it is not in the Hub cache (")
    assert "\n" not in text


def test_a_suite_names_the_hf_options(tmp_path, photos):
    """hf's options are [dataset] keys like any source's: a typo is refused when the suite is read."""
    from zoo_bench.errors import SuiteError
    from zoo_bench.plan.suite import parse_suite

    with pytest.raises(SuiteError, match="dataset.label_colum"):
        parse_suite(write_suite(tmp_path, suite_body('source = "hf"\npath = "saved"\nlabel_colum = "x"')),
                    load_plugins())
