"""ESPNet-CamVid: the segmenter loads strictly, the mIoU protocol reproduces its calibration
on the real val photos, tensors score like their saved PNGs, and ``ganc miou`` refuses bad
input in one line."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from ganc.cli import main
from ganc.data.camvid import N_CLASSES, VOID, make_camvid_like
from ganc.errors import DataError, WeightsError
from ganc.metrics.espnet import ESPNet, load_espnet
from ganc.metrics.miou import (Segmenter, confusion, score_folders, score_tensors, scores)

from .helpers import CAMVID, ESPNET_WEIGHTS, needs_shared
from .helpers import one_torch_thread  # noqa: F401  (autouse: one intra-op thread)


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code, err, *needles):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, lines[0])


# ---------------------------------------------------------------- confusion matrix
def test_confusion_and_scores_by_hand():
    gt = torch.tensor([[0, 0, 1, 1], [2, 2, VOID, VOID]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 5, 5]])
    cm = confusion(pred, gt)
    assert cm.sum() == 6 and cm[0, 0] == 1 and cm[0, 1] == 1 and cm[2, 0] == 1
    s = scores(cm)
    # IoU: class 0: 1 / (2 + 2 - 1); class 1: 2 / (2 + 3 - 2); class 2: 1 / 2; others absent
    expect = [1 / 3, 2 / 3, 1 / 2]
    assert s["miou"] == pytest.approx(100 * sum(expect) / 3)
    assert s["pixel_acc"] == pytest.approx(100 * 4 / 6)
    assert s["iou"][3] is None and len(s["iou"]) == N_CLASSES
    with pytest.raises(DataError, match="every ground-truth pixel is void"):
        scores(confusion(pred, torch.full_like(gt, VOID)))


# ---------------------------------------------------------------- the segmenter
def test_espnet_layout_and_mismatch_names_first_key(tmp_path):
    net = ESPNet(classes=12, p=2, q=8)
    sd = net.state_dict()
    assert sd["conv.conv.weight"].shape == (12, 31, 3, 3)      # 12 + 19 input channels
    assert sd["encoder.level2_0.c1.conv.weight"].shape == (12, 19, 3, 3)
    assert sd["encoder.level3.7.d16.conv.weight"].shape == (25, 25, 3, 3)
    assert sum(v.numel() for k, v in sd.items() if "num_batches" not in k) == 358_193
    with torch.no_grad():
        assert net.eval()(torch.zeros(1, 3, 64, 96)).shape == (1, 12, 64, 96)
    torch.save(ESPNet(classes=12, p=2, q=3).state_dict(), tmp_path / "q3.pth")
    with pytest.raises(WeightsError, match="missing key encoder.level3.3"):
        load_espnet(tmp_path / "q3.pth")


@needs_shared(ESPNET_WEIGHTS)
def test_released_espnet_loads_strictly_with_weights_only():
    net = load_espnet(ESPNET_WEIGHTS)
    assert not net.training
    assert net.encoder.level1.conv.weight.abs().sum() > 0


@pytest.mark.slow
@needs_shared(ESPNET_WEIGHTS, CAMVID)
def test_calibration_on_the_real_val_photos():
    """The protocol's figures on the 101 real CamVid val photos: mIoU 69.49 and pixel
    accuracy 93.34 within 0.3 (segmenter input 352x480)."""
    full = score_folders(CAMVID / "val", CAMVID / "valannot", weights=ESPNET_WEIGHTS)
    assert full["n"] == 101
    assert abs(full["miou"] - 69.49) < 0.3 and abs(full["pixel_acc"] - 93.34) < 0.3, full


@needs_shared(ESPNET_WEIGHTS, CAMVID)
def test_calibration_at_176x240_segmenter_input():
    """The same photos with a 176x240 segmenter input: mIoU 60.50 within 0.3 (about a
    quarter of the 352x480 test's cost)."""
    half = score_folders(CAMVID / "val", CAMVID / "valannot",
                         Segmenter.load(ESPNET_WEIGHTS, input_size=(176, 240)))
    assert abs(half["miou"] - 60.50) < 0.3, half


# ---------------------------------------------------------------- tensors, folders and CLI
@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("miou") / "camvid"
    make_camvid_like(root, n_train=2, n_val=3, size=(96, 128), seed=1)
    return root


@needs_shared(ESPNET_WEIGHTS)
def test_tensors_score_like_their_saved_pngs(generated, tmp_path):
    """Generated images in [-1, 1] are quantised as saved PNGs are: scoring the tensors and
    scoring the written folder give the same confusion matrix."""
    seg = Segmenter.load(ESPNET_WEIGHTS)
    g = torch.Generator().manual_seed(0)
    fake = torch.rand(3, 3, 96, 128, generator=g) * 2 - 1
    labels = []
    os.makedirs(tmp_path / "fake")
    for i, name in enumerate(sorted(os.listdir(generated / "valannot"))):
        lab = np.asarray(Image.open(generated / "valannot" / name)).astype(np.int64)
        labels.append(torch.from_numpy(lab))
        arr = ((fake[i].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(arr).save(tmp_path / "fake" / name)
    a = score_tensors(fake, torch.stack(labels), seg, batch_size=2)
    b = score_folders(tmp_path / "fake", generated / "valannot", seg)
    assert a["n"] == b["n"] == 3 and a["iou"] == b["iou"] and a["miou"] == b["miou"]
    real = score_folders(generated / "val", generated / "valannot", seg)
    assert real["miou"] != a["miou"]


@needs_shared(ESPNET_WEIGHTS)
def test_cli_json(capsys, generated):
    code, out, _ = run(capsys, "miou", "--images", str(generated / "val"), "--labels",
                       str(generated / "valannot"), "--weights", str(ESPNET_WEIGHTS), "--json")
    res = json.loads(out)
    assert code == 0 and res["n"] == 3 and 0 <= res["miou"] <= 100
    assert set(res) == {"miou", "pixel_acc", "n", "protocol", "iou"}
    assert "ESPNet-CamVid mIoU" in res["protocol"] and "352x480" in res["protocol"]
    # the figures are the protocol's (segmenter input 352x480) on these folders
    want = score_folders(generated / "val", generated / "valannot",
                         Segmenter.load(ESPNET_WEIGHTS, input_size=(352, 480)))
    assert (res["miou"], res["pixel_acc"], res["iou"]) == (want["miou"], want["pixel_acc"],
                                                           want["iou"])
    # and --input-size reaches the segmenter: another size, other figures
    code, out, _ = run(capsys, "miou", "--images", str(generated / "val"), "--labels",
                       str(generated / "valannot"), "--weights", str(ESPNET_WEIGHTS),
                       "--input-size", "176x240", "--json")
    half = json.loads(out)
    want = score_folders(generated / "val", generated / "valannot",
                         Segmenter.load(ESPNET_WEIGHTS, input_size=(176, 240)))
    assert code == 0 and (half["miou"], half["iou"]) == (want["miou"], want["iou"])
    assert half["iou"] != res["iou"]


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("case,needles", [
    ("missing_images", ["--images folder not found"]),
    ("image_without_label", ["1 image(s)", "no label map", "extra.png"]),
    ("label_without_image", ["1 label map(s)", "no image", "val_00001.png"]),
    ("rgb_label", ["mode RGB", "val_00000.png"]),
    ("class_out_of_range", ["class 200", "val_00002.png"]),
    ("corrupt_image", ["cannot read image", "val_00001.png"]),
    ("duplicate_name", ["two files named val_00000"]),
    ("missing_weights", ["ESPNet weights file not found"]),
])
def test_cli_bad_input_one_line(capsys, generated, tmp_path, case, needles):
    images = _copy(generated / "val", tmp_path / "images")
    labels = _copy(generated / "valannot", tmp_path / "labels")
    weights = str(ESPNET_WEIGHTS)
    if case == "missing_images":
        images = tmp_path / "nope"
    elif case == "image_without_label":
        shutil.copy(images / "val_00000.png", images / "extra.png")
    elif case == "label_without_image":
        os.remove(images / "val_00001.png")
    elif case == "rgb_label":
        Image.new("RGB", (128, 96)).save(labels / "val_00000.png")
    elif case == "class_out_of_range":
        Image.fromarray(np.full((96, 128), 200, np.uint8), mode="L").save(labels / "val_00002.png")
    elif case == "corrupt_image":
        (images / "val_00001.png").write_bytes(b"not a png")
    elif case == "duplicate_name":
        shutil.copy(images / "val_00000.png", images / "val_00000.jpg")
    elif case == "missing_weights":
        weights = str(tmp_path / "none.pth")
    code, out, err = run(capsys, "miou", "--images", str(images), "--labels", str(labels),
                         "--weights", weights, "--json")
    assert_one_line_error(code, err, *needles)
    assert out == ""
