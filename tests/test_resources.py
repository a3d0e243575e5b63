"""Resource requests on a real (private, loopback) Ray: reservations the cluster cannot meet
fail in one line naming the resource; nothing secret travels in what Ray pickles or in the
workers' environment."""
from __future__ import annotations

import pickle
import uuid

import pytest

from ganc.cluster import current
from ganc.config import from_dict
from ganc.resources import ResourceError, reserve, worker_bundle

SECRET = "ganc-secret-" + uuid.uuid4().hex
KEY_ID = "GANCKEY" + uuid.uuid4().hex[:12].upper()
TOKEN = "ganc-token-" + uuid.uuid4().hex


def test_reservations_are_granted_or_refused_naming_the_resource(ray_local):
    import ray
    from ray.util.placement_group import placement_group_table
    info = current()
    assert info.nodes == 1 and not info.multi_node and info.resources["CPU"] == 2
    pg = reserve([worker_bundle(1, False)] * 2, 60, "two workers", keep=True)
    assert placement_group_table(pg)["state"] == "CREATED"
    ray.util.remove_placement_group(pg)
    assert reserve([worker_bundle(1, False)], 60, "one worker") is None
    for bundle, name in ((worker_bundle(1, True), "GPU"),
                         (worker_bundle(1, False, {"accel": 1}), "accel"),
                         (worker_bundle(3, False), "CPU")):
        with pytest.raises(ResourceError) as e:
            reserve([bundle], 600, "teacher: 1 Ray Train workers")
        msg = str(e.value)
        assert "\n" not in msg and f"{name}: need" in msg and "teacher" in msg, msg


def test_use_gpu_true_on_a_cpu_cluster_fails_in_one_line(ray_local, tmp_path, capsys):
    from ganc.cli import main
    rc = main(["train-teacher", "--config", "configs/demo.yaml", "--store", str(tmp_path),
               "--set", "scale.use_gpu=true", "--set", "teacher.steps=2",
               "--set", "data.demo_n=4", "--set", "data.demo_size=16"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("ganc ")]
    assert rc == 2 and len(err) == 1, err
    assert "GPU: need 1, the cluster has 0" in err[0]
    rec = __import__("json").loads((tmp_path / "runs" / "demo" / "placement.json").read_text())
    assert rec["use_gpu"] and rec["decided_by"] == "scale.use_gpu=true"


def test_fid_pool_asks_for_the_custom_resources(ray_local, tmp_path):
    from ganc.metrics.pool import EvalSplit, FidPool
    from ganc.metrics.fid import RealStats
    import numpy as np
    import torch
    real = RealStats(np.zeros(4), np.eye(4), None, 4, "x")
    split = EvalSplit(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), real)
    with pytest.raises(ResourceError, match=r"FID pool's 2 actors need 2 x \{CPU: 1, accel: 1\}"):
        FidPool(split, num_actors=2, resources={"accel": 1})


def test_no_credentials_in_what_ray_pickles_or_in_worker_env(s3_url, monkeypatch):
    """Ray Train's / Tune's storage filesystem (pickled into the controller, workers and
    tuner.pkl), the workers' runtime_env and the spec they get hold no credential."""
    from ganc.cluster import local_machine
    from ganc.context import open_context, ray_storage
    from ganc.train import launch
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    cfg = from_dict({"name": "creds", "data": {"demo_n": 4, "demo_size": 16}})
    ctx = open_context(cfg, s3_url, cluster=local_machine())
    path, fs = ray_storage(ctx.run, "teacher")
    from ray import cloudpickle
    blobs = [pickle.dumps(fs), cloudpickle.dumps(fs),
             cloudpickle.dumps({"config": ctx.cfg.to_dict(), **ctx.worker_spec()}),
             repr(launch.worker_env()).encode()]
    for blob in blobs:
        for secret in (SECRET, KEY_ID, TOKEN):
            assert secret.encode() not in blob
    # unpickled elsewhere, the filesystem signs with that process's own credentials
    again = pickle.loads(blobs[0])
    with again.open_output_stream(f"{path}/probe.txt") as f:
        f.write(b"ok")
    assert ctx.run.read_bytes("teacher/probe.txt") == b"ok"
    assert "AWS_ENDPOINT_URL" in launch.worker_env()


def test_no_credentials_in_tune_trials_runtime_env(monkeypatch):
    """Ray Tune copies the driver's AWS keys into every trial's runtime_env (logged by each
    node's runtime env agent, reported by the state API) unless ganc takes them out."""
    from ray.tune.execution import class_cache

    from ganc.context import keep_credentials_out_of_tune
    monkeypatch.setattr(class_cache, "ENV_VARS_TO_PROPAGATE",
                        set(class_cache.ENV_VARS_TO_PROPAGATE))   # restored afterwards
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    keep_credentials_out_of_tune()

    class Trainable:
        pass

    options = class_cache._ActorClassCache().get(Trainable)._default_options
    blob = repr(options["runtime_env"]).encode()
    for secret in (SECRET, KEY_ID, TOKEN):
        assert secret.encode() not in blob
    assert "PL_DISABLE_FORK" in options["runtime_env"]["env_vars"]   # Tune's own still go
