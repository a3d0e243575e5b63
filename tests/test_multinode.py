"""A two-node Ray cluster on 127.0.0.1 (``ray start`` head + worker, its own temp dir and
token): drivers join it (through RAY_ADDRESS, or the address ``ray start`` recorded), see
both nodes, and a run that would need a path only this machine has is refused before any
stage runs, in one line."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ganc.data.demo import make_demo_data

from .helpers import REPO

# include_dashboard=False: the private case's Ray needs no dashboard (joining ignores it)
PROBE = ("import json, sys; from ganc.raylocal import init_local; "
         "init_local(temp_dir=sys.argv[1] or None, include_dashboard=False); "
         "from ganc.cluster import current; print(json.dumps(current().to_dict()))")


pytestmark = pytest.mark.cluster


@pytest.fixture
def cluster(two_node):
    """The session's LocalCluster (tests/local_cluster.py)."""
    return two_node


def _env(cluster, **extra) -> dict:
    env = {k: v for k, v in cluster.env.items() if k not in ("RAY_ADDRESS", "GANC_RAY_PRIVATE")}
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


def _python(cluster, args, timeout=300, **env):
    return subprocess.run([sys.executable, *args], env=_env(cluster, **env), cwd=str(REPO),
                          capture_output=True, text=True, timeout=timeout)


def test_drivers_join_the_cluster_and_see_both_nodes(cluster):
    p = _python(cluster, ["-c", PROBE, ""], RAY_ADDRESS=cluster.address)
    assert p.returncode == 0, p.stderr[-2000:]
    info = json.loads(p.stdout.strip().splitlines()[-1])
    assert info["nodes"] == 2 and info["multi_node"]
    assert f"[ray] joined the Ray cluster at {cluster.address} (RAY_ADDRESS)" in p.stderr


def test_init_local_joins_the_cluster_ray_start_recorded_unless_private(cluster):
    p = _python(cluster, ["-c", PROBE, cluster.tmp])
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout.strip().splitlines()[-1])["nodes"] == 2
    assert f"joined the Ray cluster running on this host at {cluster.address}" in p.stderr
    p = _python(cluster, ["-c", PROBE, cluster.tmp], GANC_RAY_PRIVATE="1")
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout.strip().splitlines()[-1])["nodes"] == 1
    assert "started a private Ray on 127.0.0.1 (as asked)" in p.stderr


def _compress(cluster, *args):
    return _python(cluster, ["-m", "ganc", "compress", "--config", "configs/demo.yaml",
                             "--set", "data.demo_n=4", "--set", "data.demo_size=16", *args],
                   RAY_ADDRESS=cluster.address)


def _error_lines(p):
    return [ln for ln in p.stderr.splitlines() if ln.startswith("ganc ")]


def test_a_local_store_or_local_data_on_two_nodes_is_refused_before_any_stage(
        cluster, tmp_path, s3_url):
    store = tmp_path / "store"
    p = _compress(cluster, "--store", str(store))
    err = _error_lines(p)
    assert p.returncode == 2 and len(err) == 1, p.stderr[-3000:]
    assert (f"store.url 'file://{store}' is a folder on this machine and this Ray cluster has "
            "2 nodes") in err[0] and "s3://bucket/prefix" in err[0]
    assert not store.exists() or not any(store.rglob("*")), "something was written"
    assert "running" not in p.stdout

    data = tmp_path / "data"           # a valid dataset (its own checks pass): the refusal
    make_demo_data("paired", 8, 64, data, seed=0)   # is about where it lives
    p = _compress(cluster, "--store", s3_url, "--set", f"data.root={data}")
    err = _error_lines(p)
    assert p.returncode == 2 and len(err) == 1, p.stderr[-3000:]
    assert f"data.root '{data}' is a local folder and this Ray cluster has 2 nodes" in err[0]
