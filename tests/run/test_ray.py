"""Ray for real: a two-node Ray cluster on loopback, started here and stopped after the tests whatever happens.

The same results as in this process; a worker that segfaults mid-trial; a lost node; the driver SIGKILLed and
resumed; Ctrl-C; a local Ray instance. Ray is an optional extra: CI installs it (``.ci/run``), and
there these tests must run, not skip.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import write_suite
from test_pool import spans
from test_durability import QUICK as SCRATCH  # 6 trials of tiny_cnn from random weights, 6 epochs each
from test_durability import assert_intact, expected_ids, group_gone, interruptible

if not os.environ.get("CI"):
    pytest.importorskip("ray")

RAY = str(Path(sys.executable).parent / "ray")
NODE2_PORT_FLAG = "--node_manager_port={port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_matching(*texts: str) -> list[int]:
    """Processes whose command line contains every one of ``texts``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if all(t in cmdline for t in texts) and int(entry.name) != os.getpid():
                pids.append(int(entry.name))
    return pids


def _kill(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _unit_workers() -> list[int]:
    """Ray worker processes running a zoo-bench unit now (Ray titles them ``ray::`` + the task's name)."""
    return _pids_matching("ray::zoo-bench ")


def _wait_no_unit_workers(seconds: float = 30) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not _unit_workers():
            return True
        time.sleep(0.2)
    return False


class Cluster:
    """``ray start --head`` (2 CPUs) and a second node (2 CPUs) on loopback, in their own temp folder."""

    def __init__(self) -> None:
        self.temp = tempfile.mkdtemp(prefix="zbray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        self.port, self.node2_port = _free_port(), _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}

    def _start(self, *args: str) -> None:
        out = subprocess.run([RAY, "start", "--num-cpus", "2", "--node-ip-address", "127.0.0.1",
                              "--disable-usage-stats", *args], capture_output=True, text=True, env=self.env,
                             timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]

    def start(self) -> "Cluster":
        self._start("--head", "--port", str(self.port), "--include-dashboard=false",
                    "--ray-client-server-port", str(_free_port()),
                    "--object-store-memory", "500000000", "--temp-dir", self.temp)
        self.start_node2()
        return self

    def start_node2(self) -> None:
        self._start("--address", self.address, "--object-store-memory", "200000000",
                    "--node-manager-port", str(self.node2_port))

    def kill_node2(self) -> None:
        """Lose the second node: its raylet and every process under it, SIGKILL (a machine switched off)."""
        raylets = _pids_matching(NODE2_PORT_FLAG.format(port=self.node2_port))
        assert raylets, "the second node's raylet is not running"
        _kill(raylets + [p for r in raylets for p in _children(r)])

    def stop(self) -> None:
        """Stop every process of this cluster (not other Ray instances on the machine)."""
        pids = _pids_matching(self.temp) + _pids_matching("ray.util.client.server", f":{self.port} ")
        pids += [c for p in pids for c in _children(p)]
        _kill(pids, signal.SIGTERM)
        end = time.monotonic() + 10
        while time.monotonic() < end and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.2)
        _kill(pids)
        shutil.rmtree(self.temp, ignore_errors=True)


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid``."""
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            kids = [int(k) for t in Path(f"/proc/{parent}/task").iterdir()
                    for k in (t / "children").read_text().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out


@pytest.fixture(scope="module", autouse=True)
def no_ray_token():
    """The loopback test cluster runs without Ray's token authentication, for every process here."""
    before = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    yield
    if before is None:
        del os.environ["RAY_AUTH_MODE"]
    else:
        os.environ["RAY_AUTH_MODE"] = before


@pytest.fixture(scope="module")
def cluster(no_ray_token):
    c = Cluster()
    try:
        yield c.start()
    finally:
        c.stop()


def zoo_bench(*args: str) -> list[str]:
    return [sys.executable, "-m", "zoo_bench.cli", *args]


def run_cli(suite: Path, tmp_path: Path, *extra: str, env: dict | None = None, run_id: str = "r"
            ) -> subprocess.CompletedProcess:
    cmd = zoo_bench("run", str(suite), "--run-id", run_id, "--results-dir", str(tmp_path / "results"),
                    "--cache-dir", str(tmp_path / "cache"), "--no-progress", *extra)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "ZOO_BENCH_DISABLE_PLUGIN_AUTOLOAD": "1", **(env or {})})


def start_cli(suite: Path, tmp_path: Path, *extra: str) -> subprocess.Popen:
    cmd = zoo_bench("run", str(suite), "--run-id", "r", "--results-dir", str(tmp_path / "results"),
                    "--cache-dir", str(tmp_path / "cache"), "--no-progress", *extra)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=interruptible,
                            env={**os.environ, "ZOO_BENCH_DISABLE_PLUGIN_AUTOLOAD": "1"})


def rows(run_dir: Path) -> list[dict]:
    path = run_dir / "trials.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_rows(run_dir: Path, count: int, proc: subprocess.Popen | None = None, timeout: float = 180) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end and (proc is None or proc.poll() is None):
        if len(rows(run_dir)) >= count:
            return
        time.sleep(0.05)


SAME = """
[suite]
name = "same"
seeds = [0, 1]
[dataset]
source = "synthetic"
classes = 2
train_per_class = 12
test_per_class = 6
image_size = 32
val_fraction = 0.25
sizes = [8]
[run]
backends = ["torch"]
backbones = ["efficientnet_lite0", "tiny_cnn"]
image_size = 32
batch_size = 8
[strategies.svm]
backbones = ["efficientnet_lite0"]
[strategies.scratch]
backbones = ["tiny_cnn"]
epochs = 3
"""


def test_a_two_node_cluster_gives_the_same_results_as_this_process(cluster, tmp_path):
    suite = write_suite(tmp_path, SAME)
    here = run_cli(suite, tmp_path, "--isolation", "off", env={"OMP_NUM_THREADS": "1"}, run_id="here")
    assert here.returncode == 0, here.stderr[-2000:]
    out = run_cli(suite, tmp_path, "--ray-address", cluster.address, run_id="ray")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert "trials run as Ray tasks on 2 nodes" in out.stderr
    a = {r["trial_id"]: r for r in rows(tmp_path / "results" / "same" / "here")}
    b = {r["trial_id"]: r for r in rows(tmp_path / "results" / "same" / "ray")}
    assert a.keys() == b.keys() and len(a) == 4
    for trial_id in a:  # one CPU thread in both: the same arithmetic, the same numbers
        assert b[trial_id]["status"] == "ok" and b[trial_id]["worker_threads"] == 1
        assert b[trial_id]["test_accuracy"] == a[trial_id]["test_accuracy"], trial_id
        assert b[trial_id]["confusion"] == a[trial_id]["confusion"], trial_id


FAULTS = """
[suite]
name = "faults"
seeds = [0, 1]
[dataset]
source = "synthetic"
classes = 2
train_per_class = 8
test_per_class = 4
image_size = 32
sizes = [4]
[run]
backends = ["torch"]
backbones = ["tiny_cnn"]
batch_size = 8
[strategies.crash]
how = ["none", "segfault"]
[strategies.oom_above]
fits = 4
"""


def ray_run(suite_path: Path, registry, tmp_path: Path, address: str, run_id: str = "r"):
    """Run a suite like `zoo-bench run --ray-address` does, driving from this process."""
    from conftest import QuietReporter
    from zoo_bench.run.executors import worker_setup
    from zoo_bench.run.executors.ray_cluster import RayExecutor
    from zoo_bench.run.prepare import RunOptions, prepare_run
    from zoo_bench.run.runner import Runner
    from zoo_bench.plan.suite import parse_suite

    suite = parse_suite(suite_path, registry)
    options = RunOptions(data_root=tmp_path, cache_dir=tmp_path / "cache", device="cpu")
    prepared = prepare_run(suite, registry, options, tmp_path / "results" / suite.name / run_id)
    reporter = QuietReporter()
    executor = RayExecutor(worker_setup(suite, registry, options, prepared.listing, prepared.store.run_dir), reporter,
                           address, **suite.ray)
    Runner(prepared, reporter, executor).run()
    prepared.store.unlock()
    return prepared.store, reporter


def test_a_killed_worker_fails_its_trial_and_out_of_memory_retries_on_ray(cluster, tmp_path):
    import fault_strategies
    from zoo_bench.plugins import load_plugins

    store, reporter = ray_run(write_suite(tmp_path, FAULTS), load_plugins(extra=[fault_strategies]), tmp_path,
                              cluster.address)
    by = {(r["strategy"], r["params"].get("how"), r["seed"]): r for r in store.rows()}
    assert len(by) == 6
    for seed in (0, 1):
        crashed = by[("crash", "segfault", seed)]
        assert crashed["status"] == "error"
        assert crashed["error"].startswith("the trial's Ray task failed: its worker process on ")
        assert "WorkerCrashedError" in crashed["error"]
        assert by[("crash", "none", seed)]["status"] == "ok"  # the unit's other trials ran on
        oom = by[("oom_above", None, seed)]
        assert oom["status"] == "ok" and oom["batch_size"] == 4  # halved from 8, on the worker
    assert any("retrying with batch size 4" in text for _, text in reporter.notes)  # progress streamed back
    assert "WorkerCrashedError" in (store.run_dir / "errors.log").read_text()
    assert _wait_no_unit_workers()




def test_ctrl_c_cancels_the_ray_tasks_prints_the_partial_table_exit_130_and_resumes(cluster, tmp_path):
    suite = write_suite(tmp_path, SCRATCH)
    run_dir = tmp_path / "results" / "killme" / "r"
    proc = start_cli(suite, tmp_path, "--ray-address", cluster.address)
    wait_rows(run_dir, 1, proc)
    assert _unit_workers(), "no Ray task of the run is seen running (the check below would prove nothing)"
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    assert "killme (interrupted)" in out and "resume with: zoo-bench run" in err
    saved = rows(run_dir)
    assert 1 <= len(saved) < 6 and all(r["status"] == "ok" for r in saved)
    assert _wait_no_unit_workers(), "a Ray task outlived the cancelled run"
    again = run_cli(suite, tmp_path, "--ray-address", cluster.address)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming: {len(saved)} of 6 trials already finished" in again.stderr
    assert_intact(run_dir, expected_ids(suite), complete=True)


def test_sigkill_of_the_driver_loses_nothing_finished_and_resumes_on_the_cluster(cluster, tmp_path):
    suite = write_suite(tmp_path, SCRATCH)
    run_dir = tmp_path / "results" / "killme" / "r"
    proc = start_cli(suite, tmp_path, "--ray-address", cluster.address)
    wait_rows(run_dir, 2, proc)
    assert _unit_workers(), "no Ray task of the run is seen running (the check below would prove nothing)"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert group_gone(proc)
    assert _wait_no_unit_workers(), "Ray did not stop the tasks of a killed driver"
    saved = rows(run_dir)
    assert 2 <= len(saved) < 6
    again = run_cli(suite, tmp_path, "--ray-address", cluster.address)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming: {len(saved)} of 6 trials already finished" in again.stderr
    assert_intact(run_dir, expected_ids(suite), complete=True)


def test_units_fit_per_node_in_gpus_and_cpus_both():
    from zoo_bench.run.executors.ray_cluster import units_that_fit

    gpu_node = {"Alive": True, "Resources": {"CPU": 16.0, "GPU": 8.0}}
    cpu_node = {"Alive": True, "Resources": {"CPU": 3.0}}
    assert units_that_fit([gpu_node], 1, 4) == 4  # the CPUs, not the 8 GPUs, are the limit
    assert units_that_fit([gpu_node, cpu_node], 0.5, 1) == 16 + 0  # a node without GPUs holds no GPU unit
    assert units_that_fit([cpu_node, cpu_node], 0, 0.1) == 60  # 3 / 0.1 is 30, not 29
    assert units_that_fit([cpu_node, {**cpu_node, "Alive": False}], 0, 1) == 3
    assert units_that_fit([cpu_node], 0, 4) == 0  # no node is big enough: the executor refuses to start


def test_a_local_ray_instance_is_started_and_stopped_without_an_address(tmp_path):
    suite = write_suite(tmp_path, SCRATCH.replace("seeds = [0, 1, 2]", "seeds = [0]").replace("sizes = [4, 8]",
                                                                                             "sizes = [4]"))
    out = run_cli(suite, tmp_path, "--executor", "ray")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "trials run as Ray tasks on 1 node" in out.stderr
    assert [r["status"] for r in rows(tmp_path / "results" / "killme" / "r")] == ["ok"]


SLEEPERS = """
[suite]
name = "sleepers"
seeds = [0, 1, 2]
[dataset]
source = "synthetic"
classes = 2
train_per_class = 8
test_per_class = 4
image_size = 32
sizes = [4]
[run]
backends = ["torch"]
backbones = ["tiny_cnn", "efficientnet_lite0"]
image_size = 32
[ray]
num_cpus = 2
[strategies.sleep]
seconds = 2.0
"""


def test_a_lost_node_fails_the_trial_it_ran_and_its_unit_finishes_elsewhere(cluster, tmp_path):
    """Last in this file: it takes the second node down (and brings a fresh one up for any test after)."""
    import fault_strategies
    from zoo_bench.plugins import load_plugins

    run_dir = tmp_path / "results" / "sleepers" / "r"

    def kill_when_both_units_ran() -> None:  # each node runs one unit ([ray] num_cpus = 2 = a node's CPUs)
        end = time.monotonic() + 180
        while time.monotonic() < end and len({r["backbone"] for r in rows(run_dir)}) < 2:
            time.sleep(0.05)
        cluster.kill_node2()

    killer = threading.Thread(target=kill_when_both_units_ran, daemon=True)
    killer.start()
    store, _ = ray_run(write_suite(tmp_path, SLEEPERS), load_plugins(extra=[fault_strategies]), tmp_path,
                       cluster.address)
    killer.join(timeout=5)
    done = store.rows()
    assert len(done) == 6 and len({r["trial_id"] for r in done}) == 6
    errors = [r for r in done if r["status"] == "error"]
    assert len(errors) == 1, [r["error"] for r in done]
    assert errors[0]["error"].startswith("the trial's Ray task failed: its node ")
    assert "was lost" in errors[0]["error"]
    lost_unit = errors[0]["backbone"]
    finished = [r for r in done if r["backbone"] == lost_unit and r["status"] == "ok"]
    assert len(finished) == 2  # the lost node's other trials ran on the head node
    a, b = (spans([r for r in done if r["backbone"] == name and r["status"] == "ok"])
            for name in ("tiny_cnn", "efficientnet_lite0"))
    assert max(min(e1, e2) - max(s1, s2) for s1, e1 in a for s2, e2 in b) > 0.5  # one unit per node, side by side
    cluster.start_node2()
