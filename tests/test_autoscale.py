"""Autoscaling from zero: Ray's fake multi-node autoscaler (tests/autoscale_cluster.py) on
127.0.0.1 with one worker type at min 0 that carries `accel`, a custom resource standing in
for GPU; the head has CPUs but no `accel`. A teacher training job and a search job ask for
`accel` (`scale.resources`), so the autoscaler must start nodes of that type for them, and
their Train workers and FID actors must run there. Between the jobs the idle node is
stopped, so the search starts its node from zero again. The search job runs the search
stage alone, on a supernet the test puts in the store (tests/test_search.py's
make_supernet_run): the teacher job already shows Train workers placed on a node started
for them. Store and data on the local S3 server (a fake node shares this machine's disk,
but a cluster that can add nodes must not rely on that). One cluster for the module.
"""
from __future__ import annotations

import os
import uuid

import pytest

from .autoscale_cluster import LoopbackAutoscalingCluster
from .lifecycle import S3_BUCKET
from .golden import wait_for
from .helpers import REPO, demo_data_on_s3
from .test_search import make_supernet_run

NODE_TYPE = "accel_node"
HEAD_CPUS = 2
TINY = ["teacher.steps=8", "teacher.checkpoint_every=4", "distill.steps=8",
        "distill.checkpoint_every=4", "search.population=4", "search.generations=2",
        "scale.workers=1", "scale.use_gpu=false", "scale.resources={accel: 1}",
        "fid.num_actors=1"]

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster(s3_server, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    from ganc.metrics.inception_weights import fid_helper_cache_path
    weights = fid_helper_cache_path()      # this machine's copy, if any (GUIDE §3)
    if weights.is_file():
        (cache / "inception").mkdir()
        os.symlink(weights, cache / "inception" / weights.name)
    env = {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "NO_PROXY", "no_proxy"))}
    c = LoopbackAutoscalingCluster(
        head_resources={"CPU": HEAD_CPUS},
        worker_node_types={NODE_TYPE: {"resources": {"CPU": 2, "accel": 1}, "node_config": {},
                                       "min_workers": 0, "max_workers": 2}},
        env={**env, "GANC_CACHE": str(cache)})
    try:
        yield c.start()
    finally:
        c.shutdown()


@pytest.fixture(scope="module")
def store(s3_server, tmp_path_factory):
    prefix = f"s3://{S3_BUCKET}/auto-{uuid.uuid4().hex[:8]}"
    return prefix, demo_data_on_s3(f"{prefix}/data", tmp_path_factory.mktemp("demo"))


def _job(script: str, store: tuple[str, str], run_id: str, *extra: str) -> list[str]:
    args = ["python", script, "--config", "configs/demo.yaml", "--store", f"{store[0]}/store",
            "--run-id", run_id, "--set", f"data.root={store[1]}"]
    for s in TINY:
        args += ["--set", s]
    return args + list(extra)


def _accel_nodes(cluster) -> dict[str, dict]:
    return {n["node_id"]: n for n in cluster.alive_nodes()
            if "accel" in (n.get("resources_total") or {})}


def _check_job(cluster, submission_id: str, logs: str, before: set[str], must_run: tuple[str, ...]):
    # The autoscaler added a node of the accel type while this job waited for it ...
    assert f"Adding 1 node(s) of type {NODE_TYPE}" in logs or \
        f"node(s) of type {NODE_TYPE}" in logs, logs[-3000:]
    # ... and what asked for `accel` ran there, on a node that did not exist before.
    nodes = {n["node_id"]: n for n in cluster.state("nodes")}
    job_id = next(j["job_id"] for j in cluster.state("jobs")
                  if j.get("submission_id") == submission_id)
    actors = [a for a in cluster.state("actors") if a.get("job_id") == job_id]
    table = "\n".join(f"{a.get('class_name')} {a.get('node_id')}" for a in actors)
    for cls in must_run:
        placed = {a["node_id"] for a in actors if cls in (a.get("class_name") or "")}
        assert placed, f"no {cls} actor in job {submission_id}\n{table}"
        for node_id in placed:
            assert "accel" in (nodes[node_id].get("resources_total") or {}), \
                f"{cls} ran on {node_id}, which has no accel\n{table}"
            assert node_id not in before, f"{cls} ran on a node that was already there"


def test_jobs_start_the_nodes_they_ask_for_from_zero(cluster, store):
    head = cluster.alive_nodes()
    assert len(head) == 1 and "accel" not in (head[0].get("resources_total") or {})
    # min_workers 0: nothing starts without a request, over three of the autoscaler's
    # update rounds (one a second)
    rounds = cluster.update_rounds()
    wait_for(lambda: cluster.update_rounds() >= rounds + 3,
             "three autoscaler update rounds (its monitor log)", timeout=120, every=1)
    assert not _accel_nodes(cluster)
    assert f"node(s) of type {NODE_TYPE}" not in cluster.monitor_log()
    before = {n["node_id"] for n in cluster.state("nodes")}

    status, logs = cluster.submit(_job("jobs/train_teacher.py", store, "auto"), REPO,
                                  "auto-teacher", timeout=900)
    assert status == "SUCCEEDED", logs[-4000:]
    _check_job(cluster, "auto-teacher", logs, before, ("RayTrainWorker",))

    # Idle nodes go away (idle_timeout 6 s), so the search starts from zero again.
    wait_for(lambda: not _accel_nodes(cluster), "the idle accel node to stop", timeout=120,
             every=1)
    before = {n["node_id"] for n in cluster.state("nodes")}
    make_supernet_run(f"{store[0]}/store", "auto-search")
    status, logs = cluster.submit(_job("jobs/search.py", store, "auto-search"), REPO,
                                  "auto-search", timeout=900)
    assert status == "SUCCEEDED", logs[-4000:]
    assert "[ganc] search: " in logs, logs[-3000:]
    from ganc.store import open_store
    best = open_store(f"{store[0]}/store").run("auto-search").get_json("best.json")
    assert best["n_scored"] > 0 and best["n_failed"] == 0, best
    _check_job(cluster, "auto-search", logs, before, ("FidActor",))
