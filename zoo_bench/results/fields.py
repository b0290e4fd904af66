"""A result row's fields, defined once: the rows a trial writes, the columns of ``load_run``'s table, what
``baseline save`` keeps and the field table of ``results/README.md`` all come from :data:`ROW_FIELDS`.

``python -m zoo_bench.results.fields`` prints the README's table; ``tests/results/test_fields.py`` holds the README,
and the rows of a real run, to it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Fields:
    """One line of the field table: fields that share a type and a meaning."""

    names: tuple[str, ...]
    type: str
    meaning: str  # Markdown, as the README shows it
    baseline: bool = False  # kept by ``zoo-bench baseline save`` (what ``compare`` reads of a baseline)


ROW_FIELDS: tuple[Fields, ...] = (
    Fields(('trial_id',), 'str',
           '`backend/backbone/strategy[param=value,...]/n=SIZE/seed=SEED`, every parameter, sorted: the resume key', baseline=True),
    Fields(('backend', 'backbone', 'strategy'), 'str', 'names as in the suite', baseline=True),
    Fields(('params',), 'object',
           'every strategy parameter as run, defaults included; parameters added after trial ids were in use (the '
           'augmentation terms, `inputs`, `pooling`, ...) appear only where a suite set them away from their '
           'default, like in the trial id, so older runs and baselines keep their ids', baseline=True),
    Fields(('size_per_class',), 'int',
           'images per class drawn from the train part (validation included)', baseline=True),
    Fields(('seed',), 'int', 'seeds the subset draw, the framework RNG and the shuffling', baseline=True),
    Fields(('refit',), 'bool',
           'true for a refit trial (`[select] refit = true`): the configuration chosen on validation, retrained on '
           'the train and validation images of its size and tested; its id ends in `/refit`'),
    Fields(('status',), 'str',
           '`"ok"`; `"diverged"` (the loss became NaN or infinite: a result, kept on resume); `"error"` (retried on '
           'resume)', baseline=True),
    Fields(('error',), 'str or null', 'one line: why the trial failed or diverged', baseline=True),
    Fields(('diverged_epoch',), 'int or null', 'the epoch (from 1, all phases counted) whose loss was not finite'),
    Fields(('batch_size',), 'int',
           "the batch size the trial ran with: the suite's, or less after out-of-memory retries"),
    Fields(('test_accuracy',), 'float', 'accuracy on the whole test part', baseline=True),
    Fields(('test_loss',), 'float or null',
           'mean cross-entropy of the softmax of the test logits (null for `svm`: its margins are not probabilities,'
           ' and for backends without logits)', baseline=True),
    Fields(('test_balanced_accuracy', 'test_macro_f1'), 'float',
           'mean per-class recall, and the unweighted mean of per-class F1 (scikit-learn)', baseline=True),
    Fields(('confusion',), 'list of lists or null',
           "test confusion matrix: row = true class, column = predicted, in `run.json`'s `classes` order; null with "
           'more than 20 classes (then in the side file)'),
    Fields(('per_class_accuracy',), 'list or null', 'test accuracy (recall) of each class, same order and limit'),
    Fields(('cv_scores', 'cv_accuracy'), 'list, float or null',
           "with `[select] folds`: the accuracy on each held-out fold of the size's pool (repeat by repeat) and "
           'their mean; null where the strategy was not cross-validated'),
    Fields(('cv_folds', 'cv_repeats', 'cv_train_s'), 'int, int, float or null',
           'the folds and repeats, and the training time of the fold fits (part of the tuning cost)'),
    Fields(('val_accuracy',), 'float or null',
           'accuracy on the held-out validation images (null with `val_fraction = 0`); with `restore_best`, of the '
           'kept weights', baseline=True),
    Fields(('val_loss', 'val_balanced_accuracy'), 'float or null',
           'the same for validation; what `[select]` may rank by (never a test column)', baseline=True),
    Fields(('history',), 'list',
           'one entry per epoch trained: `epoch` (from 1, across phases), `phase` (`head` or `finetune` for '
           '`last_n`/`fpt`, `train` otherwise), `input` (`features`: cached bottleneck features, `images`: pixels), '
           '`seconds` (the training pass; in a head sweep, its share of the shared pass), `train_loss`, `val_loss`, '
           '`val_accuracy`, `lr`; empty for `svm`'),
    Fields(('best_epoch',), 'int or null',
           'the epoch (from 1, across phases) with the best validation accuracy (ties: lower validation loss, then '
           'earlier); with `restore_best` its weights are the ones tested', baseline=True),
    Fields(('predictions_file',), 'str', "the trial's per-image predictions, relative to the run folder"),
    Fields(('model_dir',), 'str or null',
           'with `run --save-models`: the folder of the trained model, relative to the run folder (read by `zoo-bench '
           'predict`); null otherwise or when it could not be saved'),
    Fields(('activation_maps_file',), 'str or null',
           'with `run --activation-maps N`: the PNG of its Grad-CAM maps, relative to the run folder; null otherwise '
           'or when the backend cannot draw them'),
    Fields(('epochs',), 'int',
           'epochs trained, all phases (0 for `svm`); fewer than asked when `patience` stopped a phase', baseline=True),
    Fields(('epoch_time_s',), 'float or null',
           'median seconds of the training pass of the epochs after the first; of the epochs that train the network '
           "(pixel epochs, or `last_n`'s cut epochs on cached activations) when the strategy has any, else of the "
           'head epochs; validation time excluded', baseline=True),
    Fields(('epoch_seconds',), 'list', 'the seconds of each epoch `epoch_time_s` is the median of, the first included', baseline=True),
    Fields(('first_epoch_s',), 'float or null',
           'the first such epoch alone (graph tracing, cudnn autotune, warm caches show here)', baseline=True),
    Fields(('head_epoch_time_s',), 'float or null',
           'median seconds of a head epoch on cached features (`last_layer`, and the head phase of `last_n`, `fpt`)', baseline=True),
    Fields(('cut',), 'str or null',
           'where `last_n` fine-tuned from cached activations: blocks below the cut / blocks of the base (`"8/9"`); '
           'null where its epochs ran every block on pixels (`cache_cut = false`, augmentation beyond a flip, a timm'
           ' backbone, the keras backend) and for every other strategy'),
    Fields(('cut_time_s',), 'float or null',
           'seconds this trial spent computing activations at the cut (its train images and their mirror images '
           'under a flip, validation and test images not cached by an earlier trial of the backbone in this process)'),
    Fields(('data_wait_fraction',), 'float or null',
           "the share of the epochs' time (those `epoch_time_s` describes) the training loop spent producing "
           'batches: gathering images, copying them to the device, augmenting; torch only'),
    Fields(('feature_time_s',), 'float',
           "seconds this trial spent extracting bottleneck features; 0 when every image's features were cached by an"
           " earlier trial, or on disk by an earlier run or worker (the cache folder's `features/`)", baseline=True),
    Fields(('image_time_s',), 'float',
           "seconds this trial spent loading its images: decoding the files not in the image cache (the cache "
           "folder's `images/`), reading the others back from it; near 0 when an earlier trial of the process had "
           "them in memory"),
    Fields(('train_time_s',), 'float or null',
           'seconds of all training epochs, or of the SVM fit; a head trained in a sweep of k heads (`sweep_heads`) '
           'counts its share, the shared pass divided by the heads in it, so the sum over a sweep is what the sweep '
           'cost'),
    Fields(('sweep_heads',), 'int or null',
           'heads trained together with this one on the same features in one pass per step (torch `last_layer`: the '
           'pending trials of its cell that differ only in head parameters), itself included; 1 when it trained '
           'alone; null where the backend trains heads one at a time (keras) or the strategy has no head sweep'),
    Fields(('train_images_per_s',), 'float or null',
           'training images per second over the epochs `epoch_time_s` describes', baseline=True),
    Fields(('peak_memory_mb',), 'float',
           'peak accelerator memory allocated during the trial on GPU; on CPU the peak resident memory of the '
           'process sampled every 50 ms during the trial (it includes the image and feature caches)', baseline=True),
    Fields(('peak_memory_kind',), 'str', '`accelerator` or `process_rss`'),
    Fields(('latency_ms', 'throughput_ips'), 'float or null',
           'the trained model as deployed (LoRA merged; `vpt` with its prompts; a probe: its base\'s features): '
           'milliseconds to predict one image (median of 20 after 3 untimed) and images per second in batches of '
           "the suite's size, on the trial's device and precision; measured once per architecture (backbone, image "
           "size, head, pooling, classes, and `vpt`'s prompts) in the process and shared by its trials; null with "
           '`[run] inference_cost = false`'),
    Fields(('multiply_adds',), 'int or null',
           "multiply-adds of one image's forward pass (torch: `FlopCounterMode` FLOPs / 2); null where the backend "
           'cannot count them'),
    Fields(('model_mb', 'delta_mb'), 'float or null',
           'MB (10^6 bytes) of the deployable model as saved (base and head, or base and probe), and of what '
           'training changed (the trainable parameters at 4 bytes: everything for `full`, biases and head for '
           '`bitfit`)'),
    Fields(('trainable_params', 'total_params'), 'int',
           "parameters trained / in the whole model (base + head; for `svm`, the SVM's weights)", baseline=True),
    Fields(('skipped_images',), 'int',
           "unreadable or corrupt files skipped among this trial's train, validation and test images"),
    Fields(('train_images', 'val_images', 'test_images'), 'int', 'images actually used'),
    Fields(('augmentation',), 'str',
           'what the training pixels went through, e.g. `flip, rotation=40, zoom=0.2` (`none` for strategies trained'
           " on cached features); the terms and their meanings are the README's augmentation vocabulary, and each "
           'non-default term is also in `params` and the trial id'),
    Fields(('image_size',), 'int', 'input size in pixels (square)', baseline=True),
    Fields(('crop_pct',), 'float',
           'the resize before the centre crop: shorter side to `floor(image_size / crop_pct)` (1.0: to `image_size`;'
           " timm backbones: their pretrained config's)"),
    Fields(('crop_mode',), 'str',
           '`center` (shorter side resized, centre square), `squash` (both sides resized, aspect not kept) or '
           "`border` (longer side resized, padded with the mean colour): timm's eval crop modes"),
    Fields(('interpolation',), 'str', 'the resize filter (`bilinear`, `bicubic`, ...)'),
    Fields(('mean', 'std'), 'list[float]', 'per-channel normalisation of [0, 1] pixels the backbone was given'),
    Fields(('weights',), 'str',
           'the weights the trial started from (`timm:ARCH.TAG`, `torchvision:IMAGENET1K_V2`, ...); `none` for '
           'random initialisation (`scratch`)'),
    Fields(('device', 'device_name'), 'str', "`cpu`, `cuda` or `mps`, and the device's name", baseline=True),
    Fields(('precision',), 'str', '`fp32` or `bf16` (autocast)', baseline=True),
    Fields(('backend_settings',), 'object', 'e.g. `autocast`, `channels_last`, `cudnn_benchmark`, `threads`'),
    Fields(('worker_threads',), 'int or null',
           'CPU threads of the worker process that ran the trial, where a CPU pool split the cores (`--workers N`); '
           "null when the frameworks' defaults applied. `compare` treats different values as different machines for "
           'timing', baseline=True),
    Fields(('wall_s',), 'float', 'seconds the whole trial took, decoding and evaluation included (and, for the first trial of an architecture, measuring its inference cost)', baseline=True),
    Fields(('finished_at',), 'str', 'ISO time'),
)

NAMES: tuple[str, ...] = tuple(name for line in ROW_FIELDS for name in line.names)
BASELINE_FIELDS: tuple[str, ...] = tuple(name for line in ROW_FIELDS if line.baseline for name in line.names)
BASELINE_ONLY: tuple[str, ...] = ("test_correct",)  # a baseline trial's compact per-image correctness (correctness.py)


def blank_row() -> dict[str, Any]:
    """Every field, None: the start of each row a trial writes, so every row has every field."""
    return dict.fromkeys(NAMES)


def markdown_table() -> str:
    """The field table of ``results/README.md``."""
    lines = ["| field | type | meaning |", "| --- | --- | --- |"]
    lines += [f"| {', '.join(f'`{n}`' for n in line.names)} | {line.type} | {line.meaning} |" for line in ROW_FIELDS]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
