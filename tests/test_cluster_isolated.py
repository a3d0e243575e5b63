"""The session's one pipeline run (tests/golden.py), read: the demo pipeline by `ray job
submit` on a two-node cluster whose nodes share no files (tests/isolated_cluster.py),
stopped in its search and submitted again. The head has no CPUs, so every training worker,
FID actor and trial that holds a CPU runs on the worker node, which is another Unix user
that sees none of the driver's folders and gets S3 credentials only from its own ~/.aws
(the default chain, as an instance role would give them); the head's job drivers have them
in their environment. Data and store are on the local S3 server; "the laptop" (this
process) pulls the best model and runs it.

Skips with the reason when this machine cannot isolate a node (not root, no mount
namespace); under CI=true that skip is a failure (tests/conftest.py).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from .golden import GENERATIONS, RUN_ID, STAGES, job_args
from .helpers import REPO

pytestmark = pytest.mark.cluster

# Ray class names: Train workers, FID actors, Tune trials (function trainables).
TRAIN_WORKER, FID_ACTOR, TRIAL = "RayTrainWorker", "FidActor", "ImplicitFunc"


def _s3():
    import s3fs
    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    return fs


def _ganc(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ganc", *args], capture_output=True, text=True,
                          env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})


def test_every_stage_ran_once_over_the_two_jobs(golden):
    assert golden.status == "SUCCEEDED", golden.logs[-5000:]
    # the first job finished teacher and supernet; the second skipped them and ran the rest
    for stage in ("teacher", "supernet"):
        assert f"{stage}: done" in golden.first_logs, stage
        assert f"{stage}: finished earlier, skipped" in golden.logs, stage
        assert f"{stage}: done" not in golden.logs, stage
    for stage in STAGES[2:]:
        assert f"{stage}: done" in golden.logs, stage
    assert "search: done" not in golden.first_logs


def test_killed_driver_resubmitted_redoes_no_finished_stage_and_rescores_nothing(golden):
    run = golden.run()
    for s, marker in golden.markers.items():
        assert run.get_json(f"pipeline/{s}.json") == marker, f"{s} marker rewritten"
    fs = _s3()
    for k, m in golden.mtimes.items():
        assert fs.info(f"{golden.run_key}/{k}")["LastModified"] == m, f"{k} was rewritten"
    rows = [r for r in run.get_parquet("search/results.parquet").to_pylist()
            if r["method"] == "evolution"]
    keys = [(r["budget"], r["config"]) for r in rows]
    assert len(keys) == len(set(keys)), "a config was recorded twice"
    assert all(r["status"] == "ok" for r in rows), [r for r in rows if r["status"] != "ok"]
    assert max(r["generation"] for r in rows) == GENERATIONS - 1, "the search did not finish"
    best = run.get_json("best.json")
    assert best["search"]["resumed"] is True
    assert golden.recorded, "the first job recorded nothing before it was stopped"
    final = {(r["trial_id"], r["config"]) for r in rows}
    lost = {(r["trial_id"], r["config"]) for r in golden.recorded} - final
    assert not lost, f"rows recorded before the stop were lost: {lost}"
    # the second job's pool scored only what had not been recorded before the stop (and
    # the Pareto set's KIDs; the teacher was scored by the first job)
    searched = best["pool"]["scored"] - best["search"]["kid_scored"]
    assert searched == len(rows) - len(golden.recorded), \
        (best["pool"], best["search"]["kid_scored"], len(rows), len(golden.recorded))
    assert best["n_scored"] == len(rows) and best["n_failed"] == 0


def test_workers_actors_and_trials_ran_on_the_worker_node(iso, golden):
    # Training workers, FID actors and every trial that holds CPUs (the pruning trials)
    # ran on the worker node. Search trials hold no CPU by design (they only wait on the
    # FID pool; ganc/search/driver.py) and may be placed on the head.
    # An actor the stopped job had asked for but that was never placed has no node: it ran
    # nowhere, so only placed actors count.
    actors = [a for a in golden.actors if a.get("node_id")]
    worker = iso.worker_node_id()
    table = "\n".join(f"{a.get('class_name')} {a.get('state')} {a.get('node_id')} "
                      f"{a.get('required_resources')}" for a in golden.actors)

    def holds_cpu(a):
        return any(k.startswith("CPU") and v > 0
                   for k, v in (a.get("required_resources") or {}).items())

    for kind, select in ((TRAIN_WORKER, lambda a: True), (FID_ACTOR, lambda a: True),
                         (TRIAL, holds_cpu)):
        placed = {a.get("node_id") for a in actors
                  if kind in (a.get("class_name") or "") and select(a)}
        assert placed == {worker}, f"{kind}: on {placed}, worker node {worker}\n{table}"
    # The placement was decided once and recorded in the run.
    placement = golden.run().get_json("placement.json")
    assert placement["device"] == "cpu" and placement["cluster"]["nodes"] == 2, placement


def test_results_exports_and_report_in_the_store(golden):
    run = golden.run()
    for key in ("best.json", "search/results.parquet", "search/pareto.parquet",
                "export/model.pt", "export/model.onnx", "export/model.pt2", "export/model.json",
                "report/summary.json", "report/grid.png", "report/pareto.png"):
        assert run.exists(key), key
    summary = run.get_json("report/summary.json")
    methods = {r["method"] for r in summary["rows"]}
    assert {"teacher", "evolution", "prune-lds"} <= methods, methods
    pruned = [r for r in summary["rows"] if r["method"] == "prune-lds"]
    assert [r["model"] for r in pruned] == ["pruned p0.3"], pruned   # one per variant folder
    assert all(isinstance(r.get("fid"), float) for r in pruned), pruned  # scored by its key
    teacher = next(r for r in summary["rows"] if r["method"] == "teacher")
    for r in summary["rows"]:
        if r["method"] != "teacher":
            assert r["macs"] < teacher["macs"], r
    for key in ("report/grid.png", "report/pareto.png"):
        assert run.read_bytes(key)[:8] == b"\x89PNG\r\n\x1a\n", key


def test_pull_best_then_translate_gives_the_exported_generators_output(golden, tmp_path):
    """`ganc pull --best` and `ganc translate` on "the laptop": the translated images are
    what the exported generator computes (its ONNX export, run here by onnxruntime)."""
    import onnxruntime as ort
    out = tmp_path / "pulled"
    p = _ganc("pull", f"{golden.store}/runs/{RUN_ID}", "--best", "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert {"model.pt", "model.json", "best.json"} <= set(os.listdir(out))
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    inputs = []
    for i in range(2):
        a = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(a).save(images / f"{i}.png")
        inputs.append(a)
    p = _ganc("translate", "--weights", str(out / "model.pt"), "--input", str(images),
              "--output", str(tmp_path / "translated"), "--size", "64")
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(tmp_path / "translated")) == ["0.png", "1.png"]

    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(golden.run().read_bytes("export/model.onnx"))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    for i, a in enumerate(inputs):
        x = (a.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]
        y = sess.run(None, {name: x})[0][0]
        want = np.clip((y.transpose(1, 2, 0) + 1.0) * 127.5, 0, 255)
        got = np.asarray(Image.open(tmp_path / "translated" / f"{i}.png").convert("RGB"),
                         dtype=np.float32)
        assert got.shape == want.shape, (got.shape, want.shape)
        assert np.abs(got - want).max() <= 2.0, (i, float(np.abs(got - want).max()))
        assert want.std() > 1.0, "the generator's output is flat: nothing was compared"


def test_file_store_refused_at_submission_with_one_line(iso, iso_data, tmp_path):
    store = f"file://{tmp_path}/store"
    status, logs = iso.submit(job_args(store, iso_data), REPO, "ganc-iso-file-store", timeout=600)
    assert status == "FAILED", logs[-3000:]
    assert "Traceback" not in logs, logs[-3000:]
    errors = [line for line in logs.splitlines() if line.startswith("ganc ")]
    assert len(errors) == 1, logs[-3000:]
    assert f"store.url '{store}'" in errors[0] and "s3://" in errors[0], errors[0]
    for stage in ("teacher", "supernet"):
        assert f"{stage}: running" not in logs and f"{stage}: done" not in logs, logs[-3000:]
    assert not os.path.exists(f"{tmp_path}/store/runs"), "a stage wrote to the refused store"


def test_secret_in_no_stored_object_log_or_runtime_env(iso, golden, iso_prefix, iso_credentials):
    secret = iso_credentials[1].encode()
    import s3fs
    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    keys = fs.find(iso_prefix)
    names = " ".join(keys)
    # Tune's and Train's own files are among what is scanned, not just ganc's.
    for part in ("tuner.pkl", "experiment_state", "checkpoint", "result"):
        assert part in names, f"no {part} object under {iso_prefix}: the scan would miss it"
    leaked = [k for k in keys if secret in fs.cat_file(k)]
    assert not leaked, f"the secret key is in {leaked[:5]}"
    # Every job's logs, every file of both nodes' Ray session folders (all process logs,
    # runtime environments), and what Ray's state API reports (runtime_env included).
    for job in iso.state("jobs"):
        assert secret.decode() not in iso.logs(job["submission_id"]), job["submission_id"]
    assert secret.decode() not in golden.logs + golden.first_logs
    for path in iso.log_files():
        assert secret not in path.read_bytes(), f"the secret key is in {path}"
    for what in ("jobs", "actors", "tasks"):
        assert secret.decode() not in json.dumps(iso.state(what), default=str), \
            f"ray list {what}"
