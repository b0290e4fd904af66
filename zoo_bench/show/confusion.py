"""Confusion matrices as terminal tables, and picking them out of a run by trial id pattern."""
from __future__ import annotations

import fnmatch

import pandas as pd
from rich.markup import escape
from rich.table import Table

from .plots import matrix_of


def confusion_table(matrix: list[list[int]], classes: list[str], title: str) -> Table:
    """Counts with row totals and per-class accuracy: which classes a model confuses, in the terminal.

    Rows are true classes, columns predicted ones; the diagonal (correct) is bold. Class names are
    escaped, so a name like ``[red]`` is shown as written rather than read as markup.
    """
    n = len(matrix)
    names = [str(c) for c in classes] if len(classes) == n else [str(i) for i in range(n)]
    table = Table(title=escape(title))
    table.add_column("true \\ predicted", style="bold")
    for name in names:
        table.add_column(escape(name), justify="right")
    table.add_column("total", justify="right")
    table.add_column("accuracy", justify="right")
    correct = 0
    for i, (name, row) in enumerate(zip(names, matrix)):
        total = sum(row)
        correct += row[i]
        cells = [f"[bold]{c}[/bold]" if j == i else str(c) for j, c in enumerate(row)]
        table.add_row(escape(name), *cells, str(total), f"{row[i] / total:.1%}" if total else "-")
    columns = [sum(row[j] for row in matrix) for j in range(n)]
    grand = sum(columns)
    table.add_section()
    table.add_row("predicted total", *map(str, columns), str(grand), "")
    table.caption = (f"overall accuracy {correct / grand:.1%} ({correct}/{grand} images)" if grand
                     else "no images")
    return table


def confusion_for(df: pd.DataFrame, pattern: str) -> list[tuple[str, list[list[int]]]]:
    """(trial_id, matrix) of the rows whose id matches a shell pattern and that have a confusion matrix.

    An id is also matched as written: its ``[param=...]`` part would otherwise read as a character class.
    """
    if "confusion" not in df.columns:
        return []
    found: list[tuple[str, list[list[int]]]] = []
    for trial_id, value in zip(df["trial_id"], df["confusion"]):
        trial_id = str(trial_id)
        if trial_id != pattern and not fnmatch.fnmatchcase(trial_id, pattern):
            continue
        matrix = matrix_of(value)
        if matrix is not None:
            found.append((trial_id, matrix))
    return found
