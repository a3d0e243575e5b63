"""What the cluster tests share: the `ray` command line against one test cluster (jobs,
nodes, state), and finding exactly the processes a test cluster started.

Every process of a test cluster carries ``GANC_TEST_CLUSTER=<name>`` in its environment
(Ray passes its environment on to the processes it starts: GCS, raylets, workers, job
drivers, and the nodes the fake autoscaler starts), so teardown kills those and nothing
else: never ``ray stop``, which would end every Ray of this user on the machine.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

VENV = Path(sys.prefix)
MARKER = "GANC_TEST_CLUSTER"
# Ray's State API clients inside a cluster's processes (Ray Train's placement-group
# cleaner) look for "the" Ray of this host unless told where its dashboard is, and fail
# when other Ray instances run here too.
API_SERVER_ENV = "RAY_API_SERVER_ADDRESS"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pids(select) -> list[int]:
    """PIDs (other than ours) for which ``select(pid)`` holds; unreadable ones are skipped."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if select(int(entry)):
                    out.append(int(entry))
            except OSError:
                pass
    return out


def has_env(pid: int, entry: bytes) -> bool:
    with open(f"/proc/{pid}/environ", "rb") as f:
        return entry in f.read().split(b"\0")


def owned_by(pid: int, uid: int) -> bool:
    return os.stat(f"/proc/{pid}").st_uid == uid


def kill_all(select, rounds: int = 10) -> None:
    for _ in range(rounds):
        found = pids(select)
        if not found:
            return
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.5)


class ClusterCLI:
    """The `ray` CLI against one cluster: set ``env`` (with ``MARKER``), ``address`` and
    ``dashboard`` before use."""
    name: str
    env: dict
    address: str
    dashboard: str

    def ray(self, *args, timeout: float = 180, check: bool = True, env: dict | None = None) -> str:
        out = subprocess.run([str(VENV / "bin" / "ray"), *args], env=env or self.env,
                             capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise RuntimeError(f"ray {' '.join(args[:2])} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout + out.stderr

    # ------------------------------------------------------------------ in-process clients
    def auth_token(self) -> str:
        return getattr(self, "token", None) or self.env["RAY_AUTH_TOKEN"]

    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.auth_token()}",
                "Content-Type": "application/json"}

    def jobs_client(self):
        """Ray's job SDK against this cluster's dashboard (in this process: no `ray` CLI
        subprocess per poll), with this cluster's token."""
        if getattr(self, "_jobs", None) is None:
            from ray.job_submission import JobSubmissionClient
            self._jobs = JobSubmissionClient(self.dashboard, headers=self._headers())
        return self._jobs

    # ------------------------------------------------------------------ jobs
    def _submit(self, entrypoint: list[str], working_dir: str | Path, submission_id: str,
                timeout: float) -> str:
        """``ray job submit --no-wait --working-dir`` as a user runs it, retried while the
        head's job agent is still coming up (it starts a little after ``ray start``);
        returns the CLI's output."""
        args = ["job", "submit", f"--address={self.dashboard}", f"--working-dir={working_dir}",
                f"--submission-id={submission_id}", "--no-wait"]
        deadline = time.time() + timeout
        while True:
            text = self.ray(*args, "--", *entrypoint, timeout=timeout, check=False)
            if "No available agent" not in text or time.time() > deadline:
                return text
            time.sleep(2)

    def submit(self, entrypoint: list[str], working_dir: str | Path, submission_id: str,
               timeout: float = 900) -> tuple[str, str]:
        """Submit and wait for the job to end; returns (final status, job logs)."""
        self.submit_no_wait(entrypoint, working_dir, submission_id)
        status = self.wait(submission_id, timeout=timeout)
        if status == "TIMEOUT":
            raise AssertionError(f"job {submission_id} did not end within {timeout:g}s:\n"
                                 + self.logs(submission_id)[-3000:])
        return status, self.logs(submission_id)

    def submit_no_wait(self, entrypoint: list[str], working_dir: str | Path,
                       submission_id: str) -> str:
        text = self._submit(entrypoint, working_dir, submission_id, 180)
        if self.status(submission_id) not in ("PENDING", "RUNNING", "SUCCEEDED", "FAILED",
                                              "STOPPED"):
            raise RuntimeError("ray job submit failed:\n" + text[-3000:])
        return text

    def status(self, submission_id: str) -> str:
        """The job's status (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED), or UNKNOWN."""
        try:
            return self.jobs_client().get_job_status(submission_id).value
        except RuntimeError:          # the SDK's "job does not exist"
            return "UNKNOWN"

    def stop_job(self, submission_id: str) -> None:
        self.jobs_client().stop_job(submission_id)

    def wait(self, submission_id: str, timeout: float = 900,
             until=("SUCCEEDED", "FAILED", "STOPPED")) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            s = self.status(submission_id)
            if s in until:
                return s
            time.sleep(1)
        return "TIMEOUT"

    def logs(self, submission_id: str) -> str:
        return self.jobs_client().get_job_logs(submission_id)

    # ------------------------------------------------------------------ state
    def state(self, what: str) -> list[dict]:
        """Ray's state API (``ray list <what> --detail``, in this process) as dicts: nodes,
        actors, tasks, jobs, ..."""
        from dataclasses import asdict, is_dataclass

        from ray.util.state.api import StateApiClient
        from ray.util.state.common import ListApiOptions, StateResource
        client = StateApiClient(self.dashboard, headers=self._headers())
        rows = client.list(StateResource(what), options=ListApiOptions(
            detail=True, limit=10000, timeout=60), raise_on_missing_output=False)
        return [asdict(r) if is_dataclass(r) else dict(r) for r in rows]

    def alive_nodes(self) -> list[dict]:
        return [n for n in self.state("nodes") if n.get("state") == "ALIVE"]

    def wait_nodes(self, n: int, timeout: float = 120) -> list[dict]:
        deadline = time.time() + timeout
        while True:
            alive = self.alive_nodes()
            if len(alive) >= n or time.time() > deadline:
                assert len(alive) >= n, alive
                return alive
            time.sleep(1)

    def kill_marked(self) -> None:
        entry = f"{MARKER}={self.name}".encode()
        kill_all(lambda pid: has_env(pid, entry))
