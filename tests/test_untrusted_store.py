"""The store is not trusted (issue 28): `ganc runs` lists a run it cannot read as unreadable
without hiding the others, and `ganc pull` never follows a link, copies only regular files
(--all) or what the export's manifest lists (--best), never writes outside -o and refuses
an -o that is a file; each refusal one line, nothing written."""
from __future__ import annotations

import hashlib
import json
import os

import pytest

from ganc.cli import main
from ganc.errors import GancError
from ganc.runs import PullError, list_runs, pull
from ganc.store import open_store


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    if request.param == "file":
        return open_store(str(tmp_path / "store"))
    return open_store(request.getfixturevalue("s3_url"))


def _good_run(store, rid, fid=10.0):
    run = store.run(rid)
    run.put_json("best.json", {"config": "8_8_8_8_8_8_8_8", "fid": fid, "macs": 1e9,
                               "params": 100, "teacher": {"fid": 5.0, "macs": 2e9}})
    run.commit_unit("export", {"model.pt": b"weights", "model.json": {"config": [8] * 8}})
    return run


def _walk(folder) -> set:
    return {os.path.relpath(os.path.join(d, f), folder)
            for d, dirs, files in os.walk(folder) for f in files + dirs}


def _refused(argv, capsys, *words):
    """The CLI refuses ``argv`` in one line (exit 2) holding ``words``."""
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"ganc {argv[0]}: error: ")
    for w in words:
        assert w in err, err


# ---------------------------------------------------------------- ganc runs
def test_one_unreadable_run_never_hides_the_others(store, capsys):
    _good_run(store, "a-good")
    _good_run(store, "z-good", fid=20.0)
    store.run("b-corrupt").write_bytes("best.json", b'{"config": "8_8", "fid": ')
    store.run("c-list").write_bytes("best.json", b"[1, 2]")
    store.run("d-badfid").put_json("best.json", {"config": "8_8", "fid": "low"})
    store.run("e-manifest").put_json("export/MANIFEST.json", {"files": "model.pt"})
    store.run("f-teacher").put_json("best.json", {"config": "8_8", "teacher": [1]})
    rows = {r["run"]: r for r in list_runs(store)}
    assert sorted(rows) == ["a-good", "b-corrupt", "c-list", "d-badfid", "e-manifest",
                            "f-teacher", "z-good"]
    assert rows["a-good"]["fid"] == 10.0 and rows["z-good"]["fid"] == 20.0
    assert rows["a-good"]["exported"] is True and rows["a-good"]["unreadable"] is None
    why = {k: r["unreadable"] for k, r in rows.items() if r["unreadable"]}
    assert sorted(why) == ["b-corrupt", "c-list", "d-badfid", "e-manifest", "f-teacher"]
    assert "b-corrupt/best.json is not valid JSON" in why["b-corrupt"]
    assert "c-list/best.json: expected an object" in why["c-list"]
    assert "d-badfid/best.json: fid: expected a number" in why["d-badfid"]
    assert "e-manifest/export/MANIFEST.json: not a unit manifest" in why["e-manifest"]
    assert "f-teacher/best.json: expected an object" in why["f-teacher"]
    assert all("\n" not in w for w in why.values())
    assert main(["runs", store.url()]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[1:]] == sorted(rows)
    assert out[2].split()[1:3] == ["unreadable:", store.run("b-corrupt").url("best.json")]
    assert out[1].split()[2] == "10.00" and out[-1].split()[2] == "20.00"
    assert main(["runs", store.url(), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["unreadable"] is None for r in lines] == [True] + [False] * 5 + [True]


def test_runs_never_reads_through_a_link(tmp_path):
    store = open_store(str(tmp_path / "store"))
    _good_run(store, "real")
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"config": "8_8", "fid": 1.0}))
    os.makedirs(tmp_path / "store" / "runs" / "linked")
    os.symlink(secret, tmp_path / "store" / "runs" / "linked" / "best.json")
    os.symlink(tmp_path / "store" / "runs" / "real", tmp_path / "store" / "runs" / "alias")
    rows = {r["run"]: r for r in list_runs(store)}
    assert rows["real"]["fid"] == 10.0 and rows["real"]["unreadable"] is None
    for rid in ("linked", "alias"):
        assert rows[rid]["fid"] is None and "symbolic link" in rows[rid]["unreadable"]


# ---------------------------------------------------------------- pull: links
def test_pull_all_never_follows_a_planted_link(tmp_path, capsys):
    store = open_store(str(tmp_path / "store"))
    run = _good_run(store, "r")
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0\n")
    os.makedirs(os.path.join(run.root, "search"))
    os.symlink(secret, os.path.join(run.root, "search", "passwd"))
    out = tmp_path / "out"
    with pytest.raises(GancError, match=r"search/passwd: a symbolic link") as e:
        pull(run.url(), out, best=False)
    assert "\n" not in str(e.value) and not out.exists()
    _refused(["pull", run.url(), "--all", "-o", str(out)], capsys, "symbolic link")
    assert not out.exists()
    # a link to a folder elsewhere is refused as well, not walked (nor silently left out)
    os.remove(os.path.join(run.root, "search", "passwd"))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "id_rsa").write_text("key")
    os.symlink(tmp_path / "elsewhere", os.path.join(run.root, "ssh"))
    with pytest.raises(GancError, match=r"runs/r/ssh: a symbolic link"):
        pull(run.url(), out, best=False)
    assert not out.exists()
    # a FIFO is no regular file: refused, without blocking on it
    os.remove(os.path.join(run.root, "ssh"))
    os.mkfifo(os.path.join(run.root, "search", "pipe"))
    with pytest.raises(GancError, match=r"search/pipe: a symbolic link .* or not a regular file"):
        pull(run.url(), out, best=False)
    os.remove(os.path.join(run.root, "search", "pipe"))
    assert sorted(os.path.relpath(p, out) for p in pull(run.url(), out, best=False)) == [
        "best.json", "export/MANIFEST.json", "export/model.json", "export/model.pt"]


def test_pull_best_never_follows_a_link_in_the_export(tmp_path, capsys):
    store = open_store(str(tmp_path / "store"))
    victim = _good_run(store, "victim")
    other = tmp_path / "other.bin"
    other.write_bytes(b"someone else's file")
    out = tmp_path / "out"
    # the whole export folder a link to another run's export
    run = store.run("r")
    run.put_json("best.json", {"config": "8_8"})
    os.symlink(os.path.join(victim.root, "export"), os.path.join(run.root, "export"))
    with pytest.raises(GancError, match=r"runs/r/export/MANIFEST.json: a symbolic link"):
        pull(run.url(), out)
    _refused(["pull", run.url(), "--best", "-o", str(out)], capsys, "symbolic link")
    assert not out.exists()
    # one file of the unit a link, its manifest entry forged to match the target
    os.remove(os.path.join(run.root, "export"))
    data = other.read_bytes()
    run.commit_unit("export", {"model.json": {"config": [8] * 8}, "model.pt": data})
    os.remove(os.path.join(run.root, "export", "model.pt"))
    os.symlink(other, os.path.join(run.root, "export", "model.pt"))
    assert run.read_unit("export")["files"]["model.pt"]["sha256"] == \
        hashlib.sha256(data).hexdigest()
    with pytest.raises(GancError, match=r"export/model.pt: a symbolic link"):
        pull(run.url(), out)
    assert not out.exists()
    # best.json a link
    os.remove(os.path.join(run.root, "export", "model.pt"))
    run.commit_unit("export", {"model.json": {"config": [8] * 8}, "model.pt": b"w"})
    os.remove(os.path.join(run.root, "best.json"))
    os.symlink(other, os.path.join(run.root, "best.json"))
    with pytest.raises(GancError, match=r"runs/r/best.json: a symbolic link"):
        pull(run.url(), out)
    assert not out.exists()


def test_pull_refuses_a_run_folder_that_is_a_link(tmp_path):
    store = open_store(str(tmp_path / "store"))
    real = _good_run(store, "real")
    os.symlink(real.root, os.path.join(store.root, "runs", "alias"))
    for best in (True, False):
        with pytest.raises(GancError, match="runs/alias.*: a symbolic link"):
            pull(store.run("alias").url(), tmp_path / "out", best=best)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- pull: destinations
def test_pull_best_copies_only_plain_manifest_entries(store, tmp_path, capsys):
    run = _good_run(store, "r")
    run.write_bytes("export/extra.bin", b"not in the manifest")
    out = tmp_path / "out"
    assert sorted(os.path.basename(p) for p in pull(run.url(), out)) == [
        "best.json", "model.json", "model.pt"]
    # a manifest naming a file outside the unit ('..'), or best.json twice, is refused
    manifest = run.read_unit("export")
    entry = manifest["files"]["model.pt"]
    for name, why in (("../../../escaped", "is not a plain key of the unit"),
                      ("best.json", "two objects would be written to the same file")):
        forged = {"files": {**manifest["files"], name: entry}}
        run.put_json("export/MANIFEST.json", forged)
        fresh = tmp_path / f"out-{len(name)}"
        with pytest.raises(GancError, match=why) as e:
            pull(run.url(), fresh)
        assert "\n" not in str(e.value) and not fresh.exists()
        _refused(["pull", run.url(), "--best", "-o", str(fresh)], capsys, why)
        assert not fresh.exists() and not (tmp_path / "escaped").exists()


def test_pull_refuses_an_output_that_is_a_file(store, tmp_path, capsys):
    run = _good_run(store, "r")
    target = tmp_path / "model.pt"
    target.write_bytes(b"mine")
    for best in (True, False):
        with pytest.raises(PullError, match="cannot pull into .*model.pt: it exists and is "
                                            "not a folder"):
            pull(run.url(), target, best=best)
    _refused(["pull", run.url(), "--all", "-o", str(target)], capsys, "not a folder")
    assert target.read_bytes() == b"mine"
    # a file where pull needs a folder inside -o: one line, not a traceback
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "export").write_bytes(b"mine too")
    _refused(["pull", run.url(), "--all", "-o", str(tmp_path / "o")], capsys,
             "cannot write", "export")
    assert (tmp_path / "o" / "export").read_bytes() == b"mine too"
    assert _walk(tmp_path / "o") == {"export"}          # nothing written
