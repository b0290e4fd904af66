"""Kills for real: SIGKILL at random moments with resume, Ctrl-C, SIGTERM; every trial exactly once."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from conftest import write_suite

KILLS = 10
SUITE = """
[suite]
name = "killme"
seeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
[dataset]
source = "synthetic"
classes = 2
train_per_class = 12
test_per_class = 6
image_size = 32
val_fraction = 0.25
sizes = [4, 8]
[run]
backends = ["torch"]
backbones = ["tiny_cnn"]
batch_size = 8
[strategies.scratch]
epochs = [1, 2, 3]
"""


def zoo_bench(*args: str) -> list[str]:
    return [sys.executable, "-m", "zoo_bench.cli", *args]


def interruptible() -> None:
    """Ctrl-C's default action in the child: a shell starts background jobs with SIGINT ignored, and a
    Python started that way never turns SIGINT into KeyboardInterrupt (tests run from such a job)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_run(suite: Path, tmp_path: Path, *extra: str) -> subprocess.Popen:
    """`zoo-bench run` in its own process group (so a kill reaches its workers too)."""
    cmd = zoo_bench("run", str(suite), "--run-id", "r", "--results-dir", str(tmp_path / "results"),
                    "--cache-dir", str(tmp_path / "cache"), "--no-progress", *extra)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=interruptible,
                            env={**os.environ, "ZOO_BENCH_DISABLE_PLUGIN_AUTOLOAD": "1"})


def wait_for(path: Path, newer_than: float, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until the run has written ``path`` (it is past start-up) or has ended."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if path.exists() and path.stat().st_mtime >= newer_than:
            return
        time.sleep(0.05)


def expected_ids(suite: Path) -> list[str]:
    out = subprocess.run(zoo_bench("run", str(suite), "--dry-run"), capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if "/seed=" in line]


def assert_intact(run_dir: Path, ids: list[str], complete: bool) -> None:
    """Every line and file parses; no trial twice; with ``complete`` every trial once and ok."""
    lines = (run_dir / "trials.jsonl").read_bytes().decode().splitlines()
    rows = [json.loads(line) for line in lines]  # raises on a half-written line
    counts = Counter(r["trial_id"] for r in rows)
    assert max(counts.values(), default=1) == 1, [k for k, v in counts.items() if v > 1]
    assert set(counts) <= set(ids)
    json.loads((run_dir / "run.json").read_text())
    if complete:
        assert set(counts) == set(ids) and all(r["status"] == "ok" for r in rows)
        table = pd.read_parquet(run_dir / "trials.parquet")
        assert sorted(table["trial_id"]) == sorted(ids)


def group_gone(proc: subprocess.Popen) -> bool:
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_sigkill_at_random_moments_then_resume_keeps_every_trial_exactly_once(tmp_path):
    suite = write_suite(tmp_path, SUITE)
    ids = expected_ids(suite)
    assert len(ids) == 90
    run_dir = tmp_path / "results" / "killme" / "r"
    rng = random.Random(20261122)
    killed_mid_run = 0
    for attempt in range(KILLS):
        isolated = attempt % 3 == 2  # some attempts with trials in worker processes
        started = time.time()
        proc = start_run(suite, tmp_path, "--isolation", "on" if isolated else "off")
        if attempt % 4 == 0:  # anywhere, start-up included
            time.sleep(rng.uniform(0.2, 4.0))
        else:  # while trials run
            wait_for(run_dir / "run.json", started, proc)
            time.sleep(rng.uniform(0.0, 2.5 if isolated else 1.5))
        if proc.poll() is None:
            killed_mid_run += 1
        if not group_gone(proc):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        deadline = time.monotonic() + 10
        while not group_gone(proc) and time.monotonic() < deadline:  # workers follow their parent
            time.sleep(0.1)
        assert group_gone(proc), "a worker outlived its killed run"
        if (run_dir / "trials.jsonl").exists():
            assert_intact_after_heal(run_dir, ids)
    assert killed_mid_run >= KILLS - 2
    done_before = len(json_rows(run_dir))
    assert done_before < len(ids), "the kills came too late to interrupt anything"
    final = start_run(suite, tmp_path)
    out, err = final.communicate(timeout=600)
    assert final.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    assert_intact(run_dir, ids, complete=True)


def json_rows(run_dir: Path) -> list[dict]:
    """The rows of every complete line (a kill may have cut the last one)."""
    path = run_dir / "trials.jsonl"
    if not path.exists():
        return []
    text = path.read_bytes()
    return [json.loads(line) for line in text[: text.rfind(b"\n") + 1].decode().splitlines()]


def assert_intact_after_heal(run_dir: Path, ids: list[str]) -> None:
    """Every complete line parses and names a trial of the suite, none twice."""
    counts = Counter(r["trial_id"] for r in json_rows(run_dir))
    assert set(counts) <= set(ids)
    assert max(counts.values(), default=1) == 1


QUICK = SUITE.replace("seeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]", "seeds = [0, 1, 2]").replace(
    "epochs = [1, 2, 3]", "epochs = [6]")


@pytest.mark.parametrize("isolation,sig,code", [("off", signal.SIGINT, 130), ("on", signal.SIGINT, 130),
                                                 ("off", signal.SIGTERM, 143)])
def test_interrupt_stops_cleanly_prints_the_partial_table_and_resumes(tmp_path, isolation, sig, code):
    suite = write_suite(tmp_path, QUICK)
    run_dir = tmp_path / "results" / "killme" / "r"
    proc = start_run(suite, tmp_path, "--isolation", isolation)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:  # until one trial is saved
        if (run_dir / "trials.jsonl").exists() and (run_dir / "trials.jsonl").read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    if sig == signal.SIGINT and isolation == "on":
        os.killpg(proc.pid, sig)  # a terminal's Ctrl-C reaches the whole process group
    else:
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err
    assert "killme (interrupted)" in out  # the partial table
    assert "resume with: zoo-bench run" in err
    saved = [json.loads(line) for line in (run_dir / "trials.jsonl").read_text().splitlines()]
    assert 1 <= len(saved) < 6 and all(r["status"] == "ok" for r in saved)
    assert group_gone(proc) or _wait_gone(proc)

    again = start_run(suite, tmp_path)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-2000:]
    assert f"resuming: {len(saved)} of 6 trials already finished" in err
    assert_intact(run_dir, expected_ids(suite), complete=True)


def _wait_gone(proc: subprocess.Popen, seconds: float = 10) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if group_gone(proc):
            return True
        time.sleep(0.1)
    return False


def test_a_second_run_on_the_same_folder_is_refused(tmp_path):
    from zoo_bench.results.store import RunStore

    first = RunStore(tmp_path / "run")
    first.lock()
    code = ("from pathlib import Path; from zoo_bench.results.store import RunStore; from zoo_bench.errors import UsageError\n"
            f"try:\n    RunStore(Path({str(tmp_path / 'run')!r})).lock()\nexcept UsageError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert f"another zoo-bench run (pid {os.getpid()}) is writing this run folder" in out.stdout
