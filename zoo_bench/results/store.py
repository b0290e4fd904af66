"""Results on disk: ``run.json``, ``trials.jsonl`` appended per trial, and a table for pandas.

Durability: a row is one ``write`` of one line followed by ``fsync``; a line cut short by a kill or
power loss is cut off the file before the next append; ``run.json`` and the table are replaced
atomically (temporary file, fsync, rename). A lock on the run folder stops two runs writing it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import signal
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import UsageError
from ..plan.trial import strategy_label
from .fields import NAMES

COLUMNS = list(NAMES)  # every documented field, in the order results/README.md lists them


FINISHED = ("ok", "diverged")  # final outcomes, skipped on resume; "error" rows are retried


def new_run_id() -> str:
    """A time-stamped run id, sortable: ``20261122-101500``."""
    return datetime.now().strftime("%Y%m%d-%H%M%S")


class RunStore:
    """One run folder. Rows are appended and flushed as each trial ends, so a crash loses none."""

    def __init__(self, run_dir: Path | str):
        self.run_dir = Path(run_dir)  # a str from a notebook works too
        self.jsonl = self.run_dir / "trials.jsonl"

    def write_meta(self, meta: dict[str, Any]) -> None:
        """Write ``run.json`` (kept from the first start; later resumes are appended to ``resumes``)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / "run.json"
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):  # damaged by hand or disk: keep it aside
                os.replace(path, path.with_name("run.json.damaged"))
            else:
                old.setdefault("resumes", []).append({"started_at": meta["started_at"],
                                                      "versions": meta.get("versions"),
                                                      **({"providers": meta["providers"]} if "providers" in meta else {})})
                meta = old
        atomic_write(path, (json.dumps(meta, indent=2, default=str) + "\n").encode())

    def lock(self) -> None:
        """Hold the run folder for this process (released by the kernel when the process dies).

        Raises:
            UsageError: another live process holds it.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fh = open(self.run_dir / ".lock", "a+")
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_fh.seek(0)
            holder = self._lock_fh.read().strip() or "unknown"
            raise UsageError(f"{self.run_dir}: another zoo-bench run (pid {holder}) is writing this run folder") from None
        self._lock_fh.seek(0)
        self._lock_fh.truncate()
        self._lock_fh.write(str(os.getpid()))
        self._lock_fh.flush()

    def unlock(self) -> None:
        """Let go of the run folder (the process's end does it too)."""
        fh = getattr(self, "_lock_fh", None)
        if fh is not None:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
            self._lock_fh = None

    def heal(self) -> int:
        """Cut off a last line left unfinished by a kill mid-write; return the bytes removed."""
        if not self.jsonl.exists():
            return 0
        with open(self.jsonl, "r+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) == b"\n":
                return 0
            keep = size
            while keep > 0:  # walk back to the last complete line
                step = min(65536, keep)
                fh.seek(keep - step)
                chunk = fh.read(step)
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    keep = keep - step + cut + 1
                    break
                keep -= step
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
            return size - keep

    def append(self, row: dict[str, Any]) -> None:
        """Append one trial row and make it durable before returning (Ctrl-C waits for it)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        data = (json.dumps(_plain(row), default=_json_default, allow_nan=False) + "\n").encode()
        with _sigint_deferred(), open(self.jsonl, "ab") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    def rows(self) -> list[dict[str, Any]]:
        """The latest row per trial id (a retried trial replaces its earlier error), in file order."""
        if not self.jsonl.exists():
            return []
        latest: dict[str, dict[str, Any]] = {}
        with open(self.jsonl) as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a crash mid-write
                    continue
                latest.pop(row["trial_id"], None)
                latest[row["trial_id"]] = row
        return list(latest.values())

    def finished_ids(self) -> set[str]:
        """Trials with a final outcome (ok or diverged): skipped on resume; errors are retried."""
        return {r["trial_id"] for r in self.rows() if r.get("status") in FINISHED}

    def meta(self) -> dict[str, Any]:
        path = self.run_dir / "run.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def write_table(self, df: pd.DataFrame | None = None) -> Path:
        """``trials.parquet`` (``trials.csv`` where pyarrow is missing); params as a JSON string.

        ``df``: the run's rows already loaded (:func:`load_run`), to read the file once.
        """
        flat = (to_dataframe(self.rows()) if df is None else df).copy()
        flat["params"] = flat["params"].map(lambda p: json.dumps(p, sort_keys=True))
        try:
            path, data = self.run_dir / "trials.parquet", flat.to_parquet(index=False)
        except ImportError:
            path, data = self.run_dir / "trials.csv", flat.to_csv(index=False).encode()
        atomic_write(path, data)
        return path


def to_dataframe(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with every documented column present."""
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = None
    return df[COLUMNS + [c for c in df.columns if c not in COLUMNS]]


def row_labels(df: pd.DataFrame) -> list[str]:
    """Each row's strategy with only the parameters that vary between its trials: the table's row name."""
    varying: dict[str, set[str]] = {}
    for strategy, group in df.groupby("strategy"):
        params = list(group["params"])
        varying[strategy] = {k for k in {k for p in params for k in p} if len({repr(p.get(k)) for p in params}) > 1}
    return [strategy_label(s, {k: v for k, v in p.items() if k in varying[s]})
            for s, p in zip(df["strategy"], df["params"])]


def load_run(run_dir: Path | str) -> pd.DataFrame:
    """A run folder's trials as a DataFrame (from the jsonl, so it works mid-run too), in suite order."""
    store = RunStore(run_dir)
    return in_suite_order(to_dataframe(store.rows()), store.meta().get("suite") or {})


def in_suite_order(df: pd.DataFrame, suite: dict[str, Any]) -> pd.DataFrame:
    """Rows in the suite's order of backends, backbones and strategies, then size and seed.

    The file holds trials in the order they finished, which parallel executors shuffle; tables and
    plots follow the suite instead. Values the suite does not name keep their order, after the rest.
    """
    if df.empty:
        return df
    run = suite.get("run") if isinstance(suite.get("run"), dict) else {}
    strategies = suite.get("strategies") if isinstance(suite.get("strategies"), dict) else {}
    orders = {"backend": run.get("backends") or [], "backbone": run.get("backbones") or [],
              "strategy": list(strategies)}
    keys = {}
    for column, names in orders.items():
        if column in df and isinstance(names, list):
            rank = {name: i for i, name in enumerate(names) if isinstance(name, str)}
            keys[f"_order_{column}"] = df[column].map(rank).fillna(len(rank))
    for column in ("size_per_class", "seed"):
        if column in df:
            keys[f"_order_{column}"] = df[column]
    if not keys:
        return df
    return df.assign(**keys).sort_values(list(keys), kind="stable").drop(columns=list(keys)).reset_index(drop=True)


def atomic_write(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old or the new content, never a part (rename is atomic)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _sigint_deferred():
    """Hold SIGINT (Ctrl-C) while a row is written, so an interrupt never cuts a line in half."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _plain(value: Any) -> Any:
    """Non-finite floats become null: strict JSON, readable by every tool."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # NumPy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    return str(value)
