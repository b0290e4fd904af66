"""A row's fields are defined once (zoo_bench.results.fields): the README's table, the rows a run writes,
the table's columns and what a baseline keeps all follow that definition."""
import json

from conftest import lite0_suite, run_inprocess, write_suite
from zoo_bench.plugins import load_plugins
from zoo_bench.results import fields
from zoo_bench.results.compare import save_baseline
from zoo_bench.results.store import COLUMNS, load_run

README = fields.__file__.rsplit("/zoo_bench/", 1)[0] + "/results/README.md"


def test_the_readme_field_table_is_the_definition():
    text = open(README).read()
    section = text[text.index("## Row fields"):text.index("## Tuned tables")]
    table = "".join(line + "\n" for line in section.splitlines() if line.startswith("|"))
    assert table == fields.markdown_table()  # regenerate with: python -m zoo_bench.results.fields


def test_names_are_unique_and_the_table_and_baseline_take_them_in_order():
    assert len(set(fields.NAMES)) == len(fields.NAMES)
    assert COLUMNS == list(fields.NAMES)
    assert set(fields.BASELINE_FIELDS) < set(fields.NAMES)
    assert {"trial_id", "status", "test_accuracy", "epoch_time_s", "worker_threads"} <= set(fields.BASELINE_FIELDS)


def test_every_row_a_run_writes_has_exactly_the_defined_fields(tmp_path):
    registry = load_plugins()
    body = lite0_suite("fields", "[strategies.svm]\n[strategies.last_layer]\nepochs = 1\n")
    store, _ = run_inprocess(write_suite(tmp_path, body), registry, tmp_path, tmp_path / "cache")
    rows = store.rows()
    assert {r["strategy"] for r in rows} == {"svm", "last_layer"} and all(r["status"] == "ok" for r in rows)
    for row in rows:
        assert set(row) == set(fields.NAMES), set(row) ^ set(fields.NAMES)
    assert list(load_run(store.run_dir).columns) == list(fields.NAMES)
    saved = json.loads(save_baseline(store.run_dir, "f", tmp_path / "b").read_text())
    assert [sorted(t) for t in saved["trials"]] == [sorted(fields.BASELINE_FIELDS + fields.BASELINE_ONLY)] * len(rows)
