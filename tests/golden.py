"""The session's one pipeline run: the demo pipeline, every stage a few steps, submitted
with ``ray job submit`` to a two-node cluster whose nodes share no files
(tests/isolated_cluster.py), data and store on the local S3 server.

The run is the killed-driver case too: the first job is stopped (``ray job stop``) as
soon as the search has a Tune checkpoint with recorded rows, and the same job is
submitted again; it skips the finished stages, restores the search and completes. The
end-to-end, placement, pull/translate, report, results, resume and secret-scan tests
read this one run (tests/test_cluster_isolated.py); nothing else runs the pipeline on a
cluster.

Every wait polls in this process (the job SDK, the store) with a deadline and says what
it waited for.
"""
from __future__ import annotations

import base64
import os
import secrets
import string
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from .lifecycle import S3_BUCKET
from .helpers import REPO, demo_data_on_s3
from .isolated_cluster import IsolatedCluster, NotIsolatable, require_isolation

# The demo pipeline, every stage, each a few steps on 12 images of 64px. Four search
# generations, so that the first job is stopped while the search is still under way.
GENERATIONS = 4
TINY = ["teacher.steps=8", "teacher.checkpoint_every=4", "distill.steps=8",
        "distill.checkpoint_every=4", "search.population=4",
        f"search.generations={GENERATIONS}",
        "prune.steps=4", "prune.sample_every=4", "prune.samples=2", "prune.finetune_steps=2",
        "prune.targets=0.3", "finetune.steps=4", "finetune.checkpoint_every=2",
        "scale.workers=1", "pipeline.report_images=2"]
RUN_ID = "tiny"
SECOND_JOB = "ganc-golden-2"
STAGES = ("teacher", "supernet", "search", "prune", "finetune", "export", "report")


@dataclass
class GoldenRun:
    store: str                 # s3://bucket/prefix/store
    run_key: str               # bucket/prefix/store/runs/<run id> (for s3fs)
    status: str                # the second job's final status
    first_logs: str            # the stopped job's logs
    logs: str                  # the second job's logs
    markers: dict              # {stage: pipeline/<stage>.json} when the first job stopped
    mtimes: dict               # {key: LastModified} of the stages' finals then
    recorded: list             # rows in the search's Tune checkpoints then
    actors: list = field(default_factory=list)   # Ray's actor table after both jobs

    def run(self):
        """The run, through ganc's own store (as the test process reaches S3)."""
        from ganc.store import open_store
        return open_store(self.store).run(RUN_ID)


def tune_checkpoints(run) -> dict:
    """{trial folder: (batches, rows)} of the newest checkpoint of each of the search's Tune
    trials in the store."""
    out = {}
    for key in run.ls("search/tune"):
        if key.endswith("/progress.json"):
            trial = key.split("/")[2]
            try:
                batches = run.get_json(key)["batches"]
                rows = run.get_json(key.rsplit("/", 1)[0] + "/rows.json")
            except (OSError, ValueError, KeyError):
                continue                    # being written
            if batches > out.get(trial, (0, None))[0]:
                out[trial] = (batches, rows)
    return out


def wait_for(cond, what: str, timeout: float, alive=None, every: float = 0.5):
    """Poll ``cond`` until it returns something true; fail naming ``what`` at the deadline
    or when ``alive()`` returns a reason to stop (e.g. the job ended)."""
    deadline = time.time() + timeout
    while True:
        value = cond()
        if value:
            return value
        why = alive() if alive else None
        if why:
            pytest.fail(f"{why} before {what}")
        if time.time() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


def job_args(store: str, data: str, extra: list[str] = ()) -> list[str]:
    # TUNE_GLOBAL_CHECKPOINT_S=1: Tune saves its experiment state every second, so the
    # stopped job leaves a restorable search as soon as a trial has checkpointed.
    args = ["env", "TUNE_GLOBAL_CHECKPOINT_S=1", "python", "jobs/compress.py", "--config",
            "configs/demo.yaml", "--store", store, "--run-id", RUN_ID,
            "--set", f"data.root={data}"]
    for s in [*TINY, *extra]:
        args += ["--set", s]
    return args


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def iso_credentials():
    """A distinctive key pair (moto accepts any): the scan looks for the secret's value."""
    alphabet = string.ascii_uppercase + string.digits
    key_id = "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))
    secret = base64.b64encode(secrets.token_bytes(30)).decode()   # 40 characters, like AWS's
    return key_id, secret


@pytest.fixture(scope="session")
def iso_prefix(s3_server):
    return f"{S3_BUCKET}/iso-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def iso(s3_server, iso_credentials):
    """The isolated two-node cluster (head 0 CPUs, worker node 2 CPUs, another Unix user
    with its own ~/.aws); skips with the reason where this machine cannot isolate a node."""
    why = require_isolation()
    if why:
        pytest.skip(f"isolated cluster: {why}")
    key_id, secret = iso_credentials
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
        from .lifecycle import release_after_last_use
        release_after_last_use("iso", cluster.stop)      # stop() may run twice
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def iso_data(s3_server, iso_prefix, tmp_path_factory):
    return demo_data_on_s3(f"s3://{iso_prefix}/data/demo", tmp_path_factory.mktemp("demo"))


def run_golden(iso, iso_prefix: str, iso_data: str) -> GoldenRun:
    """Submit the pipeline, stop it once the search has checkpointed, submit it again."""
    import s3fs
    from ganc.store import open_store
    store = f"s3://{iso_prefix}/store"
    run_key = f"{iso_prefix}/store/runs/{RUN_ID}"
    run = open_store(store).run(RUN_ID)
    fs = s3fs.S3FileSystem()
    run.exists("pipeline")          # both file systems made now, with the session's settings
    args = job_args(store, iso_data)

    first = "ganc-golden-1"
    iso.submit_no_wait(args, REPO, first)

    def ended():
        s = iso.status(first)
        if s not in ("PENDING", "RUNNING"):
            return f"the first job ended ({s}):\n" + iso.logs(first)[-3000:]

    def searching():
        fs.invalidate_cache()
        return (run.exists("pipeline/supernet.json") and
                any("experiment_state" in k or "searcher" in k for k in run.ls("search")) and
                tune_checkpoints(run))

    wait_for(searching, "the search's first Tune checkpoint (with the experiment state)",
             timeout=900, alive=ended)
    iso.stop_job(first)
    stopped = iso.wait(first, timeout=120)
    assert stopped in ("STOPPED", "FAILED"), f"the first job did not stop: {stopped}"
    fs.invalidate_cache()
    assert not run.exists("pipeline/search.json"), "stopped too late: the search had finished"
    markers = {s: run.get_json(f"pipeline/{s}.json") for s in ("teacher", "supernet")}
    mtimes = {k: fs.info(f"{run_key}/{k}")["LastModified"]
              for k in ("teacher/final.pt", "supernet/final.pt")}
    recorded = [r for _, rows in tune_checkpoints(run).values() for r in rows]
    first_logs = iso.logs(first)

    t_first = time.time()
    status, logs = iso.submit(args, REPO, SECOND_JOB, timeout=1200)
    if os.environ.get("GANC_GOLDEN_LOG"):      # timing the golden run: both jobs' logs
        with open(os.environ["GANC_GOLDEN_LOG"], "w") as f:
            f.write(f"{first_logs}\n===== second job after {time.time() - t_first:.0f}s\n{logs}")
    return GoldenRun(store=store, run_key=run_key, status=status, first_logs=first_logs,
                     logs=logs, markers=markers, mtimes=mtimes, recorded=recorded,
                     actors=iso.state("actors"))


@pytest.fixture(scope="session")
def golden_started(iso, iso_prefix, iso_data):
    """The golden run, started in a background thread (its jobs run on the isolated
    cluster while other tests run here; tests/lifecycle.py); yields its future."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="golden")
    future = pool.submit(run_golden, iso, iso_prefix, iso_data)
    try:
        yield future
    finally:
        if not future.done():           # the session ended before a reader waited for it
            for job in ("ganc-golden-1", SECOND_JOB):
                try:
                    iso.stop_job(job)
                except Exception:
                    pass
        pool.shutdown(wait=True)


@pytest.fixture(scope="session")
def golden(golden_started) -> GoldenRun:
    """The golden run's outcome (waits for the background run; its failure fails here)."""
    return golden_started.result()
