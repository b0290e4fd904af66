"""MLflow tracking: a zoo-bench run as one MLflow run, each trial as a run nested in it.

The run folder stays the source of truth: MLflow gets a copy, written by the driver only, after each row
is on disk (no SQLite writers race from workers), and ``zoo-bench mlflow RUN_DIR`` copies a finished folder
afterwards. The experiment is the suite's name; the parent run is tagged ``zoo_bench.run`` (suite/run id),
so a resumed run continues its parent; each trial's run is tagged ``zoo_bench.trial_id`` and
``zoo_bench.finished_at``, so exporting again logs only what is new (a retried trial replaces its run).

Per trial: its parameters (strategy parameters, backend, backbone, strategy, size, seed), its final
numbers as metrics, its per-epoch history as stepped metrics (``history/train_loss``, ...), the row as
``row.json``, the confusion matrix, the predictions file and, with ``--save-models``, the saved model as
artifacts. Per run: suite, machine and versions as parameters and tags; ``run.json``, the table file,
``evidence.json`` and the printed tables as artifacts.

The default store is ``sqlite:///RESULTS/mlflow.db`` (MLflow's own default kind since 3.7; its file store
is deprecated), artifacts in ``RESULTS/mlartifacts``. MLflow missing or its store unreachable costs one
line; the benchmark itself runs and saves regardless.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Callable

from ..errors import ZooBenchError, one_line
from ..plan.trial import format_value
from ..results.store import RunStore

INSTALL = "pip install 'zoo-bench[mlflow]'"
DB_NAME = "mlflow.db"
ARTIFACTS = "mlartifacts"
RUN_TAG, TRIAL_TAG, FINISHED_TAG = "zoo_bench.run", "zoo_bench.trial_id", "zoo_bench.finished_at"
PARENT_TAG = "mlflow.parentRunId"
ROW_PARAMS = ("backend", "backbone", "strategy", "size_per_class", "seed", "refit")
NOT_METRICS = {"seed", "size_per_class", "refit", "diverged_epoch", "cv_folds", "cv_repeats"}  # numbers, not results
HISTORY = ("train_loss", "val_loss", "val_accuracy", "seconds", "lr")


def default_uri(results_dir: Path) -> str:
    """SQLite in the results folder: one store for every suite and run kept there."""
    return f"sqlite:///{(Path(results_dir) / DB_NAME).resolve()}"


def _mlflow() -> Any:
    try:
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise ZooBenchError(f"mlflow is not installed here ({exc}); install it with: {INSTALL}") from None
    if logging.getLogger("mlflow").level == logging.NOTSET:  # its INFO lines (creating tables) would interleave
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # with the progress lines; a user's setting stands
    return MlflowClient


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


class Tracker:
    """One zoo-bench run in an MLflow store: its parent run, and a nested run per trial."""

    def __init__(self, uri: str, run_dir: Path, label: Callable[[dict[str, Any]], str] | None = None):
        """``label`` names a trial's MLflow run from its row (the progress lines' short label); by default
        its trial id."""
        client_cls = _mlflow()
        self.uri, self.run_dir = uri, Path(run_dir)
        self.label = label or (lambda row: row["trial_id"])
        self.meta = RunStore(self.run_dir).meta()
        name = self.meta.get("suite_name") or self.run_dir.parent.name
        run_key = f"{name}/{self.meta.get('run_id') or self.run_dir.name}"
        try:
            self.client = client_cls(tracking_uri=uri)
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                location = None
                if uri.startswith("sqlite:///"):  # artifacts beside the database, not in the working directory
                    location = (Path(uri[len("sqlite:///"):]).parent / ARTIFACTS).resolve().as_uri()
                experiment_id = self.client.create_experiment(name, artifact_location=location)
            else:
                experiment_id = experiment.experiment_id
            self.experiment_id = experiment_id
            found = self.client.search_runs([experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{_quoted(run_key)}'",
                                            max_results=1)
            if found:
                self.parent = found[0].info.run_id
                self.client.update_run(self.parent, status="RUNNING")
            else:
                self.parent = self.client.create_run(experiment_id, run_name=run_key, tags={
                    RUN_TAG: run_key, "zoo_bench.run_dir": str(self.run_dir.resolve())}).info.run_id
                self._log_run_info()
            self.logged = self._children()
        except ZooBenchError:
            raise
        except Exception as exc:  # an unreachable server, a locked or foreign database
            raise ZooBenchError(f"MLflow store {uri}: {one_line(exc)}") from None

    # -- the parent run ---------------------------------------------------------------------------
    def _log_run_info(self) -> None:
        from mlflow.entities import Param, RunTag

        meta = self.meta
        suite = meta.get("suite") or {}
        params = {"suite": meta.get("suite_name"), "run_id": meta.get("run_id"), "profile": meta.get("profile"),
                  "trials": meta.get("trials"), "seeds": (suite.get("suite") or {}).get("seeds"),
                  "sizes": (suite.get("dataset") or {}).get("sizes"),
                  "backends": (suite.get("run") or {}).get("backends"),
                  "backbones": (suite.get("run") or {}).get("backbones"),
                  "strategies": sorted(suite.get("strategies") or {}), "classes": len(meta.get("classes") or [])}
        tags = {"platform": meta.get("platform"), "cpu_count": meta.get("cpu_count"),
                "git_commit": meta.get("git_commit"), "suite_file": meta.get("suite_file"),
                **{f"version.{k}": v for k, v in (meta.get("versions") or {}).items()},
                **{f"device.{k}": v.get("name") for k, v in (meta.get("devices") or {}).items()}}
        self.client.log_batch(self.parent,
                              params=[Param(k, _text(v)) for k, v in params.items() if v is not None],
                              tags=[RunTag(k, _text(v)) for k, v in tags.items() if v is not None])
        self.client.log_artifact(self.parent, str(self.run_dir / "run.json"))

    def finish(self, tables: str | None = None, status: str = "FINISHED") -> None:
        """The run's files and printed tables as the parent's artifacts; the parent ends with ``status``."""
        for name in ("trials.parquet", "trials.csv", "evidence.json"):
            if (self.run_dir / name).exists():
                self.client.log_artifact(self.parent, str(self.run_dir / name))
        if tables:
            self.client.log_text(self.parent, tables, "tables.md")
        self.client.set_terminated(self.parent, status)

    # -- trials -----------------------------------------------------------------------------------
    def _children(self) -> dict[str, tuple[str, str]]:
        """trial id -> (MLflow run id, finished_at) of the trials already logged under the parent."""
        found: dict[str, tuple[str, str]] = {}
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{self.parent}'",
                                           max_results=1000, page_token=token)
            for run in page:
                tags = run.data.tags
                if TRIAL_TAG in tags:
                    found[tags[TRIAL_TAG]] = (run.info.run_id, tags.get(FINISHED_TAG, ""))
            token = page.token
            if not token:
                return found

    def log_row(self, row: dict[str, Any]) -> bool:
        """Log one finished trial under the parent, unless this very row is there already (True if logged)."""
        from mlflow.entities import Metric, Param, RunTag

        trial_id, finished = row["trial_id"], str(row.get("finished_at") or "")
        earlier = self.logged.get(trial_id)
        if earlier is not None and earlier[1] == finished:
            return False
        if earlier is not None:  # a retried trial: its last row is the one that counts, as in the run folder
            self.client.delete_run(earlier[0])
        name = self.label(row)
        run_id = self.client.create_run(self.experiment_id, run_name=name if len(name) <= 250 else name[:247] + "...", tags={
            PARENT_TAG: self.parent, TRIAL_TAG: trial_id, FINISHED_TAG: finished, "status": str(row.get("status"))},
        ).info.run_id
        params = {k: row.get(k) for k in ROW_PARAMS}
        params.update({f"param.{k}": v for k, v in (row.get("params") or {}).items()})
        stamp = 0
        metrics = [Metric(k, v, stamp, 0) for k, v in ((k, _number(row[k])) for k in row if k not in NOT_METRICS)
                   if v is not None]
        for entry in row.get("history") or []:
            step = int(entry.get("epoch") or 0)
            metrics += [Metric(f"history/{k}", v, stamp, step) for k, v in ((k, _number(entry.get(k))) for k in HISTORY)
                        if v is not None]
        items = [Param(k, _text(v)) for k, v in params.items() if v is not None]
        for start in range(0, max(len(items), len(metrics)), 100):  # MLflow takes up to 100 params a batch
            self.client.log_batch(run_id, params=items[start:start + 100], metrics=metrics[start:start + 100],
                                  tags=[RunTag("error", _text(row["error"]))] if start == 0 and row.get("error") else [])
        self.client.log_text(run_id, json.dumps(row, indent=1, default=str), "row.json")
        if row.get("confusion"):
            self.client.log_dict(run_id, {"classes": self.meta.get("classes"), "confusion": row["confusion"]},
                                 "confusion.json")
        for key, folder in (("predictions_file", "predictions"), ("activation_maps_file", "activation_maps")):
            if row.get(key) and (self.run_dir / row[key]).exists():
                self.client.log_artifact(run_id, str(self.run_dir / row[key]), folder)
        if row.get("model_dir") and (self.run_dir / row["model_dir"]).is_dir():
            self.client.log_artifacts(run_id, str(self.run_dir / row["model_dir"]), "model")
        self.client.set_terminated(run_id, "FINISHED" if row.get("status") == "ok" else "FAILED")
        self.logged[trial_id] = (run_id, finished)
        return True

    def sync(self) -> int:
        """Log every row of the run folder not logged yet (the last row per trial); how many were logged."""
        return sum(self.log_row(row) for row in RunStore(self.run_dir).rows())


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else format_value(value) if not isinstance(value, dict) else json.dumps(value)
    return text if len(text) <= 6000 else text[:5997] + "..."  # MLflow's limit on a parameter's value


class TrackingReporter:
    """A reporter that logs each finished trial to MLflow after the driver has written its row, and passes
    everything on to ``inner``. A failure of the store costs one line and ends tracking; the run goes on."""

    def __init__(self, inner: Any, tracker: Tracker, warn: Callable[[str], None]):
        self.inner, self.tracker, self.warn = inner, tracker, warn

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def trial_finished(self, trial: Any, row: dict[str, Any]) -> None:
        self.inner.trial_finished(trial, row)
        if self.tracker is None:
            return
        try:
            self.tracker.log_row(row)
        except Exception as exc:
            self.warn(f"MLflow: tracking stopped, the run goes on ({one_line(exc)}); log it afterwards with: "
                      f"zoo-bench mlflow {self.tracker.run_dir} {self.tracker.uri}")
            self.tracker = None


def export(run_dir: Path, uri: str, tables: str | None = None,
           label: Callable[[dict[str, Any]], str] | None = None) -> tuple[Tracker, int]:
    """Copy a run folder to MLflow (``zoo-bench mlflow``): the trials not logged yet; the tracker and how many."""
    if not (Path(run_dir) / "run.json").exists():
        raise ZooBenchError(f"{run_dir}: not a zoo-bench run folder (no run.json)")
    tracker = Tracker(uri, run_dir, label)
    logged = tracker.sync()
    tracker.finish(tables)
    return tracker, logged


__all__ = ["Tracker", "TrackingReporter", "default_uri", "export"]

