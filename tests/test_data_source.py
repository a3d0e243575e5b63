"""Datasets at fsspec URLs: copied once per node from the local S3 server into the node
cache, re-synced only when the remote listing changes; counting without copying; the
generated demo data and a local teacher uploaded for multi-node runs; Inception weights
shipped through the store."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganc.cluster import ClusterInfo
from ganc.config import from_dict
from ganc.context import resolve_data, ship_teacher_weights
from ganc.data import source
from ganc.data.source import DataRef
from ganc.errors import ConfigError, DataError
from ganc.store import open_store
from ganc.data.splits import build_split

TWO_NODES = ClusterInfo(2, {"CPU": 4})


def _png(path, seed, size=8):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, 2 * size, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def dataset(s3_url, tmp_path):
    """An aligned dataset (train: 5 images, val: 2) uploaded to the S3 server."""
    folder = tmp_path / "ds"
    for split, n in (("train", 5), ("val", 2)):
        (folder / split).mkdir(parents=True)
        for i in range(n):
            _png(folder / split / f"{i}.png", i + (100 if split == "val" else 0))
    store = open_store(s3_url)
    source.upload_folder(store, "facades", str(folder))
    return f"{s3_url}/facades", store


def test_url_dataset_is_copied_once_and_resynced_when_it_changes(dataset, cache):
    url, store = dataset
    ref = DataRef(url)
    assert ref.remote and ref.name == "facades"
    assert ref.count_images("train") == 5 and not os.path.exists(source.cache_folder(url))
    local = ref.local()
    assert local == source.cache_folder(url) and local.startswith(str(cache))
    assert sorted(os.listdir(os.path.join(local, "train"))) == [f"{i}.png" for i in range(5)]
    ds = build_split(from_dict({"data": {"crop_size": 8, "load_size": 8}}), local, "train",
                     train=True)
    assert len(ds) == 5
    stamp = {f: os.stat(os.path.join(local, "train", f)).st_mtime_ns
             for f in os.listdir(os.path.join(local, "train"))}

    # unchanged remote: nothing is copied again
    assert ref.local() == local
    assert {f: os.stat(os.path.join(local, "train", f)).st_mtime_ns
            for f in os.listdir(os.path.join(local, "train"))} == stamp

    # one image rewritten (other size), one removed, one added: exactly those change
    tmp = cache.parent / "new.png"
    _png(tmp, 42, size=16)
    store.put_file("facades/train/1.png", str(tmp))
    store.put_file("facades/train/9.png", str(tmp))
    store.rm("facades/train/0.png")
    assert ref.local() == local
    names = sorted(os.listdir(os.path.join(local, "train")))
    assert names == ["1.png", "2.png", "3.png", "4.png", "9.png"]
    with Image.open(os.path.join(local, "train", "1.png")) as im:
        assert im.size == (32, 16)
    for f in ("2.png", "3.png", "4.png"):
        assert os.stat(os.path.join(local, "train", f)).st_mtime_ns == stamp[f]


def test_concurrent_workers_of_a_node_copy_once(dataset, cache):
    url, _ = dataset
    out, errors = [], []

    def worker():
        try:
            out.append(DataRef(url).local())
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(set(out)) == 1
    files = [f for _, _, fs in os.walk(out[0]) for f in fs]
    assert sorted(files) == sorted([f"{i}.png" for i in range(5)] + ["0.png", "1.png"]
                                   + [source.MANIFEST])


def test_missing_url_and_missing_folder_fail_in_one_line(s3_url, cache, tmp_path):
    with pytest.raises(DataError, match="no files found"):
        DataRef(f"{s3_url}/nothing-here").local()
    with pytest.raises(DataError, match="folder not found on this node"):
        DataRef(str(tmp_path / "absent")).local()
    assert source.local_path(f"file://{tmp_path}") == str(tmp_path)
    with pytest.raises(ConfigError, match="absolute path"):
        source.local_path("file://relative/x")


def test_multi_node_demo_data_and_local_teacher_go_through_the_store(s3_url, cache, tmp_path):
    root = open_store(s3_url)
    cfg = from_dict({"data": {"demo_n": 4, "demo_size": 16}})
    ref = resolve_data(cfg, root, TWO_NODES)
    assert ref.root == root.url("datasets/paired-4-16-0-task2") and ref.remote
    assert root.exists("datasets/paired-4-16-0-task2/demo.json")
    assert DataRef(ref.root).count_images("train") == 4
    single = resolve_data(cfg, root, ClusterInfo(1, {"CPU": 2}))
    assert not single.remote and single.root.startswith(str(cache))

    weights = tmp_path / "latest_net_G.pth"
    weights.write_bytes(b"teacher bytes")
    cfg.model.teacher_weights = str(weights)
    run = root.run("r")
    url = ship_teacher_weights(cfg, run, TWO_NODES)
    assert url.startswith(run.url("inputs/teacher/")) and url.endswith("-latest_net_G.pth")
    assert root.read_bytes(url[len(root.url()) + 1:]) == b"teacher bytes"
    assert ship_teacher_weights(cfg, run, ClusterInfo(1, {"CPU": 2})) == str(weights)


def test_inception_weights_reach_a_node_without_them_through_the_store(s3_url, cache):
    from ganc.metrics import inception_weights as inception
    try:
        ref = inception.ship_weights("auto", "", open_store(s3_url))
    except inception.ExtractorError as e:
        pytest.skip(f"no Inception weights available: {e}")
    assert ref["url"] == open_store(s3_url).url(f"fid-weights/{ref['sha1']}.pt")
    assert inception.shipped_weights_path(ref) == Path(ref["path"])   # same node
    elsewhere = {**ref, "path": "/nonexistent/default_1.pt"}                  # another node
    got = inception.shipped_weights_path(elsewhere)
    assert str(got).startswith(str(cache)) and inception.sha1_of(got) == ref["sha1"]
    # a copy that does not match the SHA-1 is refused
    open_store(s3_url).write_bytes(f"fid-weights/{ref['sha1']}.pt", b"not the weights")
    os.remove(got)
    with pytest.raises(inception.ExtractorError, match="do not match SHA-1"):
        inception.shipped_weights_path(elsewhere)
    assert not os.path.exists(got)
    with pytest.raises(inception.ExtractorError, match="shipped no copy"):
        inception.shipped_weights_path({k: v for k, v in elsewhere.items() if k != "url"})
