"""The foundation commands, including every bad input of the foundation issue."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ganc import nn as gnn
from ganc.cli import build_parser, main

from .helpers import H2Z_DATA, H2Z_MODEL, linked_subset, needs_shared


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code, err, *needles):
    assert code != 0
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("translate ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture(scope="module")
def small_weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("w")
    torch.manual_seed(0)
    g = gnn.build("sub_mobile_resnet_9blocks", config="8_8_8_8_8_8_8_8")
    torch.save(g.state_dict(), d / "g.pth")
    return d / "g.pth"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(d / f"im{i}.jpg")
    return d


def test_every_command_has_help(capsys):
    parser = build_parser()
    cmds = parser._subparsers._group_actions[0].choices
    assert {"profile", "translate", "make-demo-data", "check-data", "nets"} <= set(cmds)
    for name in cmds:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        assert "usage: ganc " + name in capsys.readouterr().out


def test_console_script_profile_json():
    # at 64x64: every feature map is exactly 1/16 of its 256x256 size, so are the MACs
    # (the published 56.8 G at 256x256 in-process: test_profile.py's
    # test_teacher_macs_match_published_convention)
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ganc"), "profile",
                          "--netG", "resnet_9blocks", "--size", "64", "--json"],
                         capture_output=True, text=True, check=True)
    res = json.loads(out.stdout)
    assert res["input_size"] == [1, 3, 64, 64]
    assert abs(16 * res["macs"] - 56.8e9) / 56.8e9 < 0.005
    assert res["convention"] == "torchprofile"


def test_profile_released_config(capsys):
    code, out, _ = run(capsys, "profile", "--netG", "sub_mobile_resnet_9blocks", "--config",
                       "16_16_32_16_32_32_16_16", "--size", "256", "--json")
    res = json.loads(out)
    assert code == 0 and abs(res["macs"] - 2.55e9) / 2.55e9 < 0.005
    assert res["params"] == 356_867
    code, out, _ = run(capsys, "profile", "--netG", "super_mobile_resnet_9blocks", "--config",
                       "16_16_32_16_32_32_16_16", "--size", "64", "--json")
    assert json.loads(out)["params"] == 356_867  # the sub-net, not the whole supernet
    code, out, _ = run(capsys, "profile", "--netG", "resnet_9blocks", "--convention",
                       "flopcounter", "--size", "32", "--latency", "--repeats", "2")
    assert code == 0 and "flopcounter" in out and "latency" in out


@pytest.mark.parametrize("config,needles", [
    ("16_16_32", ["16_16_32", "3 numbers"]),
    ("16_16_32_16_40_32_16_16", ["position 4", "40", "allowed: 64, 48, 32, 24, 16"]),
])
def test_profile_bad_config(capsys, config, needles):
    code, out, err = run(capsys, "profile", "--netG", "sub_mobile_resnet_9blocks", "--config",
                         config, "--space", "channels-64-cycleGAN")
    assert_one_line_error(code, err, *needles)
    assert out == ""


def test_make_demo_data_and_check_data(capsys, tmp_path):
    code, out, _ = run(capsys, "make-demo-data", "--kind", "paired", "--n", "4", "--size", "32",
                       "--out", str(tmp_path / "p"))
    assert code == 0 and "wrote paired demo data" in out
    code, out, _ = run(capsys, "check-data", "--kind", "aligned", "--root", str(tmp_path / "p"),
                       "--json")
    assert code == 0 and json.loads(out)["pairs"] == 4
    code, out, _ = run(capsys, "make-demo-data", "--kind", "unpaired", "--n", "4", "--size",
                       "32", "--out", str(tmp_path / "u"))
    code, out, _ = run(capsys, "check-data", "--kind", "unaligned", "--root", str(tmp_path / "u"))
    assert code == 0 and "4 A, 4 B" in out


def test_translate_writes_same_names(capsys, tmp_path, small_weights, images):
    code, out, err = run(capsys, "translate", "--netG", "sub_mobile_resnet_9blocks", "--config",
                         "8_8_8_8_8_8_8_8", "--weights", str(small_weights), "--input",
                         str(images), "--output", str(tmp_path / "o"), "--size", "32")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "o")) == ["im0.png", "im1.png", "im2.png"]
    assert Image.open(tmp_path / "o/im0.png").size == (32, 32)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".ganc")]


def _bad_translate(capsys, tmp_path, weights, inp, *extra, netG="sub_mobile_resnet_9blocks",
                   config="8_8_8_8_8_8_8_8"):
    out_dir = tmp_path / "out"
    args = ["translate", "--netG", netG, "--weights", str(weights), "--input", str(inp),
            "--output", str(out_dir), "--size", "32", *extra]
    if config:
        args += ["--config", config]
    code, out, err = run(capsys, *args)
    assert not out_dir.exists(), "a failed translate must write nothing"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".ganc")]
    return code, err


def test_translate_missing_and_empty_folder(capsys, tmp_path, small_weights):
    code, err = _bad_translate(capsys, tmp_path, small_weights, tmp_path / "missing")
    assert_one_line_error(code, err, "not found", "missing")
    (tmp_path / "empty").mkdir()
    code, err = _bad_translate(capsys, tmp_path, small_weights, tmp_path / "empty")
    assert_one_line_error(code, err, "no images", "empty")


def test_translate_truncated_image_writes_nothing(capsys, tmp_path, small_weights, images):
    inp = tmp_path / "in"
    inp.mkdir()
    for f in os.listdir(images):
        (inp / f).write_bytes((images / f).read_bytes())
    data = (inp / "im2.jpg").read_bytes()
    (inp / "im2.jpg").write_bytes(data[: len(data) // 3])
    code, err = _bad_translate(capsys, tmp_path, small_weights, inp)
    assert_one_line_error(code, err, "im2.jpg")
    (inp / "im2.jpg").write_bytes(b"not an image at all")
    code, err = _bad_translate(capsys, tmp_path, small_weights, inp)
    assert_one_line_error(code, err, "cannot read image", "im2.jpg")


def test_translate_wrong_architecture(capsys, tmp_path, small_weights, images):
    code, err = _bad_translate(capsys, tmp_path, small_weights, images, netG="resnet_9blocks",
                               config=None)
    assert_one_line_error(code, err, "do not fit resnet_9blocks", "model.1.weight",
                          "(8, 3, 7, 7)", "(64, 3, 7, 7)")
    code, err = _bad_translate(capsys, tmp_path, small_weights, images,
                               config="8_8_8_8_8_8_8_16")
    assert_one_line_error(code, err, "do not fit", "model.22.weight")
    code, err = _bad_translate(capsys, tmp_path, small_weights, images, config="8_8_8_8")
    assert_one_line_error(code, err, "4 numbers")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(small_weights.read_bytes()[:500])
    code, err = _bad_translate(capsys, tmp_path, corrupt, images)
    assert_one_line_error(code, err, "cannot read weights", "corrupt.pth")


def test_check_data_odd_width_aligned(capsys, tmp_path):
    (tmp_path / "ds/train").mkdir(parents=True)
    Image.new("RGB", (64, 32)).save(tmp_path / "ds/train/ok.png")
    Image.new("RGB", (65, 32)).save(tmp_path / "ds/train/odd.png")
    code, out, err = run(capsys, "check-data", "--root", str(tmp_path / "ds"))
    assert_one_line_error(code, err, "odd.png", "odd width 65")


def test_subprocess_error_has_no_traceback(tmp_path):
    p = subprocess.run([sys.executable, "-m", "ganc", "translate", "--netG", "resnet_9blocks",
                        "--weights", str(tmp_path / "nope.pth"), "--input", str(tmp_path),
                        "--output", str(tmp_path / "o")], capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


@needs_shared(H2Z_MODEL, H2Z_DATA)
def test_translate_released_horse2zebra(capsys, tmp_path):
    # 4 of the mini set's 20 test horses (linked, not copied): what is checked is per image
    (tmp_path / "h2z").mkdir()
    testA = linked_subset(H2Z_DATA, tmp_path / "h2z", {"testA": 4}) / "testA"
    outs = []
    for k in range(2):
        out = tmp_path / f"o{k}"
        # model.json beside the weights names the architecture and config
        code, _, err = run(capsys, "translate", "--weights",
                           str(H2Z_MODEL / "latest_net_G.pth"), "--input",
                           str(testA), "--output", str(out))
        assert code == 0, err
        outs.append(out)
    names = sorted(os.listdir(outs[0]))
    assert len(names) == 4 and all(n.endswith(".png") for n in names)
    stems = sorted(os.path.splitext(n)[0] for n in os.listdir(testA))
    assert [os.path.splitext(n)[0] for n in names] == stems
    for n in names:
        a = np.asarray(Image.open(outs[0] / n))
        b = np.asarray(Image.open(outs[1] / n))
        assert a.shape == (256, 256, 3)
        assert np.array_equal(a, b), "translation must be deterministic"
        assert a.std() > 20, "output must not be constant"
    # It changed the images (horse -> zebra), it did not copy them.
    src = np.asarray(Image.open(testA / (stems[0] + ".jpg")).convert("RGB")
                     .resize((256, 256)), dtype=np.float32)
    assert np.abs(np.asarray(Image.open(outs[0] / names[0]), dtype=np.float32) - src).mean() > 5


# ------------------------------------------------------------ issue 28: nothing destroyed
def _png_folder(folder, n=3):
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            folder / f"im{i}.png")
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("where", ["same", "link", "inside", "holds"])
def test_translate_refuses_output_overlapping_input(capsys, tmp_path, small_weights, where):
    """--output equal to (also through a symlink), inside or holding --input would write
    PNGs over the source images: refused in one line before anything is read or written."""
    src = tmp_path / "data" / "imgs"
    src.parent.mkdir()
    before = _png_folder(src)
    os.symlink(src, tmp_path / "alias")
    out = {"same": src, "link": tmp_path / "alias", "inside": src / "out",
           "holds": src.parent}[where]
    code, stdout, err = run(capsys, "translate", "--netG", "sub_mobile_resnet_9blocks",
                            "--config", "8_8_8_8_8_8_8_8", "--weights", str(small_weights),
                            "--input", str(src), "--output", str(out), "--size", "0")
    assert_one_line_error(code, err, "--output", "--input", "overwrite the source images")
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before
    assert sorted(os.listdir(src.parent)) == ["imgs"] and stdout == ""


def test_translate_output_that_is_a_file(capsys, tmp_path, small_weights, images):
    (tmp_path / "f").write_text("x")
    code, _, err = run(capsys, "translate", "--netG", "sub_mobile_resnet_9blocks", "--config",
                       "8_8_8_8_8_8_8_8", "--weights", str(small_weights), "--input",
                       str(images), "--output", str(tmp_path / "f"), "--size", "32")
    assert_one_line_error(code, err, "--output", "is a file")
    assert (tmp_path / "f").read_text() == "x"


def test_translate_reports_what_it_wrote(capsys, tmp_path, small_weights, images):
    """The count printed is the files written; a batch loop that writes nothing (a batch
    size the parser would refuse, given to the command directly) never claims 3 images."""
    import argparse

    from ganc.commands.models import cmd_translate
    base = dict(netG="sub_mobile_resnet_9blocks", config="8_8_8_8_8_8_8_8", space=None,
                ngf=None, norm=None, weights=str(small_weights), onnx=None, threads=0,
                input=str(images), size=32, device="cpu")
    code, out, _ = run(capsys, "translate", "--netG", base["netG"], "--config", base["config"],
                       "--weights", base["weights"], "--input", str(images), "--output",
                       str(tmp_path / "ok"), "--size", "32", "--batch-size", "2")
    assert code == 0 and out.startswith("wrote 3 images to ")
    with pytest.raises(Exception):
        cmd_translate(argparse.Namespace(**base, output=str(tmp_path / "o"), batch_size=-4))
    assert "wrote 3" not in capsys.readouterr().out
    assert not (tmp_path / "o").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".ganc")]


def test_resolve_device_without_that_gpu(monkeypatch):
    from ganc.commands._args import resolve_device
    from ganc.errors import ConfigError
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu" and resolve_device("cpu").type == "cpu"
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match=f"--device {name}: this machine has no CUDA"):
            resolve_device(name)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert str(resolve_device("cuda:1")) == "cuda:1"
    with pytest.raises(ConfigError, match=r"has 2 CUDA device\(s\) \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:2")
    with pytest.raises(ConfigError, match="'gpu0' is not a device"):
        resolve_device("gpu0")


def test_translate_on_a_missing_gpu_is_one_line(capsys, tmp_path, small_weights, images,
                                                monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, err = _bad_translate(capsys, tmp_path, small_weights, images, "--device", "cuda:3")
    assert_one_line_error(code, err, "--device cuda:3: this machine has no CUDA device")


def test_debug_shows_the_traceback(tmp_path):
    env = {**os.environ, "GANC_DEBUG": "1"}
    p = subprocess.run([sys.executable, "-m", "ganc", "translate", "--netG", "resnet_9blocks",
                        "--weights", str(tmp_path / "nope.pth"), "--input", str(tmp_path),
                        "--output", str(tmp_path / "o")], capture_output=True, text=True,
                       env=env)
    assert p.returncode == 2 and "Traceback" in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("ganc translate: error: ")


def test_usage_errors_are_one_line(capsys):
    code, out, err = run(capsys, "translate", "--input", "x")
    assert code == 2 and out == ""
    assert err == "ganc translate: error: the following arguments are required: --output\n"
    code, out, err = run(capsys, "nope")
    assert code == 2 and err.startswith("ganc: error: COMMAND: invalid choice: 'nope'")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("argv", [["runs", "s3://ganc-test/x"],
                                  ["pull", "s3://ganc-test/x/runs/r", "-o", "OUT"]])
def test_unreachable_s3_is_one_line(capsys, monkeypatch, tmp_path, argv):
    """A refused endpoint: one line naming the URL and the cause after the store's retries
    (shortened here), in seconds, not minutes (s3fs and botocore do not retry on top).
    The bound is loose on purpose (a few seconds on a quiet machine; it failed at 10 s
    under load): it catches retries piled on retries, not a busy machine."""
    import time

    from ganc.store import retry as store_retry
    for k, v in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
                 "NO_PROXY": "127.0.0.1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    monkeypatch.setattr(store_retry, "RETRY_DELAYS", (0.01, 0.01))
    t = time.time()
    code, out, err = run(capsys, *[str(tmp_path / "o") if a == "OUT" else a for a in argv])
    assert_one_line_error(code, err, "s3://ganc-test/x/runs", "127.0.0.1:9",
                          "Could not connect")
    assert time.time() - t < 60 and out == "" and not (tmp_path / "o").exists()
