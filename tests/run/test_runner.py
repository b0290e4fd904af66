"""Results rows, resume by trial id, failing trials recorded while the suite goes on."""
import json

import pandas as pd

from conftest import TINY_SUITE, run_inprocess, write_suite
from zoo_bench.results.store import COLUMNS, RunStore, load_run

BODY = TINY_SUITE.replace("sizes = [8]", "sizes = [4, 8]") + "[strategies.svm]\n[strategies.last_layer]\nepochs = 2\n"


def test_rows_have_the_documented_fields_and_load_in_pandas(tmp_path, registry, cache_dir, tiny_weights):
    store, _ = run_inprocess(write_suite(tmp_path, BODY), registry, tmp_path, cache_dir)
    rows = store.rows()
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    for column in COLUMNS:
        assert column in rows[0]
    path = store.write_table()
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    assert len(df) == 4 and json.loads(df["params"][0]) == {"C": 1.0, "preprocess": "none"}


def test_resume_skips_finished_trials(tmp_path, registry, cache_dir, tiny_weights):
    path = write_suite(tmp_path, BODY)
    store, _ = run_inprocess(path, registry, tmp_path, cache_dir, run_id="same")
    lines = store.jsonl.read_text().splitlines()
    store2, reporter = run_inprocess(path, registry, tmp_path, cache_dir, run_id="same")
    assert reporter.done == 4 and reporter.finished == []
    assert store2.jsonl.read_text().splitlines() == lines


def test_resume_after_a_cut_off_line_and_an_error_reruns_only_those(tmp_path, registry, cache_dir, tiny_weights):
    path = write_suite(tmp_path, BODY)
    store, _ = run_inprocess(path, registry, tmp_path, cache_dir, run_id="crash")
    rows = store.rows()
    errored = dict(rows[1], status="error", error="RuntimeError: boom")
    store.jsonl.write_text("\n".join(json.dumps(r) for r in [rows[0], errored]) + '\n{"trial_id": "tor')
    _, reporter = run_inprocess(path, registry, tmp_path, cache_dir, run_id="crash")
    assert reporter.done == 1 and len(reporter.finished) == 3
    assert {r["status"] for r in RunStore(store.run_dir).rows()} == {"ok"}


def test_a_failing_trial_is_recorded_and_the_others_run(tmp_path, registry, cache_dir, monkeypatch):
    import tiny_backbone

    monkeypatch.setattr(tiny_backbone, "WEIGHTS", None)  # pretrained weights missing
    body = TINY_SUITE + "[strategies.svm]\n[strategies.scratch]\nepochs = 1\n"
    store, _ = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, cache_dir)
    df = load_run(store.run_dir).set_index("strategy")
    assert df.loc["svm", "status"] == "error"
    assert df.loc["svm", "error"] == "mini_cnn: weights file mini_cnn.pth is missing"
    assert df.loc["scratch", "status"] == "ok"  # random init needs no weights
    assert "Traceback" in (store.run_dir / "errors.log").read_text()


def test_run_json_records_versions_and_machine(tmp_path):
    store = RunStore(tmp_path / "run")
    store.write_meta({"started_at": "t0", "versions": {"python": "3.11"}})
    store.write_meta({"started_at": "t1", "versions": {"python": "3.11"}})
    meta = store.meta()
    assert meta["started_at"] == "t0" and meta["resumes"][0]["started_at"] == "t1"
