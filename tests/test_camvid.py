"""CamVid label-map -> photo data: the generated look-alike has the real format, the dataset
one-hot encodes and resizes labels with nearest neighbours, and bad files fail in one line."""
import os
import random

import numpy as np
import pytest
import torch
from PIL import Image

from ganc import nn as gnn
from ganc.data.camvid import (LABEL_NC, NATIVE_SIZE, VOID, CamVidDataset,
                              calibration_batches, load_label_map, make_camvid_like, one_hot)
from ganc.errors import ConfigError, DataError

from .helpers import CAMVID, needs_shared


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("cv") / "camvid"
    info = make_camvid_like(r, n_train=6, n_val=2, size=(96, 128), seed=0)
    assert info["n_train"] == 6
    return r


def test_the_spade_nets_default_input_is_a_camvid_label_map():
    assert gnn.LABEL_NC == LABEL_NC     # ganc.nn keeps its own copy: nn sits below data


def test_generated_data_has_the_camvid_format(root):
    for split, n in (("train", 6), ("val", 2)):
        photos = sorted(os.listdir(root / split))
        assert photos == sorted(os.listdir(root / f"{split}annot")) and len(photos) == n
        with Image.open(root / split / photos[0]) as im:
            assert im.mode == "RGB" and im.size == (128, 96)
        with Image.open(root / f"{split}annot" / photos[0]) as lab:
            assert lab.mode == "L" and lab.size == (128, 96)
    labels = np.concatenate([load_label_map(root / "trainannot" / f).ravel()
                             for f in os.listdir(root / "trainannot")])
    present = set(np.unique(labels).tolist())
    assert present <= set(range(VOID + 1)) and len(present) >= 6
    again = root.parent / "again"
    make_camvid_like(again, n_train=6, n_val=2, size=(96, 128), seed=0)
    a = np.asarray(Image.open(again / "train" / "train_00003.png"))
    assert (a == np.asarray(Image.open(root / "train" / "train_00003.png"))).all()
    with pytest.raises(ConfigError, match="not empty"):
        make_camvid_like(root, n_train=1, n_val=1)


def test_dataset_one_hot_and_nearest_resize(root):
    ds = CamVidDataset(root, "val", size=(48, 64), native_gt=True)
    item = ds[0]
    assert item["A"].shape == (LABEL_NC, 48, 64) and item["B"].shape == (3, 48, 64)
    assert torch.equal(item["A"].sum(0), torch.ones(48, 64))          # exactly one class
    assert torch.equal(item["A"].argmax(0), item["label"])
    assert item["gt"].shape == (96, 128) and item["B"].abs().max() <= 1
    # nearest resize only takes values that exist in the native map
    assert set(item["label"].unique().tolist()) <= set(item["gt"].unique().tolist())
    assert torch.equal(ds.labels(0), item["label"])
    assert torch.equal(one_hot(torch.tensor([[VOID]]))[:, 0, 0], torch.eye(LABEL_NC)[VOID])
    flipping = CamVidDataset(root, "val", size=(48, 64), flip=True)
    random.seed(0)
    kinds = set()
    for _ in range(8):
        it = flipping[0]
        same = torch.equal(it["label"], item["label"]) and torch.equal(it["B"], item["B"])
        mirrored = torch.equal(it["label"], item["label"].flip(-1)) and \
            torch.equal(it["B"], item["B"].flip(-1))
        assert same or mirrored                 # photo and labels flip together
        kinds.add(mirrored)
    assert kinds == {True, False}


def test_calibration_batches_are_deterministic(root):
    ds = CamVidDataset(root, "train", size=(32, 64))
    a = calibration_batches(ds, n=4, batch_size=3, seed=1)
    b = calibration_batches(ds, n=4, batch_size=3, seed=1)
    assert [t.shape for t in a] == [(3, LABEL_NC, 32, 64), (1, LABEL_NC, 32, 64)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert len(calibration_batches(ds, n=100, batch_size=4)) == 2        # all 6 images


def test_bad_label_maps_fail_in_one_line(root, tmp_path):
    bad = tmp_path / "bad.png"
    Image.fromarray(np.full((8, 8), 12, np.uint8), mode="L").save(bad)
    with pytest.raises(DataError, match=r"holds class 12.*0-10 and 11 \(void\)"):
        load_label_map(bad)
    Image.new("RGB", (8, 8)).save(bad)
    with pytest.raises(DataError, match="mode RGB"):
        load_label_map(bad)
    with pytest.raises(DataError, match="CamVid split 'test' folder not found"):
        CamVidDataset(root, "test")


@needs_shared(CAMVID)
def test_real_camvid_reads():
    ds = CamVidDataset(CAMVID, "val", size=(96, 128), native_gt=True)
    assert len(ds) == 101 and len(CamVidDataset(CAMVID, "train")) == 367
    item = ds[0]
    assert tuple(item["gt"].shape) == NATIVE_SIZE and int(item["gt"].max()) <= VOID
