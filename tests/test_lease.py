"""One writer per run (issue 28): the lease object ``runs/<id>/lease.json`` is created
atomically (S3 ``If-None-Match: *`` through s3fs against moto; ``flock`` on a local run
folder), so a second command on a running run is refused in one line naming the owner;
a crashed owner's lease expires and is taken over; a run from before leases is adopted
in one line; renewal keeps a live owner's lease."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from ganc.cli import main
from ganc.store import lease as leases
from ganc.store import open_store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# holds the lease of argv[1]'s run argv[2] and sleeps until killed
HOLDER = """
import sys, time
from ganc.store import lease, open_store
lease.hold(open_store(sys.argv[1]).run(sys.argv[2]))
print("HELD", flush=True)
time.sleep(600)
"""


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    if request.param == "file":
        return open_store(str(tmp_path / "store"))
    return open_store(request.getfixturevalue("s3_url"))


def _record(run) -> dict:
    return json.loads(run.read_bytes(leases.KEY))


def _foreign(run, **more) -> None:
    """A live lease of a command on another host."""
    rec = {"user": "ada", "host": "elsewhere", "pid": 4242, "command": "ganc search",
           "token": "t", "acquired_at": "2026-01-01T00:00:00Z",
           "expires_at": time.time() + 60, **more}
    run.write_bytes(leases.KEY, json.dumps(rec).encode())


@pytest.fixture
def holder(store):
    """A second process holding the lease of run ``busy`` (killed at teardown)."""
    env = {**os.environ, "PYTHONPATH": REPO}
    p = subprocess.Popen([sys.executable, "-c", HOLDER, store.url(), "busy"], env=env,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "HELD"
        yield p
    finally:
        p.kill()
        p.wait()


def test_the_atomic_create_lets_exactly_one_of_many_writers_in(store):
    backend = leases._backend(store.run("race"))
    wins, start = [], threading.Barrier(8)

    def create(i):
        start.wait()
        wins.append((i, backend.swap(json.dumps({"i": i}).encode(), None)))
    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, etag in wins if etag is not None]
    assert len(winners) == 1, wins
    assert _record(store.run("race")) == {"i": winners[0]}
    # compare-and-swap: a stale etag never overwrites
    raw, etag = backend.read()
    assert backend.swap(b'{"i": "new"}', etag) is not None
    assert backend.swap(b'{"i": "stale"}', etag) is None
    assert _record(store.run("race")) == {"i": "new"}
    if store.protocol == "s3":        # moto honours If-None-Match / If-Match
        assert backend.honours_conditions()


def test_a_second_command_is_refused_in_one_line_naming_the_owner(store, holder, capsys):
    run = store.run("busy")
    with pytest.raises(leases.LeaseHeld) as e:
        leases.hold(run)
    msg = str(e.value)
    assert "\n" not in msg and f"pid {holder.pid}" in msg and socket.gethostname() in msg
    assert run.url() in msg
    # the CLI: one line, exit 2, before Ray starts or anything is written
    before = run.ls()
    # (a command whose own checks pass: the lease is what refuses it; were the lease not
    # checked, this would train one teacher step)
    argv = ["compress", "--config", os.path.join(REPO, "configs", "demo.yaml"), "--store", store.url(),
            "--run-id", "busy", "--stages", "teacher", "--set", "teacher.steps=1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"pid {holder.pid}" in err and "is being written by" in err
    assert run.ls() == before


def test_a_crashed_owner_is_taken_over_and_an_expired_lease_too(store, holder, capsys):
    run = store.run("busy")
    holder.kill()                     # same host, process gone: stale at once
    holder.wait()
    lease = leases.hold(run)
    assert "ended without a release" in capsys.readouterr().err
    assert _record(run)["pid"] == os.getpid()
    lease.release()
    other = store.run("far")
    _foreign(other, expires_at=time.time() + 1.0)     # another host: until it expires
    with pytest.raises(leases.LeaseHeld, match="ada@elsewhere pid 4242"):
        leases.hold(other)
    time.sleep(1.2)
    leases.hold(other).release()
    assert "ada@elsewhere pid 4242 (ganc search) ended without a release" in \
        capsys.readouterr().err


def test_the_owner_renews_its_lease_while_it_runs(store, monkeypatch):
    monkeypatch.setenv(leases.TTL_ENV, "0.6")
    run = store.run("long")
    run.put_json("placement.json", {})
    lease = leases.hold(run)
    first = _record(run)["expires_at"]
    time.sleep(1.5)                   # past the first expiry: renewed meanwhile
    rec = _record(run)
    assert rec["expires_at"] > first and leases.is_live(rec)
    rec["host"] = "elsewhere"         # as another host sees it: still held
    assert leases.is_live(rec)
    lease.release()
    assert _record(run)["released_at"] and not leases.is_live(_record(run))


def test_a_run_from_before_leases_is_adopted_in_one_line_and_released(store, capsys):
    run = store.run("old")
    run.put_json("placement.json", {"device": "cpu"})
    lease = leases.hold(run, existed=True)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "had no lease" in err and "adopted" in err
    assert leases.hold(run) is lease            # this process again: held once more
    lease.release()
    assert leases.is_live(_record(run))
    lease.release()
    assert _record(run)["released_at"]
    leases.hold(run).release()                  # released: taken silently
    assert capsys.readouterr().err == ""


def test_a_command_that_stops_on_a_new_run_leaves_nothing(store):
    run = store.run("never")
    leases.hold(run, existed=False).release()
    assert run.ls() == []
    if store.protocol == "file":
        assert not os.path.exists(run.root)


def test_a_corrupt_lease_is_replaced_in_one_line(store, capsys):
    run = store.run("junk")
    run.write_bytes(leases.KEY, b"not json")
    leases.hold(run).release()
    assert "was not a lease ganc wrote" in capsys.readouterr().err
