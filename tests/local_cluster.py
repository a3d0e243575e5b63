"""A real multi-node Ray cluster on 127.0.0.1 for end-to-end tests: a head and one extra
worker node, each started with ``ray start`` as separate processes, with their own temp
dir and token. Teardown stops exactly what was started (every process of the cluster
carries its marker, tests/cluster_cli.py), never ``ray stop``, which would end every Ray of
this user on the machine."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from contextlib import contextmanager

import pytest

from .cluster_cli import API_SERVER_ENV, MARKER, ClusterCLI, free_port

__all__ = ["LocalCluster", "local_cluster", "free_port", "s3_proxy", "two_node"]


class LocalCluster(ClusterCLI):
    def __init__(self, env: dict, cpus_head: int = 1, cpus_worker: int | None = 1):
        """``cpus_worker=None``: a head alone (a one-node cluster several drivers join)."""
        self.name = "gc" + uuid.uuid4().hex[:8]
        self.tmp = tempfile.mkdtemp(prefix="gc", dir="/tmp")   # short: socket paths
        self.port = free_port()
        self.dashboard_port = free_port()
        # Token authentication with a token of this cluster's own, passed to every process
        # (head, worker, job CLI), so no ~/.ray/auth_token is read or written.
        self.env = {**os.environ, **env, "RAY_USAGE_STATS_ENABLED": "0",
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex,
                    MARKER: self.name}
        self.cpus = (cpus_head, cpus_worker)
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self.env[API_SERVER_ENV] = self.dashboard

    def start(self):
        # Ray swaps a loopback --node-ip-address for the machine's routable address unless
        # its single-node mode is on; the head runs in that mode (everything on
        # 127.0.0.1), and the worker node joins through tests/ray_start_loopback.py.
        common = ["--disable-usage-stats", f"--temp-dir={self.tmp}"]
        head_env = {**self.env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        self.ray("start", "--head", "--node-ip-address=127.0.0.1", f"--port={self.port}",
                 f"--num-cpus={self.cpus[0]}", "--include-dashboard=true",
                 "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
                 f"--dashboard-agent-listen-port={free_port()}",
                 f"--ray-client-server-port={free_port()}", *common, env=head_env)
        self.env = head_env  # the job CLI and drivers run in single-node mode too
        if self.cpus[1] is None:
            return self
        out = subprocess.run(
            [sys.executable, "-m", "tests.ray_start_loopback", f"--address={self.address}",
             "--node-ip-address=127.0.0.1", f"--num-cpus={self.cpus[1]}",
             f"--dashboard-agent-listen-port={free_port()}", *common],
            env=head_env, capture_output=True, text=True, timeout=180,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if out.returncode != 0:
            raise RuntimeError(f"ray start (worker) failed:\n{out.stdout}\n{out.stderr}")
        return self

    def node_addresses(self) -> list[str]:
        return sorted(n.get("node_ip") or n.get("node_ip_address") for n in self.state("nodes"))

    def stop(self):
        self.kill_marked()
        shutil.rmtree(self.tmp, ignore_errors=True)


@contextmanager
def local_cluster(env: dict | None = None, **kw):
    c = LocalCluster(env or {}, **kw)
    try:
        yield c.start()
    finally:
        c.stop()


# ---------------------------------------------------------------- the session's cluster
@pytest.fixture(scope="session")
def s3_proxy(s3_server):
    """A proxy in front of the local S3 server that a test can take down (tests/s3_proxy.py)."""
    from .s3_proxy import PausableProxy
    p = PausableProxy(int(s3_server.rsplit(":", 1)[1]))
    yield p
    p.close()


@pytest.fixture(scope="session")
def two_node(s3_proxy, tmp_path_factory):
    """The session's one LocalCluster (head 1 CPU + worker node 1 CPU), shared by the
    fault and multi-node tests. Every process of it (and each driver joined to it) reaches
    S3 through the proxy, with botocore's own retries off (a few seconds of them would
    hide a missing retry of ganc's: outages must be carried by ganc's bounded, logged
    retries)."""
    from .lifecycle import release_after_last_use
    cache = tmp_path_factory.mktemp("cluster-cache")
    with local_cluster({"GANC_CACHE": str(cache), "AWS_ENDPOINT_URL": s3_proxy.endpoint,
                        "AWS_MAX_ATTEMPTS": "1"}) as c:
        release_after_last_use("two_node", c.stop)      # stop() may run twice
        yield c
