"""Fault injection on the session's local two-node cluster (``ray start`` head + worker on
127.0.0.1, tests/local_cluster.py) with the store on the local S3 server, reached through
a proxy the test can take down. The fault table, each case once:

| fault                          | where                                         |
| ------------------------------ | --------------------------------------------- |
| Ray Train worker SIGKILL       | here, training (with the S3 outage)           |
| S3 unreachable for 10 s        | here, training checkpoints and the search     |
| FID actor process SIGKILL      | here, the search (with the S3 outage)         |
| driver killed, job resubmitted | tests/test_cluster_isolated.py (golden run)   |
| hung FID actor                 | tests/test_fid_pool.py                        |
| store's disk full              | here (a small tmpfs, a one-node Ray)          |

Each case runs a real stage as a user does (``ganc train-teacher`` / ``ganc search``, the
driver joining the cluster through RAY_ADDRESS), injects its faults, and ends with the run
complete, no result lost, none duplicated, and the expected number of restarts.

Waits poll the store, the workers' progress files, Ray's state API or the driver's output,
each with a deadline; the only fixed pause is the outage itself."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid

import pytest

from .lifecycle import S3_BUCKET
from .golden import tune_checkpoints, wait_for
from .helpers import REPO
from .local_cluster import local_cluster
from .test_search import make_supernet_run

OUTAGE_S = 10.0
TINY_DATA = ["data.demo_n=16", "data.demo_size=32", "data.load_size=32", "data.crop_size=32",
             "data.search_split=0", "data.batch_size=1"]
# 20 steps of batch 1 on the 16 training images: checkpoints at 10 and 20
TEACHER = TINY_DATA + ["model.teacher_ngf=8", "model.ndf=8", "teacher.steps=20",
                       "teacher.checkpoint_every=10", "teacher.log_every=5",
                       "teacher.eval_every=-1", "scale.workers=1", "scale.max_failures=2"]
TEACHER_STEPS, CKPT_EVERY = 20, 10
SEARCH_POPULATION, GENERATIONS = 4, 4
SEARCH = TINY_DATA + ["fid.num_actors=1", "fid.batch_size=8", "fid.kid=false",
                      f"search.population={SEARCH_POPULATION}",
                      f"search.generations={GENERATIONS}"]


# ---------------------------------------------------------------- fixtures and helpers
pytestmark = pytest.mark.cluster


@pytest.fixture
def cluster(two_node):
    return two_node


@pytest.fixture
def proxy(s3_proxy):
    return s3_proxy


@pytest.fixture
def store_url():
    return f"s3://{S3_BUCKET}/faults-{uuid.uuid4().hex[:8]}"


def _run(url: str, run_id: str):
    """The run as the test sees it: straight to the S3 server, not through the proxy."""
    from ganc.store import open_store
    return open_store(url).run(run_id)


class Driver:
    """``python -m ganc ARGS`` joined to the cluster (or a private Ray), its output
    collected line by line; ``on_line(pattern, fn)`` calls ``fn`` (in the reader thread)
    the first time a line holds ``pattern``."""

    def __init__(self, env: dict, args: list[str]):
        self.lines: list[str] = []
        self._hooks: list[list] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "ganc", *args], cwd=str(REPO),
                                     env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def on_line(self, pattern: str, fn) -> None:
        self._hooks.append([pattern, fn, False])

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            for hook in self._hooks:
                if not hook[2] and hook[0] in line:
                    hook[2] = True
                    hook[1]()

    def wait(self, timeout: float = 600) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("the driver did not finish:\n" + self.tail())
        self._reader.join(30)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.lines[-n:])

    def errors(self) -> list[str]:
        return [ln for ln in self.lines if ln.startswith("ganc ") and ": error: " in ln]


def _driver_env(cluster, **extra) -> dict:
    env = {k: v for k, v in cluster.env.items() if k not in ("RAY_ADDRESS", "GANC_RAY_PRIVATE")}
    env.update({"RAY_ADDRESS": cluster.address, "PYTHONUNBUFFERED": "1"})
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _args(command: str, sets: list[str], url: str, run_id: str) -> list[str]:
    out = [command, "--config", "configs/demo.yaml", "--store", url, "--run-id", run_id]
    for s in sets:
        out += ["--set", s]
    return out


def _wait(cond, what: str, timeout: float = 300, driver: Driver | None = None, every=0.1):
    """golden.wait_for, failing also when the driver exits first (its output's tail)."""
    def exited():
        if driver is not None and driver.proc.poll() is not None:
            return f"the driver exited:\n{driver.tail()}\n"
    return wait_for(cond, what, timeout, alive=exited, every=every)


def _progress(hooks, rank: int = 0):
    """The progress file a training worker publishes (tests' hook): {pid, step, rank}."""
    try:
        with open(os.path.join(hooks, f"rank{rank}.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _starts(run, stage: str) -> list[int]:
    from ganc.train import common
    lines = common.parse_lines(run.read_bytes(f"{stage}/metrics.jsonl"))
    return [r["step"] for r in lines if r.get("event") == "start"]


def _check_trained(run, stage: str = "teacher") -> list[int]:
    """The stage ran to its end with a continuous log; returns its start steps."""
    from ganc.train import common
    final = run.get_torch(f"{stage}/final.pt")
    assert int(final["step"]) == TEACHER_STEPS
    steps = [r["step"] for r in common.parse_lines(run.read_bytes(f"{stage}/metrics.jsonl"))
             if "event" not in r]
    assert steps == sorted(set(steps)) and steps[-1] == TEACHER_STEPS, steps
    return _starts(run, stage)


def _rows(run) -> list[dict]:
    return run.get_parquet("search/results.parquet").to_pylist()


def _check_search(run, generations: int = 3) -> tuple[list[dict], dict]:
    """Every drawn config recorded once (per method and budget), all scored, the search
    ran to its last generation, best.json agrees; returns (rows, best)."""
    rows = _rows(run)
    keys = [(r["method"], r["budget"], r["config"]) for r in rows]
    assert len(keys) == len(set(keys)), "a config was recorded twice"
    assert all(r["status"] == "ok" for r in rows), [r for r in rows if r["status"] != "ok"]
    assert max(r["generation"] for r in rows) == generations - 1
    best = run.get_json("best.json")
    assert best["n_scored"] == len(rows) and best["n_failed"] == 0
    return rows, best


# ---------------------------------------------------------------- e. disk full
# The disk-full case runs first: a local store needs a one-node Ray of its own, and the
# session's two-node cluster, not started yet, takes no CPU meanwhile.
@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()[:200]}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(folder) -> str:
    """Fill the file system of ``folder`` to the last few KiB; returns the filler."""
    path = os.path.join(folder, "filler")
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass
    return path


@pytest.fixture
def one_node(tmp_path):
    """A one-node Ray (``ray start`` head, 2 CPUs) that both of the case's drivers join:
    one Ray start instead of a private Ray per driver. A local store is allowed there."""
    with local_cluster({"GANC_CACHE": str(tmp_path / "cache")}, cpus_head=2,
                       cpus_worker=None) as c:
        yield c


def test_e_disk_full_during_a_checkpoint_one_line_and_resumable(small_disk, one_node,
                                                                tmp_path):
    from ganc.store import open_store
    store = small_disk / "store"
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    env = _driver_env(one_node, GANC_TRAIN_HOOK_DIR=hooks, GANC_TRAIN_HOOK_SLEEP=0.2)
    args = _args("train-teacher", TEACHER + ["scale.max_failures=0"], str(store), "e")
    run = open_store(str(store)).run("e")
    d = Driver(env, args)
    _wait(lambda: run.exists("teacher/latest.json"), "the first checkpoint", driver=d,
          timeout=400, every=0.2)
    filler = _fill(small_disk)
    assert d.wait() == 2, d.tail()
    errors = d.errors()
    assert len(errors) == 1, d.tail()
    assert "No space left on device" in errors[0] and "teacher" in errors[0], errors
    latest = run.get_json("teacher/latest.json")
    assert latest["step"] == CKPT_EVERY, latest
    state = run.get_torch(latest["key"])           # the previous checkpoint is intact
    assert int(state["step"]) == CKPT_EVERY
    assert not run.exists("teacher/final.pt")

    os.remove(filler)
    again = Driver({**env, "GANC_TRAIN_HOOK_SLEEP": "0"}, args)
    assert again.wait() == 0, again.tail()
    assert _check_trained(run) == [0, CKPT_EVERY]


# ---------------------------------------------------------------- training
def test_training_carries_an_s3_outage_then_resumes_a_sigkilled_worker(cluster, proxy,
                                                                       store_url, tmp_path):
    """One teacher run, two faults: the store unreachable for 10 s at the first checkpoint
    (the same worker waits and goes on: no failed upload, no restart), then the worker
    SIGKILLed mid-epoch (Ray Train restarts it from its last checkpoint)."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    d = Driver(_driver_env(cluster, GANC_TRAIN_HOOK_DIR=hooks, GANC_TRAIN_HOOK_SLEEP=0.2),
               _args("train-teacher", TEACHER, store_url, "train"))
    before = _wait(lambda: (p := _progress(hooks)) and p["step"] >= CKPT_EVERY - 2 and p,
                   "two steps before the first checkpoint", driver=d)
    assert before["step"] < CKPT_EVERY, "too late: the first checkpoint was already taken"
    downs = len(proxy.downtimes)
    proxy.outage(OUTAGE_S)
    during = _progress(hooks)
    # the worker waited at its checkpoint for the store (no step past it during the outage)
    assert during["step"] == CKPT_EVERY, (before, during)
    # step 15: past the checkpoint at 10, before the last one at 20
    info = _wait(lambda: (p := _progress(hooks)) and p["step"] >= 15 and p, "step 15",
                 driver=d)
    # ... and the same worker process went on: the retries carried the outage
    assert info["pid"] == before["pid"], "the worker was restarted by the outage"
    os.kill(info["pid"], signal.SIGKILL)
    assert d.wait() == 0, d.tail()
    assert len(proxy.downtimes) == downs + 1
    run = _run(store_url, "train")
    starts = _check_trained(run)
    # exactly one restart, from the last checkpoint before the kill
    assert len(starts) == 2 and starts[0] == 0, starts
    assert CKPT_EVERY <= starts[1] <= info["step"], (info, starts)
    assert starts[1] % CKPT_EVERY == 0, starts
    assert run.get_json("teacher/latest.json")["step"] == TEACHER_STEPS


# ---------------------------------------------------------------- search
def _fid_actor_pid(cluster) -> int | None:
    alive = [a for a in cluster.state("actors")
             if "FidActor" in str(a.get("class_name")) and a.get("state") == "ALIVE"
             and a.get("pid")]
    return int(alive[0]["pid"]) if alive else None


def test_search_survives_a_sigkilled_fid_actor_and_s3_outages(cluster, proxy, store_url):
    """One search, three faults: its FID actor's process SIGKILLed after the first
    checkpoint (the pool replaces it once), the store unreachable for 10 s right after
    (trials checkpoint and Tune saves its state meanwhile), and again as the driver is
    about to write results and best.json. Every config is recorded once, none lost."""
    make_supernet_run(store_url, "search")
    run = _run(store_url, "search")
    d = Driver(_driver_env(cluster), _args("search", SEARCH, store_url, "search"))
    seen = {}

    def outage_at_results():        # the driver is about to write results and best.json
        seen["best_before"] = run.exists("best.json")
        proxy.outage(OUTAGE_S)

    d.on_line("[ganc] search: ", outage_at_results)
    downs = len(proxy.downtimes)
    _wait(lambda: tune_checkpoints(run), "the search's first checkpoint", driver=d,
          every=0.5)
    pid = _wait(lambda: _fid_actor_pid(cluster), "the FID actor", driver=d, every=0.5)
    os.kill(pid, signal.SIGKILL)
    proxy.outage(OUTAGE_S)
    assert not run.exists("best.json"), "the search finished before the outage ended"
    assert d.wait() == 0, d.tail()
    assert seen == {"best_before": False}, seen
    assert len(proxy.downtimes) == downs + 2
    rows, best = _check_search(run, GENERATIONS)
    assert best["pool"]["restarts"] == 1 and best["pool"]["failed"] == 0, best["pool"]
    assert best["search"]["resumed"] is False
    assert any("store: write" in ln and "retry" in ln for ln in d.lines), d.tail()
    assert _fid_actor_pid(cluster) is None, "the pool's actors outlived the search"
