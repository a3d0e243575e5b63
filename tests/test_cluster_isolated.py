"""No shared filesystem: the demo pipeline by `ray job submit` on a two-node cluster whose
nodes share no files (tests/isolated_cluster.py). The head has no CPUs, so every training
worker, FID actor and trial that holds a CPU runs on the worker node, which is another Unix
user that sees none of the driver's folders and gets S3 credentials only from its own
~/.aws (the default chain, as an instance role would give them); the head's job drivers
have them in their environment. Data and store are on the local S3 server; "the laptop"
(this process) pulls the best model and runs it.

One cluster for the module; one pipeline run shared by the checks on it. Skips with the
reason when this machine cannot isolate a node (not root, no mount namespace).
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import string
import subprocess
import sys
import uuid

import numpy as np
import pytest
from PIL import Image

from .conftest import S3_BUCKET
from .helpers import REPO, demo_data_on_s3
from .isolated_cluster import IsolatedCluster, NotIsolatable, require_isolation

# The demo pipeline, every stage, each a few steps on 12 images of 64px.
TINY = ["teacher.steps=8", "teacher.checkpoint_every=4", "distill.steps=8",
        "distill.checkpoint_every=4", "search.population=4", "search.generations=2",
        "prune.steps=4", "prune.sample_every=4", "prune.samples=2", "prune.finetune_steps=2",
        "prune.targets=0.3", "finetune.steps=4", "finetune.checkpoint_every=2",
        "scale.workers=1", "pipeline.report_images=2"]
RUN_ID = "tiny"
# Ray class names: Train workers, FID actors, Tune trials (function trainables).
TRAIN_WORKER, FID_ACTOR, TRIAL = "RayTrainWorker", "FidActor", "ImplicitFunc"


@pytest.fixture(scope="module")
def credentials():
    """A distinctive key pair (moto accepts any): the scan looks for the secret's value."""
    alphabet = string.ascii_uppercase + string.digits
    key_id = "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))
    secret = base64.b64encode(secrets.token_bytes(30)).decode()   # 40 characters, like AWS's
    return key_id, secret


@pytest.fixture(scope="module")
def prefix(s3_server):
    return f"{S3_BUCKET}/iso-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def iso(s3_server, credentials):
    why = require_isolation()
    if why:
        pytest.skip(f"isolated cluster: {why}")
    key_id, secret = credentials
    region = "us-east-1"
    no_proxy = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    # The head (and the job drivers it runs) has the keys in its environment, as a user's
    # machine or an S3-compatible setup would; the worker node only has its ~/.aws.
    head_env = {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret,
                "AWS_DEFAULT_REGION": region, "AWS_ENDPOINT_URL": s3_server, **no_proxy}
    worker_files = {
        ".aws/credentials": f"[default]\naws_access_key_id = {key_id}\n"
                            f"aws_secret_access_key = {secret}\n",
        ".aws/config": f"[default]\nregion = {region}\nendpoint_url = {s3_server}\n"}
    cluster = IsolatedCluster(head_env, worker_files, worker_env=no_proxy, worker_cpus=2)
    try:
        try:
            cluster.start()
        except NotIsolatable as e:
            pytest.skip(f"isolated cluster: {e}")
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def data_url(s3_server, prefix, tmp_path_factory):
    return demo_data_on_s3(f"s3://{prefix}/data/demo", tmp_path_factory.mktemp("demo"))


def _job(store: str, data: str) -> list[str]:
    args = ["python", "jobs/compress.py", "--config", "configs/demo.yaml", "--store", store,
            "--run-id", RUN_ID, "--set", f"data.root={data}"]
    for s in TINY:
        args += ["--set", s]
    return args


@pytest.fixture(scope="module")
def run(iso, prefix, data_url):
    """The demo pipeline, submitted once; (status, job logs, store URL, actors)."""
    store = f"s3://{prefix}/store"
    status, logs = iso.submit(_job(store, data_url), REPO, "ganc-iso-run", timeout=1500)
    return status, logs, store, iso.state("actors")


def test_pipeline_on_the_worker_node_then_pull_and_translate(iso, run, tmp_path):
    status, logs, store, actors = run
    assert status == "SUCCEEDED", logs[-5000:]
    for stage in ("teacher", "supernet", "search", "prune", "finetune", "export", "report"):
        assert f"{stage}: done" in logs, stage
    # Training workers, FID actors and every trial that holds CPUs (the pruning trials)
    # ran on the worker node. Search trials hold no CPU by design (they only wait on the
    # FID pool; ganc/search/driver.py) and may be placed on the head.
    worker = iso.worker_node_id()
    table = "\n".join(f"{a.get('class_name')} {a.get('node_id')} {a.get('required_resources')}"
                      for a in actors)

    def holds_cpu(a):
        return any(k.startswith("CPU") and v > 0
                   for k, v in (a.get("required_resources") or {}).items())

    for kind, select in ((TRAIN_WORKER, lambda a: True), (FID_ACTOR, lambda a: True),
                         (TRIAL, holds_cpu)):
        placed = {a.get("node_id") for a in actors
                  if kind in (a.get("class_name") or "") and select(a)}
        assert placed == {worker}, f"{kind}: on {placed}, worker node {worker}\n{table}"
    # The placement was decided once and recorded in the run.
    import s3fs
    fs = s3fs.S3FileSystem()
    run_key = f"{store[len('s3://'):]}/runs/{RUN_ID}"
    placement = json.loads(fs.cat(f"{run_key}/placement.json"))
    assert placement["device"] == "cpu" and placement["cluster"]["nodes"] == 2, placement
    # "The laptop" gets the model.
    out = tmp_path / "pulled"
    p = subprocess.run([sys.executable, "-m", "ganc", "pull", f"{store}/runs/{RUN_ID}", "--best",
                        "-o", str(out)], capture_output=True, text=True,
                       env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert p.returncode == 0, p.stderr
    assert {"model.pt", "model.json", "best.json"} <= set(os.listdir(out))
    # ... and runs it.
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(images / f"{i}.png")
    p = subprocess.run([sys.executable, "-m", "ganc", "translate", "--weights",
                        str(out / "model.pt"), "--input", str(images), "--output",
                        str(tmp_path / "translated"), "--size", "64"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(tmp_path / "translated")) == ["0.png", "1.png"]


def test_file_store_refused_at_submission_with_one_line(iso, data_url, tmp_path):
    store = f"file://{tmp_path}/store"
    status, logs = iso.submit(_job(store, data_url), REPO, "ganc-iso-file-store", timeout=600)
    assert status == "FAILED", logs[-3000:]
    assert "Traceback" not in logs, logs[-3000:]
    errors = [line for line in logs.splitlines() if line.startswith("ganc ")]
    assert len(errors) == 1, logs[-3000:]
    assert f"store.url '{store}'" in errors[0] and "s3://" in errors[0], errors[0]
    for stage in ("teacher", "supernet"):
        assert f"{stage}: running" not in logs and f"{stage}: done" not in logs, logs[-3000:]
    assert not os.path.exists(f"{tmp_path}/store/runs"), "a stage wrote to the refused store"


def test_secret_in_no_stored_object_log_or_runtime_env(iso, run, prefix, credentials):
    _, logs, _, actors = run
    secret = credentials[1].encode()
    import s3fs
    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    keys = fs.find(prefix)
    names = " ".join(keys)
    # Tune's and Train's own files are among what is scanned, not just ganc's.
    for part in ("tuner.pkl", "experiment_state", "checkpoint", "result"):
        assert part in names, f"no {part} object under {prefix}: the scan would miss it"
    leaked = [k for k in keys if secret in fs.cat_file(k)]
    assert not leaked, f"the secret key is in {leaked[:5]}"
    # Every job's logs, every file of both nodes' Ray session folders (all process logs,
    # runtime environments), and what Ray's state API reports (runtime_env included).
    for job in iso.state("jobs"):
        assert secret.decode() not in iso.logs(job["submission_id"]), job["submission_id"]
    assert secret.decode() not in logs
    for path in iso.log_files():
        assert secret not in path.read_bytes(), f"the secret key is in {path}"
    for what in ("jobs", "actors", "tasks"):
        assert secret.decode() not in json.dumps(iso.state(what)), f"ray list {what}"
