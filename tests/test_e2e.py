"""End to end, as a user runs it: a Ray head and a worker node (separate ``ray start``
processes on 127.0.0.1), the local S3 server, ``ray job submit`` of the pipeline with the
store on s3://, then ``ganc pull`` and ``ganc translate`` with what it produced."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from .conftest import S3_BUCKET
from .helpers import REPO
from .local_cluster import local_cluster

# A complete but tiny pipeline: every stage runs, each for a few steps.
TINY = ["teacher.steps=16", "teacher.checkpoint_every=8", "distill.steps=16",
        "distill.checkpoint_every=8", "search.population=4", "search.generations=3",
        "prune.steps=8", "prune.sample_every=4", "prune.samples=2", "prune.finetune_steps=2",
        "prune.targets=0.3", "finetune.steps=4", "finetune.checkpoint_every=2",
        "scale.workers=1", "data.demo_n=12", "pipeline.report_images=2"]


def _job(run_id: str, store: str) -> list[str]:
    args = [sys.executable, "jobs/compress.py", "--config", "configs/demo.yaml", "--store", store,
            "--run-id", run_id]
    for s in TINY:
        args += ["--set", s]
    return args


def _ganc(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ganc", *args], capture_output=True, text=True,
                          env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})


def _s3():
    import s3fs
    return s3fs.S3FileSystem(client_kwargs={"endpoint_url": os.environ["AWS_ENDPOINT_URL"]})


@pytest.fixture(scope="module")
def cluster(s3_server, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    with local_cluster({"GANC_CACHE": str(cache)}) as c:
        yield c


def test_submit_pipeline_pull_and_translate(cluster, tmp_path):
    store = f"s3://{S3_BUCKET}/e2e"
    status, logs = cluster.submit(_job("tiny", store), str(REPO), "ganc-e2e-1", timeout=1200)
    assert status == "SUCCEEDED", (status, logs[-4000:])
    for stage in ("teacher", "supernet", "search", "prune", "finetune", "export", "report"):
        assert f"{stage}: done" in logs, stage
    fs = _s3()
    run = f"{S3_BUCKET}/e2e/runs/tiny"
    for key in ("best.json", "search/results.parquet", "search/pareto.parquet",
                "export/model.pt", "export/model.onnx", "export/model.pt2", "export/model.json",
                "report/summary.json", "report/grid.png", "report/pareto.png"):
        assert fs.exists(f"{run}/{key}"), key
    summary = json.loads(fs.cat(f"{run}/report/summary.json"))
    methods = {r["method"] for r in summary["rows"]}
    assert {"teacher", "evolution", "prune-lds"} <= methods

    out = tmp_path / "pulled"
    p = _ganc("pull", f"{store}/runs/tiny", "--best", "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert {"model.pt", "model.json", "best.json"} <= set(os.listdir(out))
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(imgs / f"{i}.png")
    p = _ganc("translate", "--weights", str(out / "model.pt"), "--input", str(imgs),
              "--output", str(tmp_path / "translated"), "--size", "64")
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(tmp_path / "translated")) == ["0.png", "1.png"]


def test_killed_driver_resubmitted_redoes_no_finished_stage(cluster):
    store = f"s3://{S3_BUCKET}/e2e"
    run = f"{S3_BUCKET}/e2e/runs/resume"
    fs = _s3()
    job = _job("resume", store) + ["--set", "search.generations=6"]
    cluster.submit_no_wait(job, str(REPO), "ganc-e2e-kill")
    # Wait until the search is under way (supernet finished, Tune state saved), then kill.
    deadline = time.time() + 900
    while time.time() < deadline:
        fs.invalidate_cache()
        if fs.exists(f"{run}/pipeline/supernet.json") and any(
                "experiment_state" in k or "searcher" in k
                for k in fs.find(f"{run}/search")):
            break
        assert cluster.status("ganc-e2e-kill") in ("PENDING", "RUNNING"), \
            cluster.logs("ganc-e2e-kill")[-3000:]
        time.sleep(2)
    else:
        pytest.fail("the search never started")
    time.sleep(3)
    cluster.ray("job", "stop", f"--address={cluster.dashboard}", "ganc-e2e-kill")
    assert cluster.wait("ganc-e2e-kill", 120) in ("STOPPED", "FAILED")
    fs.invalidate_cache()
    assert not fs.exists(f"{run}/pipeline/search.json"), "killed too late: search had finished"
    before = {s: json.loads(fs.cat(f"{run}/pipeline/{s}.json")) for s in ("teacher", "supernet")}
    mtimes = {k: fs.info(f"{run}/{k}")["LastModified"]
              for k in ("teacher/final.pt", "supernet/final.pt")}

    status, logs = cluster.submit(job, str(REPO), "ganc-e2e-resume", timeout=1200)
    assert status == "SUCCEEDED", logs[-4000:]
    assert "teacher: finished earlier, skipped" in logs
    assert "supernet: finished earlier, skipped" in logs
    fs.invalidate_cache()
    for s, marker in before.items():
        assert json.loads(fs.cat(f"{run}/pipeline/{s}.json")) == marker
    for k, m in mtimes.items():
        assert fs.info(f"{run}/{k}")["LastModified"] == m, f"{k} was rewritten"
    best = json.loads(fs.cat(f"{run}/best.json"))
    assert best["search"]["resumed"] is True
    assert fs.exists(f"{run}/export/model.pt")
