"""A real multi-node Ray cluster on 127.0.0.1 for end-to-end tests: a head and one extra
worker node, each started with ``ray start`` as separate processes, with their own temp
dir so teardown stops exactly what was started (never ``ray stop``, which would end every
Ray of this user on the machine)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager


BIN = os.path.dirname(sys.executable)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pids_matching(marker: str) -> list[int]:
    """PIDs whose command line contains ``marker`` (read from /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            pids.append(int(entry))
    return pids


def _kill_tree_matching(marker: str) -> int:
    pids = pids_matching(marker)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(pids)


class LocalCluster:
    def __init__(self, env: dict, cpus_head: int = 1, cpus_worker: int = 1):
        self.tmp = tempfile.mkdtemp(prefix="gc", dir="/tmp")   # short: socket paths
        self.port = free_port()
        self.dashboard_port = free_port()
        # Token authentication with a token of this cluster's own, passed to every process
        # (head, worker, job CLI), so no ~/.ray/auth_token is read or written.
        self.env = {**os.environ, **env, "RAY_USAGE_STATS_ENABLED": "0",
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex}
        self.cpus = (cpus_head, cpus_worker)
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self.started = []

    def _ray(self, *args, timeout=180, env=None):
        out = subprocess.run([os.path.join(BIN, "ray"), *args], env=env or self.env,
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"ray {' '.join(args[:2])} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout

    def start(self):
        # Ray swaps a loopback --node-ip-address for the machine's routable address unless
        # its single-node mode is on; the head runs in that mode (everything on
        # 127.0.0.1), and the worker node joins through tests/ray_start_loopback.py.
        common = ["--disable-usage-stats", f"--temp-dir={self.tmp}"]
        head_env = {**self.env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        self._ray("start", "--head", "--node-ip-address=127.0.0.1", f"--port={self.port}",
                  f"--num-cpus={self.cpus[0]}", "--include-dashboard=true",
                  "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
                  f"--dashboard-agent-listen-port={free_port()}",
                  f"--ray-client-server-port={free_port()}", *common, env=head_env)
        self.started.append("head")
        out = subprocess.run(
            [sys.executable, "-m", "tests.ray_start_loopback", f"--address={self.address}",
             "--node-ip-address=127.0.0.1", f"--num-cpus={self.cpus[1]}",
             f"--dashboard-agent-listen-port={free_port()}", *common],
            env=head_env, capture_output=True, text=True, timeout=180,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if out.returncode != 0:
            raise RuntimeError(f"ray start (worker) failed:\n{out.stdout}\n{out.stderr}")
        self.started.append("worker")
        self.env = head_env  # the job CLI and drivers run in single-node mode too
        return self

    def node_addresses(self) -> list[str]:
        out = self._ray("list", "nodes", f"--address={self.address}", "--format=json")
        import json
        return sorted(n.get("node_ip") or n.get("node_ip_address") for n in json.loads(out))

    def _submit(self, entrypoint, working_dir, submission_id, wait: bool, timeout: float,
                runtime_env=None) -> str:
        """Run ``ray job submit``, retrying while the head's job agent is still coming up
        (it starts a little after ``ray start``); returns its output."""
        import json
        args = ["job", "submit", f"--address={self.dashboard}", f"--working-dir={working_dir}",
                f"--submission-id={submission_id}"] + ([] if wait else ["--no-wait"])
        if runtime_env:
            args.append(f"--runtime-env-json={json.dumps(runtime_env)}")
        for _ in range(30):
            out = subprocess.run([os.path.join(BIN, "ray"), *args, "--", *entrypoint],
                                 env=self.env, capture_output=True, text=True, timeout=timeout)
            text = out.stdout + out.stderr
            if "No available agent" not in text:
                return text
            time.sleep(2)
        return text

    def submit(self, entrypoint: list[str], working_dir: str, submission_id: str,
               timeout: float = 900, runtime_env: dict | None = None) -> tuple[str, str]:
        """Submit with ``ray job submit`` (waits for the job); returns (status, logs)."""
        text = self._submit(entrypoint, working_dir, submission_id, True, timeout, runtime_env)
        try:
            return self.wait(submission_id, timeout=120), self.logs(submission_id)
        except RuntimeError:
            raise RuntimeError("ray job submit failed:\n" + text[-3000:])

    def submit_no_wait(self, entrypoint, working_dir, submission_id, runtime_env=None):
        text = self._submit(entrypoint, working_dir, submission_id, False, 180, runtime_env)
        self.status(submission_id)  # raises with the CLI's output if the job does not exist
        return text

    def status(self, submission_id: str) -> str:
        out = self._ray("job", "status", f"--address={self.dashboard}", submission_id).lower()
        # e.g. "Job 'x' succeeded", "Job 'x' was stopped", "Status for job 'x': RUNNING"
        for word in ("stopped", "succeeded", "failed", "running", "pending"):
            if word in out:
                return word.upper()
        return out.strip()

    def logs(self, submission_id: str) -> str:
        try:
            return self._ray("job", "logs", f"--address={self.dashboard}", submission_id)
        except RuntimeError as e:
            return str(e)

    def wait(self, submission_id: str, timeout: float = 900,
             until=("SUCCEEDED", "FAILED", "STOPPED")) -> str:
        t0 = time.time()
        while time.time() - t0 < timeout:
            s = self.status(submission_id)
            if s in until:
                return s
            time.sleep(2)
        return "TIMEOUT"

    def stop(self):
        # Every process of this cluster names its temp dir on its command line.
        for _ in range(3):
            if not _kill_tree_matching(self.tmp):
                break
            time.sleep(1)
        shutil.rmtree(self.tmp, ignore_errors=True)


@contextmanager
def local_cluster(env: dict | None = None, **kw):
    c = LocalCluster(env or {}, **kw)
    try:
        yield c.start()
    finally:
        c.stop()
