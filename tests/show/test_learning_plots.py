"""Learning curves, cost and confusion plots, confusion tables, and the report, from hand-built rows."""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from rich.console import Console

from zoo_bench.show.confusion import confusion_for, confusion_table
from zoo_bench.show.document import write_report
from zoo_bench.show.plots import (confusion_configurations, confusion_plot, cost_plot, finetune_starts, history_of,
                             learning_curves_plot, matrix_of, plot_run)
from zoo_bench.results.store import to_dataframe

CLASSES = ["cat", "dog", "[bold]fox"]


def history(strategy: str, seed: int, size: int = 4, epochs: int = 4, head: int = 2) -> list[dict[str, Any]]:
    """Per-epoch records as the runner writes them: head then fine-tune epochs for two-phase strategies."""
    out = []
    for i in range(epochs):
        phase = "train" if strategy == "last_layer" else ("head" if i < head else "finetune")
        out.append({"epoch": i + 1, "phase": phase, "input": "features" if phase == "head" else "images",
                    "seconds": 1.0 + i, "train_loss": (1.2 - 0.03 * size) / (i + 1) + 0.05 * seed,
                    "val_loss": 1.3 / (i + 1), "val_accuracy": min(0.95, 0.3 + 0.02 * size + 0.4 * i / epochs)
                    - 0.02 * seed, "lr": 1e-3})
    return out


def row(strategy: str, size: int, seed: int, **extra: Any) -> dict[str, Any]:
    params = {"epochs": 4, "head_epochs": 2} if strategy == "last_n" else {"epochs": 4}
    inner = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    base = {"trial_id": f"torch/mini/{strategy}[{inner}]/n={size}/seed={seed}", "backend": "torch",
            "backbone": "mini", "strategy": strategy, "params": params, "size_per_class": size, "seed": seed,
            "status": "ok", "test_accuracy": (0.58 if strategy == "last_n" else 0.5) + 0.03 * seed + size / 100,
            "epoch_time_s": 0.5, "train_time_s": (2.0 if strategy == "last_layer" else 9.0) * size / 4 + seed,
            "feature_time_s": 1.0, "wall_s": 10.0 + size}
    return {**base, **extra}


def full_rows() -> list[dict[str, Any]]:
    rows = []
    for strategy in ("last_layer", "last_n"):
        for size in (4, 8):
            for seed in (0, 1):
                matrix = [[size - 1, 1, 0], [0, size, 0], [1, 1, size - 2 - seed]]
                rows.append(row(strategy, size, seed, history=history(strategy, seed, size),
                                best_epoch=3 + seed, confusion=matrix))
    rows.append(row("svm", 4, 0, history=[], best_epoch=None, confusion=[[3, 1, 0], [0, 4, 0], [0, 0, 4]]))
    return rows


@pytest.fixture()
def df():
    return to_dataframe(full_rows())


@pytest.fixture()
def old_df():
    """A run from before per-epoch history and confusion matrices were recorded."""
    rows = [{k: v for k, v in r.items() if k not in ("history", "best_epoch", "confusion")} for r in full_rows()]
    return to_dataframe(rows)


@pytest.fixture()
def failed_df():
    rows = [row(s, 4, seed, status="error", error="boom", test_accuracy=None, train_time_s=None,
                history=None, confusion=None) for s in ("last_layer", "last_n") for seed in (0, 1)]
    return to_dataframe(rows)


def is_png(path: Path) -> bool:
    with Image.open(path) as img:
        return img.format == "PNG" and img.size[0] > 300 and img.size[1] > 200


def test_learning_curves_written(df, tmp_path):
    path = learning_curves_plot(df, tmp_path / "lc.png", "t")
    assert path == tmp_path / "lc.png" and is_png(path)


def test_learning_curves_none_without_history(old_df, failed_df, df, tmp_path):
    assert learning_curves_plot(old_df, tmp_path / "a.png", "t") is None
    assert learning_curves_plot(failed_df, tmp_path / "b.png", "t") is None
    only_svm = df[df["strategy"] == "svm"]
    assert learning_curves_plot(only_svm, tmp_path / "c.png", "t") is None
    nan_history = old_df.assign(history=float("nan"))
    assert learning_curves_plot(nan_history, tmp_path / "d.png", "t") is None
    assert not list(tmp_path.iterdir())


def test_learning_curves_seeds_of_different_length(df, tmp_path):
    df = df.copy()
    df.at[0, "history"] = df.at[0, "history"][:2]  # one seed stopped early
    assert is_png(learning_curves_plot(df, tmp_path / "lc.png", "t"))


def test_learning_curves_without_validation_and_capped(tmp_path):
    rows = []
    for size in range(1, 15):  # 14 configurations: more than one figure shows
        h = history("last_n", 0, size)
        for e in h:
            e["val_accuracy"] = e["val_loss"] = None
        rows.append(row("last_n", size, 0, history=h, best_epoch=None))
    df = to_dataframe(rows)
    df["params"] = [{"epochs": 4, "lr": s} for s in range(1, 15)]  # one panel per configuration
    assert is_png(learning_curves_plot(df, tmp_path / "lc.png", "t"))


def test_finetune_starts():
    assert finetune_starts(history("last_n", 0, head=2)) == [2.5]
    assert finetune_starts(history("last_n", 0, head=0)) == []  # fine-tune only
    assert finetune_starts(history("last_layer", 0)) == []
    assert finetune_starts([]) == []


def test_cost_plot_and_none(df, old_df, failed_df, tmp_path):
    assert is_png(cost_plot(df, tmp_path / "cost.png", "t"))
    assert is_png(cost_plot(old_df.assign(train_time_s=None), tmp_path / "wall.png", "t"))  # wall_s instead
    assert cost_plot(failed_df, tmp_path / "none.png", "t") is None
    assert not (tmp_path / "none.png").exists()


def test_confusion_plot(tmp_path):
    assert is_png(confusion_plot([[5, 1, 0], [0, 6, 0], [2, 0, 4]], CLASSES, tmp_path / "c.png", "t"))
    many = [f"class number {i}" for i in range(20)]
    matrix = [[10 if i == j else (1 if j == (i + 1) % 20 else 0) for j in range(20)] for i in range(20)]
    assert is_png(confusion_plot(matrix, many, tmp_path / "many.png", "t"))
    assert is_png(confusion_plot([[0, 0], [3, 1]], ["a", "b"], tmp_path / "empty_row.png", "t"))


def test_plot_run_writes_every_plot(df, tmp_path):
    paths = plot_run(df, tmp_path, "t", CLASSES)
    names = [p.name for p in paths]
    assert names[:4] == ["accuracy.png", "epoch_time.png", "learning_curves.png", "cost.png"]
    assert sorted(names[4:]) == [f"confusion_{k}.png" for k in range(1, 6)]  # 2 strategies x 2 sizes + svm
    assert all(is_png(p) for p in paths)


def test_plot_run_without_classes_or_new_columns(df, old_df, failed_df, tmp_path):
    assert [p.name for p in plot_run(df, tmp_path / "a", "t")] == [
        "accuracy.png", "epoch_time.png", "learning_curves.png", "cost.png"]
    assert [p.name for p in plot_run(old_df, tmp_path / "b", "t", CLASSES)] == [
        "accuracy.png", "epoch_time.png", "cost.png"]
    assert plot_run(failed_df, tmp_path / "c", "t", CLASSES) == []


def test_confusion_summed_over_seeds(df):
    configs = confusion_configurations(df, CLASSES)
    assert len(configs) == 5
    group = next(c for c in configs if c.config == "torch/mini/last_n[epochs=4,head_epochs=2]/n=8")
    assert group.seeds == 2 and group.name == "torch/mini/last_n/n=8"  # parameters that never vary left out
    assert group.matrix == [[14, 2, 0], [0, 16, 0], [2, 2, 11]]  # seed 0 has 6 right in the last row, seed 1 has 5
    assert confusion_configurations(df, ["just", "two"]) == []  # a matrix of another size cannot be named
    assert confusion_configurations(df, None) == []


def test_confusion_configurations_capped(tmp_path):
    rows = [row("last_layer", size, 0, confusion=[[1, 0], [0, 1]]) for size in range(1, 16)]
    df = to_dataframe(rows)
    groups = confusion_configurations(df, ["a", "b"])
    assert [g.name for g in groups] == [f"torch/mini/last_layer/n={n}" for n in range(1, 13)]  # n=2 before n=10
    assert len([p for p in plot_run(df, tmp_path, "t", ["a", "b"]) if p.stem.startswith("confusion_")]) == 12


def render(table) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(table)
    return console.export_text()


def test_confusion_table_numbers():
    text = render(confusion_table([[5, 1, 0], [0, 6, 0], [2, 0, 2]], CLASSES, "trial [x]"))
    lines = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
             for line in text.splitlines() if line.count("│") > 3}
    assert lines["cat"] == ["5", "1", "0", "6", "83.3%"]
    assert lines["dog"] == ["0", "6", "0", "6", "100.0%"]
    assert lines["[bold]fox"] == ["2", "0", "2", "4", "50.0%"]  # markup in a class name shown as written
    assert lines["predicted total"] == ["7", "7", "2", "16", ""]
    assert "overall accuracy 81.2% (13/16 images)" in text and "trial [x]" in text


def test_confusion_table_empty_row():
    text = render(confusion_table([[0, 0], [1, 3]], ["a", "b"], "t"))
    assert re.search(r"│ a\s+│\s+0 │\s+0 │\s+0 │\s+- │", text)
    assert "75.0% (3/4 images)" in text


def test_confusion_for_patterns(df, old_df):
    everything = confusion_for(df, "*")
    assert len(everything) == 9
    last_n = confusion_for(df, "*/last_n*/n=8/*")
    assert [t for t, _ in last_n] == ["torch/mini/last_n[epochs=4,head_epochs=2]/n=8/seed=0",
                                      "torch/mini/last_n[epochs=4,head_epochs=2]/n=8/seed=1"]
    assert last_n[1][1] == [[7, 1, 0], [0, 8, 0], [1, 1, 5]]
    exact = "torch/mini/last_layer[epochs=4]/n=4/seed=1"
    assert [t for t, _ in confusion_for(df, exact)] == [exact]  # brackets in an id taken as written
    assert confusion_for(df, "*/SVM/*") == []  # case matters
    assert confusion_for(old_df, "*") == []


def test_cells_from_other_storage():
    import numpy as np

    assert matrix_of(np.array([np.array([1, 2]), np.array([3, 4])], dtype=object)) == [[1, 2], [3, 4]]
    assert matrix_of("[[1, 0], [0, 1]]") == [[1, 0], [0, 1]]
    assert matrix_of([[1, 2, 3], [4, 5]]) is None and matrix_of(float("nan")) is None
    assert history_of(None) == [] and history_of(float("nan")) == []
    assert history_of(np.array([{"epoch": 1}], dtype=object)) == [{"epoch": 1}]


def images_in(text: str) -> int:
    return text.count("data:image/png;base64,")


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_report_embeds_new_plots(df, tmp_path, fmt):
    out = write_report(df, {"suite_name": "s", "run_id": "r", "classes": CLASSES}, tmp_path / f"r.{fmt}", fmt)
    text = html.unescape(out.read_text())
    assert images_in(text) == 4 + 5
    for heading in ("Learning curves", "Accuracy against training cost", "Confusion matrices"):
        assert heading in text
    assert text.index("Confusion matrices") < text.index("Machine and packages")
    assert "Summed over 2 seeds" in text


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_report_of_old_and_failed_runs(old_df, failed_df, tmp_path, fmt):
    text = write_report(old_df, {"suite_name": "s"}, tmp_path / f"old.{fmt}", fmt).read_text()
    assert images_in(text) == 3 and "Learning curves" not in text and "Confusion matrices" not in text
    text = write_report(failed_df, {"suite_name": "s", "classes": CLASSES}, tmp_path / f"f.{fmt}", fmt).read_text()
    assert images_in(text) == 0 and "4 failed" in text
