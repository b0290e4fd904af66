"""MLflow tracking (zoo_bench.show.tracking) with the real MLflow and a real SQLite store, read back through
MLflow's own client: a parent run per zoo-bench run, a nested run per trial, no duplicates on export."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO, lite0_suite, write_suite
from zoo_bench import cli

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

SUITE = lite0_suite("tracked", "[strategies.svm]\nC = [0.1, 1.0]\n[strategies.last_layer]\nepochs = 2\n",
                    seeds=(0, 1))


@pytest.fixture(scope="session")
def store_uri(tmp_path_factory) -> str:
    """One SQLite store for the session: creating one (MLflow's migrations) costs seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def zb(*args) -> int:
    return cli.main([str(a) for a in args])


def children(client: MlflowClient, parent) -> list:
    return client.search_runs([parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")


def parent_of(client: MlflowClient, experiment: str, key: str):
    exp = client.get_experiment_by_name(experiment)
    [parent] = client.search_runs([exp.experiment_id], filter_string=f"tags.`zoo_bench.run` = '{key}'")
    return parent


def test_a_run_logs_a_parent_and_a_nested_run_per_trial(tmp_path, store_uri, capsys):
    suite = write_suite(tmp_path, SUITE)
    code = zb("run", suite, "--run-id", "a", "--results-dir", tmp_path / "res", "--cache-dir", tmp_path / "c",
              "--no-progress", "--mlflow", store_uri)
    assert code == 0
    client = MlflowClient(store_uri)
    parent = parent_of(client, "tracked", "tracked/a")
    assert parent.info.status == "FINISHED"
    assert parent.data.params["suite"] == "tracked" and parent.data.params["strategies"] == '["last_layer","svm"]'
    assert parent.data.tags["version.zoo-bench"] and parent.data.tags["cpu_count"]
    parent_files = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert {"run.json", "trials.parquet", "evidence.json", "tables.md"} <= parent_files
    tables = open(client.download_artifacts(parent.info.run_id, "tables.md", str(tmp_path))).read()
    assert "svm" in tables and "last_layer" in tables  # the tables the run printed
    rows = {json.loads(line)["trial_id"]: json.loads(line)
            for line in (tmp_path / "res/tracked/a/trials.jsonl").read_text().splitlines()}
    nested = children(client, parent)
    assert len(nested) == len(rows) == 6
    assert sorted(run.info.run_name for run in nested) == sorted(  # the progress lines' short labels
        f"efficientnet_lite0/{s}/n=8/seed={seed}" for s in ("last_layer[epochs=2]", "svm[C=0.1]", "svm[C=1.0]")
        for seed in (0, 1))
    for run in nested:
        row = rows[run.data.tags["zoo_bench.trial_id"]]
        assert run.info.status == "FINISHED"
        assert run.data.metrics["test_accuracy"] == pytest.approx(row["test_accuracy"])
        assert run.data.params["strategy"] == row["strategy"] and run.data.params["seed"] == str(row["seed"])
        files = {f.path for f in client.list_artifacts(run.info.run_id)}
        assert {"row.json", "confusion.json", "predictions"} <= files
        if row["strategy"] == "last_layer":
            history = client.get_metric_history(run.info.run_id, "history/train_loss")
            assert [m.step for m in history] == [1, 2]
            assert [m.value for m in history] == pytest.approx([e["train_loss"] for e in row["history"]])
        else:
            assert run.data.params["param.C"] in ("0.1", "1.0")


def test_exporting_a_run_folder_twice_logs_each_trial_once(tmp_path, store_uri, capsys):
    suite = write_suite(tmp_path, SUITE.replace('name = "tracked"', 'name = "exported"'))
    assert zb("run", suite, "--run-id", "b", "--results-dir", tmp_path / "res", "--cache-dir", tmp_path / "c",
              "--no-progress", "--trials", "*/svm*") == 0  # no tracking while it ran
    capsys.readouterr()
    assert zb("mlflow", tmp_path / "res/exported/b", store_uri) == 0
    assert "4 trials logged, 0 there already" in capsys.readouterr().err
    assert zb("mlflow", tmp_path / "res/exported/b", store_uri) == 0
    assert "0 trials logged, 4 there already" in capsys.readouterr().err
    client = MlflowClient(store_uri)
    parent = parent_of(client, "exported", "exported/b")
    assert len(children(client, parent)) == 4
    # resumed with tracking: the parent goes on, only the new trials are added
    assert zb("run", suite, "--run-id", "b", "--results-dir", tmp_path / "res", "--cache-dir", tmp_path / "c",
              "--no-progress", "--mlflow", store_uri) == 0
    assert len(children(client, parent_of(client, "exported", "exported/b"))) == 6


def test_the_default_store_is_sqlite_in_the_results_folder(tmp_path):
    suite = write_suite(tmp_path, SUITE.replace('C = [0.1, 1.0]', 'C = 1.0').replace("seeds = [0, 1]", "seeds = [0]"))
    assert zb("run", suite, "--run-id", "d", "--results-dir", tmp_path / "res", "--cache-dir", tmp_path / "c",
              "--no-progress", "--mlflow") == 0
    db = tmp_path / "res" / "mlflow.db"
    assert db.exists() and (tmp_path / "res" / "mlartifacts").is_dir()
    client = MlflowClient(f"sqlite:///{db}")
    assert len(children(client, parent_of(client, "tracked", "tracked/d"))) == 2


def test_the_suites_tracking_table_turns_it_on(tmp_path, store_uri):
    body = SUITE.replace('name = "tracked"', 'name = "by_table"').replace('C = [0.1, 1.0]', 'C = 1.0').replace(
        "seeds = [0, 1]", "seeds = [0]") + f'[tracking]\nmlflow = true\nmlflow_uri = "{store_uri}"\n'
    assert zb("run", write_suite(tmp_path, body), "--run-id", "t", "--results-dir", tmp_path / "res", "--cache-dir",
              tmp_path / "c", "--no-progress") == 0
    client = MlflowClient(store_uri)
    assert len(children(client, parent_of(client, "by_table", "by_table/t"))) == 2
    assert not (tmp_path / "res" / "mlflow.db").exists()  # the suite's URI, not the default


def test_a_store_that_cannot_be_opened_costs_one_line_and_the_run_goes_on(tmp_path, capsys):
    suite = write_suite(tmp_path, SUITE.replace('C = [0.1, 1.0]', 'C = 1.0').replace("seeds = [0, 1]", "seeds = [0]"))
    (tmp_path / "a_file").write_text("not a folder")
    bad = f"sqlite:///{tmp_path / 'a_file' / 'mlflow.db'}"  # a store that cannot be created
    assert zb("run", suite, "--run-id", "e", "--results-dir", tmp_path / "res", "--cache-dir", tmp_path / "c",
              "--no-progress", "--mlflow", bad) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if "MLflow store" in line]
    assert len(warning) == 1 and warning[0].startswith(f"warning: MLflow store {bad}: ") and \
        warning[0].endswith("; the run goes on without MLflow tracking")
    assert len((tmp_path / "res/tracked/e/trials.jsonl").read_text().splitlines()) == 2


def test_without_mlflow_installed_the_run_goes_on_and_says_so_in_one_line(tmp_path):
    suite = write_suite(tmp_path, SUITE.replace('C = [0.1, 1.0]', 'C = 1.0').replace("seeds = [0, 1]", "seeds = [0]")
                        .replace("[strategies.last_layer]\nepochs = 2\n", ""))
    script = textwrap.dedent(f'''
        import sys
        class NoMlflow:
            def find_spec(self, name, path=None, target=None):
                if name == "mlflow" or name.startswith("mlflow."):
                    raise ModuleNotFoundError(f"No module named {{name!r}}")
        sys.meta_path.insert(0, NoMlflow())
        from zoo_bench import cli
        sys.exit(cli.main(["run", "{suite}", "--run-id", "f", "--results-dir", "{tmp_path / 'res'}", "--cache-dir",
                           "{tmp_path / 'c'}", "--no-progress", "--mlflow"]))
    ''')
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ})
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("warning:") and "mlflow" in line.lower()]
    assert lines == ["warning: mlflow is not installed here (No module named 'mlflow'); install it with: "
                     "pip install 'zoo-bench[mlflow]'; the run goes on without MLflow tracking"]
