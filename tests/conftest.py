"""Shared fixtures: a local S3-protocol server (moto), a local Ray instance, ../shared.

Everything a fixture starts is stopped at teardown. Servers bind to 127.0.0.1 only.
"""
from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from . import lifecycle
from .lifecycle import S3_BUCKET, release_after_last_use

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
# CI (CI=true, exported by .ci/run) runs every test: a missing prerequisite (../shared,
# Inception weights, moto, Ray, root for the isolated cluster, a tmpfs) fails there
# instead of skipping. A skip whose reason starts with NOT_APPLICABLE is a test that has
# nothing to check on this machine by design, and stays a skip.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
NOT_APPLICABLE = "not applicable"

# Other people's Ray clusters may run on this machine: every Ray a test starts in-process
# (and every `ganc` subprocess it runs) is a private one, never one found on the host.
os.environ["GANC_RAY_PRIVATE"] = "1"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
# One intra-op thread for torch here and in every process the tests start (set before torch
# is imported; a test that needs more threads asks for them). On this 2-core machine, shared
# with Ray's processes and with the second pytest session of `make test`, two OpenMP threads
# spin at each barrier while the other is descheduled: a 20-step 16x16 training loop took
# 16 CPU-s with 2 threads and 0.3 with 1.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def pytest_configure(config):
    if IN_CI and not SHARED.is_dir():
        # One line, before anything runs: CI always has ../shared beside the checkout.
        pytest.exit(f"CI: the shared data folder {SHARED} is missing (../shared beside the "
                    "checkout: data and models the tests read)", returncode=3)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not (IN_CI and rep.skipped) or hasattr(rep, "wasxfail"):
        return
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    reason = reason.removeprefix("Skipped: ")
    if not reason.startswith(NOT_APPLICABLE):
        rep.outcome = "failed"
        rep.longrepr = f"CI=true: a skip is a failure here, and this test skipped: {reason}"


# ---------------------------------------------------------------- order and early release
def pytest_collection_modifyitems(session, config, items):
    lifecycle.order(items)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    lifecycle.release_finished(item)


@pytest.fixture(scope="session", autouse=True)
def _golden_in_the_background(request):
    """Start the golden run as the session's first test starts (tests/lifecycle.py); a
    failure to start it is raised again to its readers, not to this first test."""
    if lifecycle.uses(request.session.items, "golden"):
        try:
            request.getfixturevalue("golden_started")
        except (Exception, pytest.skip.Exception, pytest.fail.Exception):
            pass                        # cached by pytest and raised to golden's readers


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` next to the repository; skips the test when it is missing."""
    if not SHARED.is_dir():
        pytest.skip(f"needs the shared data folder {SHARED} (not found)")
    return SHARED


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1 with bucket ``ganc-test``; yields its endpoint URL.

    Sets fake AWS credentials and ``AWS_ENDPOINT_URL`` for the session and restores the
    environment afterwards.
    """
    pytest.importorskip("moto.server", reason="needs moto[server] for the local S3 server")
    import boto3
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": endpoint,
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    saved = {k: os.environ.get(k) for k in list(env) + ["AWS_ENDPOINT_URL_S3", "AWS_PROFILE"]}
    os.environ.update(env)
    os.environ.pop("AWS_ENDPOINT_URL_S3", None)
    os.environ.pop("AWS_PROFILE", None)
    try:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket=S3_BUCKET)
        yield endpoint
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_url(s3_server) -> str:
    """A fresh, empty ``s3://ganc-test/<random>`` prefix on the local S3 server."""
    return f"s3://{S3_BUCKET}/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def ray_local(s3_server):
    """A private local Ray instance (2 CPUs, loopback only, no usage stats).

    Started after the S3 server's settings are in the environment: Ray's processes inherit
    them, as every process of a real node gets its credentials from the node itself
    (nothing copies credentials into Ray's runtime_env or pickled objects)."""
    import ray
    if ray.is_initialized():
        yield ray
        return
    from ganc.raylocal import LOOPBACK, init_local
    init_local(num_cpus=2, private=True, logging_level="ERROR")
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {LOOPBACK}
    release_after_last_use("ray_local", ray.shutdown)
    try:
        yield ray
    finally:
        ray.shutdown()


# The session's one pipeline run on the isolated two-node cluster (tests/golden.py).
from .golden import (golden, golden_started, iso, iso_credentials,  # noqa: E402,F401
                     iso_data, iso_prefix)
from .local_cluster import s3_proxy, two_node  # noqa: E402,F401
