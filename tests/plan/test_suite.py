"""Suite parsing and every validation error: one line, naming the file, the key and what is allowed."""
from __future__ import annotations

import pytest

from conftest import TINY_SUITE, write_suite
from zoo_bench.errors import SuiteError
from zoo_bench.plan.suite import parse_suite

BASE = TINY_SUITE + "\n[strategies.svm]\n"


def problems(tmp_path, registry, body: str, profile=None) -> list[str]:
    path = write_suite(tmp_path, body)
    with pytest.raises(SuiteError) as info:
        parse_suite(path, registry, profile=profile)
    for line in info.value.problems:
        assert "\n" not in line and line.startswith(str(path))
    return info.value.problems


def test_valid_suite_fills_defaults(tmp_path, registry):
    suite = parse_suite(write_suite(tmp_path, BASE + "[strategies.fpt]\nfinetune_lr = [1e-4, 1e-3]\n"), registry)
    assert suite.name == "tiny" and suite.sizes == (8,) and suite.batch_size == 8
    assert suite.strategies["svm"] == {"C": [1.0], "preprocess": ["none"], "pooling": ["avg"]}
    assert suite.strategies["fpt"]["finetune_lr"] == [1e-4, 1e-3]
    assert suite.strategies["fpt"]["head_epochs"] == [10]
    assert suite.image_size is None and suite.precision == "auto"


@pytest.mark.parametrize("patch, key, fragment", [
    ("[extra]\n", "extra", "unknown table"),
    ("", "run.batch_size", "must be int"),
    ("", "dataset.colour", "unknown key"),
])
def test_unknown_tables_keys_and_types(tmp_path, registry, patch, key, fragment):
    body = BASE + patch
    if key == "run.batch_size":
        body = body.replace("batch_size = 8", 'batch_size = "eight"')
    if key == "dataset.colour":
        body = body.replace("[dataset]", '[dataset]\ncolour = "red"')
    lines = problems(tmp_path, registry, body)
    assert any(f": {key}: " in line and fragment in line for line in lines), lines


def test_unknown_names_list_allowed_values(tmp_path, registry):
    body = BASE.replace('backbones = ["mini_cnn"]', 'backbones = ["mini_cnn", "resnet5O"]')
    body = body.replace('backends = ["torch"]', 'backends = ["torch"]').replace('source = "synthetic"', 'source = "flder"')
    body += "[strategies.svn]\n"
    lines = problems(tmp_path, registry, body)
    text = "\n".join(lines)
    assert "run.backbones[1]: unknown backbone 'resnet5O' for backend 'torch' (allowed: " in text
    assert "resnet50" in text
    assert "dataset.source: unknown data-set source 'flder' (allowed: folder, hf, kaggle-flat, synthetic)" in text
    assert ("strategies.svn: unknown strategy (allowed: bitfit, fpt, frozen_pixels, full, knn, last_layer, last_n, logreg, "
            "lora, norm_tune, scratch, svm, vpt)") in text


def test_unknown_backend(tmp_path, registry):
    lines = problems(tmp_path, registry, BASE.replace('backends = ["torch"]', 'backends = ["jax"]'))
    assert any("run.backends[0]: unknown backend 'jax' (allowed: keras, torch)" in line for line in lines)


def test_strategy_parameter_errors(tmp_path, registry):
    body = BASE + '[strategies.fpt]\nfinetune_lr = "small"\nwarmup = 3\n'
    text = "\n".join(problems(tmp_path, registry, body))
    assert "strategies.fpt.finetune_lr: must be float or a list of them to sweep" in text
    assert "strategies.fpt.warmup: unknown parameter (allowed: " in text


def test_ranges_and_enums(tmp_path, registry):
    body = BASE.replace("val_fraction = 0.25", "val_fraction = 1.5").replace("sizes = [8]", "sizes = [1, 8, 8]")
    body = body.replace("batch_size = 8", 'batch_size = 8\nprecision = "fp8"\ndevice = "tpu"')
    text = "\n".join(problems(tmp_path, registry, body))
    for fragment in ("dataset.val_fraction: must be in [0, 1)", "dataset.sizes: has duplicates",
                     "dataset.sizes[0]: must be at least 2", "run.precision: unknown precision 'fp8' (allowed: auto, fp32, bf16)",
                     "run.device: unknown device 'tpu' (allowed: auto, cpu, cuda, mps)"):
        assert fragment in text


@pytest.mark.parametrize("table, expected", [
    ("num_gpus = 1.5", "ray.num_gpus: must be a whole number above 1 (a fraction only below 1), got 1.5"),
    ("num_cpus = 0", "ray.num_cpus: must be more than 0 and at most 1024, got 0"),
    ("num_gpus = -1", "ray.num_gpus: must be at least 0 and at most 1024, got -1"),
    ('num_cpus = "two"', "ray.num_cpus: must be float, got str 'two'"),
    ("gpus = 1", "ray.gpus: unknown key (allowed: num_cpus, num_gpus)"),
])
def test_ray_settings_are_checked(tmp_path, registry, table, expected):
    assert any(line.endswith(expected) for line in problems(tmp_path, registry, BASE + f"[ray]\n{table}\n"))


def test_ray_settings_default_and_allow_a_cpu_only_unit(tmp_path, registry):
    assert parse_suite(write_suite(tmp_path, BASE), registry).ray == {"num_gpus": 1.0, "num_cpus": 1.0}
    suite = parse_suite(write_suite(tmp_path, BASE + "[ray]\nnum_gpus = 0\nnum_cpus = 0.5\n"), registry)
    assert suite.ray == {"num_gpus": 0.0, "num_cpus": 0.5}


def test_missing_required_and_no_strategies(tmp_path, registry):
    body = TINY_SUITE.replace('name = "tiny"\n', "")
    text = "\n".join(problems(tmp_path, registry, body))
    assert "suite.name: required key is missing" in text
    assert "strategies: name at least one strategy table" in text


def test_toml_syntax_error_is_one_line(tmp_path, registry):
    lines = problems(tmp_path, registry, BASE + "[run\n")
    assert len(lines) == 1 and "not valid TOML" in lines[0]


def test_profiles_merge_and_unknown_profile(tmp_path, registry):
    body = BASE + "[profiles.small.dataset]\nsizes = [4]\n[profiles.small.strategies.svm]\nC = 0.5\n"
    suite = parse_suite(write_suite(tmp_path, body), registry, profile="small")
    assert suite.sizes == (4,) and suite.strategies["svm"]["C"] == [0.5] and suite.profiles == ("small",)
    lines = problems(tmp_path, registry, body, profile="gpu")
    assert "profiles: unknown profile 'gpu' (allowed: small)" in lines[0]


def test_sizes_larger_than_data(tmp_path, registry, cache_dir):
    from zoo_bench.run.runner import RunOptions, check_sizes, list_dataset

    path = write_suite(tmp_path, BASE.replace("sizes = [8]", "sizes = [8, 50]"))
    suite = parse_suite(path, registry)
    listing = list_dataset(suite, registry, RunOptions(data_root=tmp_path, cache_dir=cache_dir))
    with pytest.raises(SuiteError) as info:
        check_sizes(suite, listing)
    assert info.value.problems == [
        f"{path}: dataset.sizes[1]: 50 images per class asked, but class 'pattern0' has only 16 train images "
        "(allowed: up to 16)"]


def test_strategy_backbones_must_be_in_the_run(tmp_path, registry):
    lines = problems(tmp_path, registry, BASE.replace("[strategies.svm]\n", '[strategies.svm]\nbackbones = ["vgg16"]\n'))
    assert any("strategies.svm.backbones[0]: 'vgg16' is not in run.backbones (allowed: mini_cnn)" in l for l in lines)


def only_problem(tmp_path, registry, body: str, profile=None) -> str:
    """The one problem of a suite, without its file prefix."""
    lines = problems(tmp_path, registry, body, profile=profile)
    assert len(lines) == 1, lines
    return lines[0].split(": ", 1)[1]


@pytest.mark.parametrize("profile", [None, "small"])
@pytest.mark.parametrize("body, expected", [
    ("profiles = 3\n" + BASE, "profiles: must be a table of [profiles.NAME] tables, got int 3"),
    (BASE + "[profiles]\nsmall = [1]\n", "profiles.small: must be a table, got list [1]"),
    (BASE + "[profiles.small]\nrun = 5\n", "profiles.small.run: must be a table, got int 5"),
    (BASE + "[profiles.small.strategies]\nsvm = 1979-05-27\n",
     "profiles.small.strategies.svm: must be a table, got date datetime.date(1979, 5, 27)"),
    (BASE + "[profiles.small.extra]\n", "profiles.small.extra: unknown table (allowed: suite, dataset, run, compare, select, ray, "
                                        "tracking, strategies)"),
])
def test_misshapen_profiles_are_named_whether_applied_or_not(tmp_path, registry, body, expected, profile):
    assert only_problem(tmp_path, registry, body, profile=profile) == expected


def test_strategies_must_be_a_table_of_tables(tmp_path, registry):
    text = only_problem(tmp_path, registry, "strategies = [1]\n" + TINY_SUITE)
    assert text.startswith("strategies: must be a table of [strategies.NAME] tables, got list [1] (allowed: ")
    text = only_problem(tmp_path, registry, BASE.replace("[strategies.svm]\n", "[strategies]\nsvm = 2\n"))
    assert text == "strategies.svm: must be a table, got int 2"


def test_seeds_batch_and_image_sizes_have_bounds(tmp_path, registry):
    body = BASE.replace("seeds = [0]", "seeds = [-1, 4294967296, 4294967295]")
    body = body.replace("batch_size = 8", "batch_size = 65537\nimage_size = 4097")
    text = "\n".join(problems(tmp_path, registry, body))
    assert "suite.seeds[0]: must be in [0, 2**32), got -1" in text
    assert "suite.seeds[1]: must be in [0, 2**32), got 4294967296" in text and "seeds[2]" not in text
    assert "run.batch_size: must be between 1 and 65536, got 65537" in text
    assert "run.image_size: must be between 1 and 4096 pixels (0 or absent: the backbone's own), got 4097" in text
    body = BASE.replace("batch_size = 8", "batch_size = 0\nimage_size = -1")
    text = "\n".join(problems(tmp_path, registry, body))
    assert "run.batch_size: must be between 1 and 65536, got 0" in text and "run.image_size: must be between" in text


def test_dates_and_tables_where_values_belong(tmp_path, registry):
    body = BASE.replace("batch_size = 8", "batch_size = 1979-05-27T07:32:00Z\nbackends = 1")
    body = body.replace('backends = ["torch"]\n', "")
    text = "\n".join(problems(tmp_path, registry, body))
    assert "run.batch_size: must be int, got datetime datetime.datetime(1979, 5, 27, 7, 32, tzinfo=" in text
    assert "run.backends: must be list[str], got int 1" in text
    body = BASE.replace('source = "synthetic"', 'source = ["synthetic"]')
    text = "\n".join(problems(tmp_path, registry, body))
    assert "dataset.source: must be str, got list ['synthetic']" in text


def test_keys_that_are_not_bare_are_quoted_on_one_line(tmp_path, registry):
    body = '"" = 1\n' + BASE.replace("[run]\n", '[run]\n"two\\nlines" = 1\n')
    text = "\n".join(problems(tmp_path, registry, body))
    assert ': "": unknown table' in text
    assert ': run."two\\nlines": unknown key (allowed: ' in text


@pytest.mark.parametrize("content, fragment", [
    (b'[suite]\nname = "\xff"\n', "not valid TOML: not UTF-8 text (invalid start byte at line 2)"),
    (None, "cannot read the suite file: Is a directory"),
])
def test_unreadable_suite_files(tmp_path, registry, content, fragment):
    path = tmp_path / "suite.toml"
    path.write_bytes(content) if content is not None else path.mkdir()
    with pytest.raises(SuiteError) as info:
        parse_suite(path, registry)
    assert info.value.problems == [f"{path}: {fragment}"]


def test_strategy_sweeps_are_finite_and_distinct(tmp_path, registry):
    body = BASE.replace("[strategies.svm]\n", "[strategies.svm]\nC = nan\n"
                        "[strategies.fpt]\nfinetune_lr = [1e-3, 0.001]\n")
    text = "\n".join(problems(tmp_path, registry, body))
    assert "strategies.svm.C: must be a finite number, got nan" in text
    assert "strategies.fpt.finetune_lr: sweeps a value twice, which would repeat trials: [0.001, 0.001]" in text


@pytest.mark.parametrize("name", ["", "..", "../up", "a\\\\b", "tab\\there"])
def test_suite_name_is_a_folder_name(tmp_path, registry, name):
    text = only_problem(tmp_path, registry, BASE.replace('name = "tiny"', f'name = "{name}"'))
    assert text.startswith("suite.name: must be a folder name")


def test_paths_without_control_characters(tmp_path, registry):
    text = only_problem(tmp_path, registry, BASE.replace("[dataset]\n", '[dataset]\npath = "a\\u2028b"\n'))
    assert text == "dataset.path: must not contain control characters, got 'a\\u2028b'"


def test_synthetic_source_options_out_of_range_are_one_line_errors(tmp_path, capsys):
    from conftest import write_suite
    from zoo_bench import cli

    body = TINY_SUITE.replace("image_size = 32\nval_fraction", "image_size = -1\nval_fraction").replace(
        'backbones = ["mini_cnn"]', 'backbones = ["tiny_cnn"]') + "[strategies.scratch]\n"
    path = write_suite(tmp_path, body)
    assert cli.main(["validate", str(path), "--data-root", str(tmp_path), "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {path}: dataset.image_size: must be between 8 and 1024 for the synthetic source, got -1"


@pytest.mark.parametrize("strategy, body, expected", [
    ("last_layer", "epochs = -1", "strategies.last_layer.epochs: -1 is out of range (allowed: >= 1 and <= 100000)"),
    ("last_n", "n = -2", "strategies.last_n.n: -2 is out of range (allowed: >= 1 and <= 10000)"),
    ("full", 'optimizer = "nadam"', "strategies.full.optimizer: 'nadam' is not allowed (allowed: one of adam, sgd, "
                                    "rmsprop)"),
    ("full", "lr = -5", "strategies.full.lr: -5 is out of range (allowed: > 0)"),
    ("full", "lr = [1e-3, 0.0]", "strategies.full.lr: 0.0 is out of range (allowed: > 0)"),
    ("svm", "C = 0", "strategies.svm.C: 0 is out of range (allowed: > 0 and <= 1000000)"),
    ("last_layer", "dropout = 1.0", "strategies.last_layer.dropout: 1.0 is out of range (allowed: >= 0 and < 1)"),
    ("last_layer", "hidden = [256, 0]", "strategies.last_layer.hidden: 0 is out of range (allowed: each value >= 1 "
                                        "and <= 65536)"),
    ("fpt", 'augment = "rotate"', "strategies.fpt.augment: 'rotate' is not allowed (allowed: one of none, flip)"),
    ("fpt", "patience = -1", "strategies.fpt.patience: -1 is out of range (allowed: >= 0 and <= 100000)"),
    ("last_n", "epochs = 2", "strategies.last_n.epochs: unknown parameter (renamed to 'finetune_epochs')"),
    ("fpt", "momentum = 0.5", "strategies.fpt.momentum: unknown parameter (renamed to 'finetune_momentum')"),
])
def test_strategy_parameters_are_checked_against_their_declared_ranges(tmp_path, registry, strategy, body, expected):
    assert only_problem(tmp_path, registry, TINY_SUITE + f"\n[strategies.{strategy}]\n{body}\n") == expected


def test_old_spellings_of_values_are_accepted_and_replaced(tmp_path, registry):
    suite = parse_suite(write_suite(tmp_path, TINY_SUITE + "\n[strategies.full]\naugment = [true, false]\n"), registry)
    assert suite.strategies["full"]["augment"] == ["flip", "none"]


def test_select_adds_default_search_spaces_only_where_the_suite_set_nothing(tmp_path, registry):
    body = TINY_SUITE + '\n[select]\nsearch = "default"\ntune = ["dropout"]\n[strategies.svm]\n' \
                        "[strategies.full]\nlr = [1e-4, 1e-3]\ndropout = [0.0, 0.5]\n"
    suite = parse_suite(write_suite(tmp_path, body), registry)
    assert suite.strategies["svm"]["C"] == [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0]
    assert suite.strategies["full"]["lr"] == [1e-4, 1e-3]  # the suite's own cap is kept
    assert suite.tuned == {"svm": ("C",), "full": ("dropout", "lr")}
    assert suite.tuned_defaults["full"] == {"dropout": 0.5, "lr": 1e-4} and suite.select_metric == "val_accuracy"


@pytest.mark.parametrize("body, expected", [
    ('[select]\nmetric = "test_accuracy"\n', "select.metric: unknown metric 'test_accuracy' (allowed: val_accuracy, "
                                             "val_loss, val_balanced_accuracy)"),
    ('[select]\nsearch = "random"\n', "select.search: unknown search 'random' (allowed: none, default)"),
    ('[select]\ntune = ["finetune_lr"]\n', "select.tune[0]: 'finetune_lr' is not a parameter of the suite's "
                                           "strategies (allowed: C, pooling, preprocess)"),
])
def test_select_is_checked(tmp_path, registry, body, expected):
    assert only_problem(tmp_path, registry, BASE + body) == expected


@pytest.mark.parametrize("value, expected", [
    ("0", "compare.equivalence: must be more than 0 and at most 100 points, got 0"),
    ("-1.5", "compare.equivalence: must be more than 0 and at most 100 points, got -1.5"),
    ('"1pt"', "compare.equivalence: must be float, got str '1pt'"),
])
def test_equivalence_margin_is_checked(tmp_path, registry, value, expected):
    assert any(line.endswith(expected) for line in problems(tmp_path, registry, BASE + f"[compare]\nequivalence = {value}\n"))
    assert parse_suite(write_suite(tmp_path, BASE + "[compare]\nequivalence = 0.5\n"), registry).raw["compare"] == {
        "equivalence": 0.5}


@pytest.mark.parametrize("select, expected", [
    ("folds = 1", "select.folds: must be 0 (no cross-validation) or 2 to 20, got 1"),
    ("folds = 5\nrepeats = 0", "select.repeats: must be 1 to 10, got 0"),
    ("one_se = true", "select: one_se, fold_pixels and repeats need folds (K-fold selection): set select.folds = 5, say"),
    ("folds = 50", "select.folds: must be 0 (no cross-validation) or 2 to 20, got 50"),
])
def test_k_fold_settings_are_checked(tmp_path, registry, select, expected):
    assert any(line.endswith(expected) for line in problems(tmp_path, registry, BASE + f"[select]\n{select}\n"))


def test_k_fold_needs_as_many_images_per_class_as_folds_and_implies_refit(tmp_path, registry):
    small = BASE.replace("sizes = [", "sizes = [3, ")
    assert any("select.folds: 5 folds need at least 5 images per class; dataset.sizes has 3" in line
               for line in problems(tmp_path, registry, small + "[select]\nfolds = 5\n"))
    suite = parse_suite(write_suite(tmp_path, BASE + "[select]\nfolds = 3\nrepeats = 2\none_se = true\n"), registry)
    assert (suite.folds, suite.repeats, suite.one_se, suite.refit) == (3, 2, True, True)
    assert suite.simpler["svm"] == {"C": "low"}


def test_a_pretrained_strategy_on_a_backbone_without_weights_is_refused_before_anything_runs(tmp_path, registry):
    body = TINY_SUITE.replace('backbones = ["mini_cnn"]', 'backbones = ["mini_cnn", "tiny_cnn"]') + "[strategies.svm]\n"
    with pytest.raises(SuiteError) as err:
        parse_suite(write_suite(tmp_path, body), registry)
    assert str(err.value).endswith(
        "strategies.svm: starts from pretrained weights, but backbone 'tiny_cnn' (torch) has none: train it with a "
        "strategy that does not (scratch), or name the backbones this strategy runs on (strategies.svm.backbones)")
    parse_suite(write_suite(tmp_path, body + 'backbones = ["mini_cnn"]\n[strategies.scratch]\nepochs = 1\n'), registry)
