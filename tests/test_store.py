"""The artifact store, with one test body for a local folder and for s3:// (moto, s3fs)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from ganc.config import StoreConfig
from ganc.errors import GancError
from ganc.store import StoreError, open_store, split_url, store_from_config
from ganc.store import fs as store_fs
from ganc.store import retry as store_retry


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    if request.param == "file":
        return open_store(str(tmp_path / "store"))
    url = request.getfixturevalue("s3_url")
    return open_store(url)


class SimulatedCrash(BaseException):
    """Like a kill: not an Exception, so no cleanup code runs."""


def test_bytes_roundtrip_and_listing(store):
    assert not store.exists("a/b.bin")
    assert store.ls() == []
    url = store.write_bytes("a/b.bin", b"\x00hello")
    assert url.endswith("/a/b.bin") and url.startswith(("file://", "s3://"))
    assert store.read_bytes("a/b.bin") == b"\x00hello"
    store.write_bytes("a/b.bin", b"second")           # overwrite
    assert store.read_bytes("a/b.bin") == b"second"
    store.write_bytes("c.txt", b"x")
    assert store.ls() == ["a/b.bin", "c.txt"]
    assert store.ls("a") == ["a/b.bin"]
    assert store.exists("a") and store.exists("a/b.bin") and not store.exists("a/zzz")
    store.rm("a/b.bin")
    assert not store.exists("a/b.bin")
    with pytest.raises(StoreError, match="not found in store: .*a/b.bin"):
        store.read_bytes("a/b.bin")
    with pytest.raises(StoreError, match="not found"):
        store.rm("nope.bin")
    store.rm("", recursive=True)
    assert store.ls() == []


def test_formats_roundtrip(store, tmp_path):
    run = store.run("demo-1")
    assert run.url().endswith("/runs/demo-1")
    run.put_json("best.json", {"config": "16_16_32_16_32_32_16_16", "fid": np.float64(1.5)})
    assert run.get_json("best.json") == {"config": "16_16_32_16_32_32_16_16", "fid": 1.5}
    assert store.ls() == ["runs/demo-1/best.json"]

    mu, sigma = np.arange(4.0), np.eye(4)
    run.put_npz("stats.npz", mu=mu, sigma=sigma)
    got = run.get_npz("stats.npz")
    assert set(got) == {"mu", "sigma"}
    np.testing.assert_array_equal(got["mu"], mu)
    np.testing.assert_array_equal(got["sigma"], sigma)

    rows = [{"config": "a", "fid": 1.0, "macs": 10}, {"config": "b", "fid": 2.5, "macs": 20}]
    run.put_parquet("results.parquet", rows)
    assert run.get_parquet("results.parquet").to_pylist() == rows
    run.put_parquet("cols.parquet", {"x": [1, 2, 3]})
    assert run.get_parquet("cols.parquet").column("x").to_pylist() == [1, 2, 3]

    state = {"w": torch.randn(3, 2), "b": torch.zeros(2)}
    run.put_torch("ckpt/G.pth", state)
    loaded = run.get_torch("ckpt/G.pth")
    assert torch.equal(loaded["w"], state["w"]) and torch.equal(loaded["b"], state["b"])
    assert set(run.get_state_dict("ckpt/G.pth")) == {"w", "b"}

    local = tmp_path / "up.bin"
    local.write_bytes(b"payload" * 1000)
    run.put_file("files/up.bin", local)
    out = run.get_file("files/up.bin", tmp_path / "down" / "up.bin")
    assert open(out, "rb").read() == b"payload" * 1000


def test_crash_between_write_and_commit_leaves_no_visible_object(store, monkeypatch):
    store.write_bytes("keep.json", b"{}")

    def crash(tmp_path, final_path):
        raise SimulatedCrash()

    monkeypatch.setattr(store_fs, "_before_commit", crash)
    with pytest.raises(SimulatedCrash):
        store.put_json("runs/r/best.json", {"fid": 1.0})
    with pytest.raises(SimulatedCrash):
        store.write_bytes("keep.json", b'{"new": true}')
    # The temporary objects exist (a crash cleans nothing up) but no reader can see them.
    assert len(store.temp_keys()) == 2
    assert not store.exists("runs/r/best.json")
    assert not store.exists("runs/r")
    assert store.ls() == ["keep.json"]
    assert store.read_bytes("keep.json") == b"{}"              # old object intact
    with pytest.raises(StoreError, match="not found"):
        store.get_json("runs/r/best.json")

    # An ordinary error between write and commit removes its temporary object.
    def fail(tmp_path, final_path):
        raise OSError("disk full")

    monkeypatch.setattr(store_fs, "_before_commit", fail)
    with pytest.raises(StoreError, match="cannot write .*runs/r/best.json.*disk full"):
        store.put_json("runs/r/best.json", {"fid": 1.0})
    assert len(store.temp_keys()) == 2

    monkeypatch.undo()
    store.put_json("runs/r/best.json", {"fid": 2.0})
    assert store.get_json("runs/r/best.json") == {"fid": 2.0}
    assert store.clean_temp() == 2
    assert store.temp_keys() == []
    assert store.ls() == ["keep.json", "runs/r/best.json"]


def test_units_are_complete_only_with_their_manifest(store, monkeypatch, tmp_path):
    """commit_unit writes the files, then MANIFEST.json; while a unit is rewritten it reads
    as absent (the old manifest goes first), and a crash mid-rewrite never pairs a new
    file with the old unit; pull --best trusts the manifest only."""
    from ganc.runs import PullError, list_runs, pull
    run = store.run("u")
    assert run.read_unit("export") is None
    m = run.commit_unit("export", {"model.pt": b"old-weights", "model.json": {"v": 1}})
    assert run.read_unit("export") == m and set(m["files"]) == {"model.pt", "model.json"}
    assert run.read_unit_file("export", "model.pt", m) == b"old-weights"
    run.put_json("best.json", {"config": "8_8"})

    calls = []

    def crash_on_second_file(tmp, final):
        calls.append(final)
        if len(calls) == 2:
            raise SimulatedCrash()

    monkeypatch.setattr(store_fs, "_before_commit", crash_on_second_file)
    with pytest.raises(SimulatedCrash):
        run.commit_unit("export", {"model.pt": b"new-weights", "model.json": {"v": 2}})
    monkeypatch.undo()
    assert run.read_bytes("export/model.pt") == b"new-weights"      # first file landed...
    assert run.read_unit("export") is None                           # ...but no unit
    with pytest.raises(PullError, match="export/MANIFEST.json not found"):
        pull(run.url(), tmp_path / "p")
    assert not (tmp_path / "p").exists()
    assert [r["exported"] for r in list_runs(store)] == [False]
    # a file changed behind the manifest's back is refused, not paired
    m = run.commit_unit("export", {"model.pt": b"w2", "model.json": {"v": 2}})
    assert [os.path.basename(p) for p in pull(run.url(), tmp_path / "p")] == [
        "model.json", "model.pt", "best.json"]
    run.write_bytes("export/model.pt", b"tampered")
    with pytest.raises(StoreError, match="does not match MANIFEST.json"):
        pull(run.url(), tmp_path / "q")
    assert [r["exported"] for r in list_runs(store)] == [True]


def test_a_unit_file_updated_in_place_keeps_the_manifest_true(store, tmp_path):
    """The report adds figures to the committed model card: update_unit_file rewrites the
    file and its manifest entry, so pull --best still verifies every file."""
    from ganc.runs import pull
    run = store.run("card")
    run.commit_unit("export", {"model.pt": b"weights", "model.json": {"fid": 1.0}})
    run.put_json("best.json", {"config": "8_8"})
    m = run.update_unit_file("export", "model.json", {"fid": 1.0, "fid_by_split": {"val": 2}})
    assert run.read_unit("export") == m
    pulled = pull(run.url(), tmp_path / "p")
    card = [p for p in pulled if os.path.basename(p) == "model.json"][0]
    assert json.loads(open(card).read())["fid_by_split"] == {"val": 2}
    with pytest.raises(StoreError, match="no committed unit"):
        run.update_unit_file("export", "other.json", {})


def test_leftover_temp_keys_cleaned_by_age_and_runs_holding_only_them_hidden(
        store, monkeypatch):
    from ganc.runs import list_runs

    def crash(tmp, final):
        raise SimulatedCrash()

    monkeypatch.setattr(store_fs, "_before_commit", crash)
    with pytest.raises(SimulatedCrash):
        store.run("ghost").put_json("best.json", {})
    monkeypatch.undo()
    store.run("real").put_json("best.json", {"config": "8_8"})
    assert [r["run"] for r in list_runs(store)] == ["real"]
    import time
    assert store.clean_temp(older_than=time.time() - 3600) == 0      # newer than that
    assert len(store.temp_keys()) == 1
    assert store.clean_temp(older_than=time.time() + 60) == 1
    assert store.temp_keys() == []


def test_download_and_escape_refused(store, tmp_path):
    run = store.run("r1")
    run.put_json("best.json", {"a": 1})
    run.write_bytes("export/G.pt", b"abc")
    paths = store.download("runs/r1", tmp_path / "pulled")
    assert sorted(os.path.relpath(p, tmp_path / "pulled") for p in paths) == [
        "best.json", os.path.join("export", "G.pt")]
    assert (tmp_path / "pulled" / "export" / "G.pt").read_bytes() == b"abc"
    with pytest.raises(StoreError, match="nothing to download"):
        store.download("runs/none", tmp_path / "x")


def test_s3_key_escaping_local_dir_is_refused(s3_url, tmp_path):
    st = open_store(s3_url)
    # S3 allows any key, including '..' segments; download must not follow them.
    st.fs.pipe_file(f"{st.root}/runs/r/../../../evil.txt", b"x")
    with pytest.raises(StoreError, match="outside"):
        st.download("runs", tmp_path / "dl")
    assert not (tmp_path / "evil.txt").exists()


def test_bad_keys_and_urls(tmp_path):
    st = open_store(tmp_path)
    for bad in ["", "../x", "a/../../b", "a//b", "x.tmp-" + "0" * 32]:
        with pytest.raises(StoreError):
            st.write_bytes(bad, b"x")
    with pytest.raises(StoreError, match="run id"):
        st.run("../etc")
    with pytest.raises(StoreError, match="unsupported scheme"):
        open_store("gs://bucket/x")
    with pytest.raises(StoreError, match="no bucket"):
        open_store("s3://")
    with pytest.raises(StoreError, match="absolute path"):
        open_store("file://relative/x")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StoreError, match="not a folder"):
        open_store(tmp_path / "afile")
    assert issubclass(StoreError, GancError)
    assert split_url("file:///tmp/x") == ("file", "/tmp/x")
    assert split_url("s3://b/p/") == ("s3", "b/p")
    assert split_url("rel/dir")[1] == os.path.abspath("rel/dir")
    st.write_bytes("j.json", b"{not json")
    with pytest.raises(StoreError, match="not valid JSON"):
        st.get_json("j.json")
    with pytest.raises(StoreError, match="cannot read checkpoint"):
        st.get_torch("j.json")


def test_untrusted_pickle_is_refused(tmp_path):
    import pickle
    st = open_store(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    buf = pickle.dumps({"x": Evil()})
    st.write_bytes("evil.pth", buf)
    with pytest.raises(StoreError, match="cannot read checkpoint"):
        st.get_torch("evil.pth")


def test_s3_endpoint_from_config_and_bad_endpoint(s3_server, s3_url, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    st = store_from_config(StoreConfig(url=s3_url, endpoint_url=s3_server))
    st.put_json("x.json", [1])
    assert st.get_json("x.json") == [1]
    # The URL and errors never carry credentials.
    assert "testing" not in st.url("x.json")
    # An endpoint that refuses connections is really tried (s3fs and botocore once per
    # call, the store's retries shortened here): one line naming the key, the endpoint
    # and the cause.
    monkeypatch.setattr(store_retry, "RETRY_DELAYS", (0.01, 0.01))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    bad = open_store("s3://ganc-test/x", endpoint_url="http://127.0.0.1:9", retries=1,
                     config_kwargs={"retries": {"max_attempts": 1}})
    with pytest.raises(StoreError) as e:
        bad.read_bytes("k")
    msg = str(e.value)
    assert msg.startswith("cannot read s3://ganc-test/x/k (endpoint http://127.0.0.1:9): ")
    assert "Could not connect" in msg and "\n" not in msg and "testing" not in msg


def test_missing_bucket_is_one_line(s3_server):
    st = open_store("s3://no-such-bucket-ganc/p")
    with pytest.raises(StoreError) as e:
        st.write_bytes("k", b"x")
    assert "no-such-bucket-ganc" in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------ S3 edge cases
def _boto(s3_server):
    import boto3
    return boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")


def test_zero_byte_folder_objects_are_not_keys(s3_server, s3_url, tmp_path, capsys):
    """`export/` as a 0-byte object (the S3 console's "Create folder") is no key: ls,
    exists, download and `ganc pull` (--best and --all) see only the real objects."""
    from ganc.cli import main
    bucket, prefix = s3_url[len("s3://"):].split("/", 1)
    run = open_store(f"{s3_url}/runs/r1")
    run.commit_unit("export", {"model.json": {"config_str": "8_8"}, "model.pt": b"weights"})
    run.put_json("best.json", {"config": "8_8"})
    for marker in ("runs/r1/", "runs/r1/export/", "runs/r1/empty/"):
        _boto(s3_server).put_object(Bucket=bucket, Key=f"{prefix}/{marker}", Body=b"")
    assert run.ls() == ["best.json", "export/MANIFEST.json", "export/model.json",
                        "export/model.pt"]
    assert run.ls("export") == ["export/MANIFEST.json", "export/model.json", "export/model.pt"]
    assert not run.exists("empty")
    assert main(["pull", run.url(), "--best", "-o", str(tmp_path / "best")]) == 0
    assert sorted(os.listdir(tmp_path / "best")) == ["best.json", "model.json", "model.pt"]
    assert main(["pull", run.url(), "--all", "-o", str(tmp_path / "all")]) == 0
    assert (tmp_path / "all" / "export" / "model.pt").read_bytes() == b"weights"
    assert not (tmp_path / "all" / "empty").exists()
    assert len(run.download("", tmp_path / "dl")) == 4


def test_keys_with_glob_characters_on_s3(s3_url):
    """'[' ']' '*' '?' in a key: written (temporary key, then committed), listed, read,
    overwritten; no glob expansion anywhere."""
    st = open_store(s3_url)
    for key in ("a[1]/x.json", "b/[ab]*?.bin"):
        st.write_bytes(key, b"one")
        st.write_bytes(key, b"two")
        assert st.read_bytes(key) == b"two" and st.exists(key)
    assert st.ls() == ["a[1]/x.json", "b/[ab]*?.bin"] and st.temp_keys() == []


def test_transient_errors_are_classified():
    from botocore.exceptions import ClientError, EndpointConnectionError

    def client_error(code, status):
        return ClientError({"Error": {"Code": code, "Message": "m"},
                            "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")
    assert store_retry.transient(client_error("SlowDown", 503))
    assert store_retry.transient(client_error("ThrottlingException", 400))
    assert store_retry.transient(client_error("InternalError", 500))
    assert store_retry.transient(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    wrapped = OSError("failed")
    wrapped.__cause__ = client_error("ServiceUnavailable", 503)
    assert store_retry.transient(wrapped)
    assert not store_retry.transient(client_error("AccessDenied", 403))
    assert not store_retry.transient(client_error("NoSuchKey", 404))
    assert not store_retry.transient(FileNotFoundError("x"))
    assert not store_retry.transient(ValueError("x"))


def test_s3_outage_is_carried_by_bounded_logged_retries(tmp_path, monkeypatch, caplog):
    """The S3 server stops and comes back on the same port 3 s later: a write in between
    succeeds through the store's retries, each retry logged in one line without the
    credentials; an outage longer than the retries fails in one line."""
    import socket
    import threading

    from moto.server import ThreadedMotoServer
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    secret = "s3cr3t-" + os.urandom(6).hex()
    for k, v in {"AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": secret,
                 "AWS_SESSION_TOKEN": "tok", "AWS_DEFAULT_REGION": "us-east-1",
                 "AWS_ENDPOINT_URL": endpoint, "NO_PROXY": "127.0.0.1,localhost"}.items():
        monkeypatch.setenv(k, v)
    servers = [ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)]
    servers[0].start()
    try:
        _boto(endpoint).create_bucket(Bucket="outage")
        # one attempt per call inside s3fs / botocore, so the store's own retries show
        st = open_store("s3://outage/p", config_kwargs={"retries": {
            "max_attempts": 1}})
        st.put_json("before.json", {"n": 1})
        monkeypatch.setattr(store_retry, "RETRY_DELAYS", (0.5, 1.0, 2.0, 2.0, 2.0))
        servers[0].stop()
        back = threading.Timer(3.0, lambda: (servers.append(ThreadedMotoServer(
            ip_address="127.0.0.1", port=port, verbose=False)), servers[-1].start()))
        back.start()
        caplog.set_level("WARNING", logger="ganc.store")
        st.put_json("during.json", {"n": 2})
        back.join()
        assert st.get_json("during.json") == {"n": 2} and st.get_json("before.json") == {"n": 1}
        retries = [r.getMessage() for r in caplog.records if r.name == "ganc.store"]
        assert retries and all("\n" not in m and "s3://outage/p/during.json" in m
                               for m in retries), retries
        assert secret not in caplog.text and "AKIDTEST" not in caplog.text
        servers[-1].stop()
        monkeypatch.setattr(store_retry, "RETRY_DELAYS", (0.1, 0.1))
        with pytest.raises(StoreError) as e:
            st.put_json("after.json", {"n": 3})
        assert "cannot write s3://outage/p/after.json" in str(e.value)
        assert "\n" not in str(e.value) and secret not in str(e.value)
    finally:
        for s in servers:
            try:
                s.stop()
            except Exception:
                pass


def test_the_next_job_cleans_leftover_temp_keys(tmp_path, monkeypatch):
    """A job opening its run removes the temporary keys an earlier job left (older than
    this job's start) and keeps newer ones (another writer's, in flight)."""
    import time

    from ganc import context
    from ganc.config import load_config
    url = str(tmp_path / "store")
    run = open_store(url).run("leftovers")

    def crash(tmp, final):
        raise SimulatedCrash()

    monkeypatch.setattr(store_fs, "_before_commit", crash)
    for key in ("old.json", "new.json"):
        with pytest.raises(SimulatedCrash):
            run.put_json(key, {})
    monkeypatch.undo()
    old = [k for k in run.temp_keys() if k.startswith("old.json")][0]
    os.utime(os.path.join(run.root, old), (time.time() - 7200, time.time() - 7200))
    monkeypatch.setattr(context, "JOB_STARTED", time.time() - 3600)
    cfg = load_config(None, ["data.demo_n=4", "data.demo_size=16", "model.teacher_ngf=4"],
                      store=url)
    cfg.store.run_id = "leftovers"
    context.open_context(cfg)
    assert [k.split(".tmp-")[0] for k in run.temp_keys()] == ["new.json"]
