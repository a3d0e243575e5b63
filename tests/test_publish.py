"""`ganc publish`: one exported model of a run into the zoo, with its card's added keys,
the teacher's LICENSE, and `ganc translate --weights` from the published folder alone;
its one-line refusals. The run is made by hand (a tiny exported sub-network committed as
the export unit, a pruned-model unit, config.yaml and stage records): the export itself
is tested in test_export.py."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from ganc import nn as gnn
from ganc.cli import main as ganc
from ganc.config import from_dict
from ganc.errors import ConfigError
from ganc.publish import attribution, publish, published
from ganc.store import open_store, torch_bytes

CONFIG = "8_4_8_4_4_8_8_4"


def _teacher_folder(tmp_path):
    d = tmp_path / "teacher"
    d.mkdir()
    (d / "latest_net_G.pth").write_bytes(b"not read by publish")
    (d / "LICENSE").write_text("For Some software\nCopyright (c) 2020, A. Author\nBSD\n")
    (d / "model.json").write_text(json.dumps({"source": "a released teacher"}))
    return d


def _run(tmp_path, teacher_weights=""):
    url = str(tmp_path / "store")
    cfg = from_dict({"name": "r", "seed": 7, "store": {"url": url},
                     "data": {"load_size": 32, "crop_size": 32},
                     "model": {"teacher_weights": teacher_weights},
                     "distill": {"steps": 5}, "finetune": {"steps": 3, "lr": 1e-3},
                     "search": {"population": 6, "generations": 2}})
    run = open_store(url).run("r")
    run.write_bytes("config.yaml", cfg.to_yaml().encode())
    run.put_json("pipeline/supernet.json", {"stage": "supernet", "step": 5})
    run.put_json("best.json", {"config": CONFIG, "macs": 1, "fid": 12.5,
                               "search": {"budget_macs": 2.0e6},
                               "teacher": {"source": teacher_weights or None}})
    torch.manual_seed(0)
    net = gnn.build("sub_mobile_resnet_9blocks", config=CONFIG, ngf=8).eval()
    card = {"netG": "sub_mobile_resnet_9blocks", "config_str": CONFIG, "ngf": 8,
            "norm": "instance", "input_nc": 3, "output_nc": 3, "macs": 1234567,
            "fid": 12.5, "finetune_steps": 3, "finetuned": True}
    run.commit_unit("export", {"model.pt": torch_bytes(net.state_dict()), "model.json": card})
    run.write_bytes("prune/config.yaml", cfg.to_yaml().encode())
    run.commit_unit("prune/p0.5-nolds", {
        "model.pt": torch_bytes({"w": torch.zeros(3)}),
        "model.json": {"method": "prune-lds", "target": 0.5, "steps": 11, "macs": 999,
                       "fid": 30.0, "finetune_steps": 4,
                       "finetune": {"recipe": {"lr": 2e-4}},
                       "ablation": {"use_lds": False, "peer_feedback": True,
                                    "prune_d": True}}})
    return url, run, net, cfg


def test_publish_copies_the_export_and_translate_reads_it(tmp_path, capsys):
    teacher = _teacher_folder(tmp_path)
    url, run, net, cfg = _run(tmp_path, str(teacher / "latest_net_G.pth"))
    zoo = tmp_path / "zoo" / "x"
    assert ganc(["publish", "--store", url, "--run-id", "r", "--model", "best",
                 "--out", str(zoo)]) == 0
    assert sorted(os.listdir(zoo)) == ["LICENSE.teacher", "model.json", "model.pt"]
    assert not [n for n in os.listdir(zoo.parent) if n != "x"]      # no temporary left
    assert (zoo / "model.pt").read_bytes() == run.read_bytes("export/model.pt")
    card = json.loads((zoo / "model.json").read_text())
    exported = run.get_json("export/model.json")
    assert {k: card[k] for k in exported} == exported
    assert card["method"] == "evolution" and card["seed"] == cfg.seed == 7
    r = card["recipe"]
    assert r["supernet"]["steps"] == 5 and r["supernet"]["trained_steps"] == 5
    assert (r["search"]["population"], r["search"]["generations"]) == (6, 2)
    assert r["search"]["budget_macs"] == 2.0e6
    assert r["finetune"] == {"steps": 3, "lr": 1e-3, "finetuned": True}
    assert r["data"]["crop_size"] == 32 and r["data"]["load_size"] == 32
    assert card["licence"] == {"teacher": "a released teacher",
                               "copyright": "Copyright (c) 2020, A. Author",
                               "file": "LICENSE.teacher"}
    assert (zoo / "LICENSE.teacher").read_bytes() == (teacher / "LICENSE").read_bytes()
    assert card["source"] == run.url("export")
    # translate with the published folder alone: the pixels of the generator's output
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
            for _ in range(2)]
    for i, im in enumerate(imgs):
        im.save(src / f"{i}.png")
    assert ganc(["translate", "--weights", str(zoo / "model.pt"), "--input", str(src),
                 "--output", str(tmp_path / "res"), "--size", "32", "--device", "cpu"]) == 0
    for i, im in enumerate(imgs):
        x = torch.from_numpy((np.asarray(im, dtype=np.float32) / 127.5 - 1.0)
                             .transpose(2, 0, 1).copy())[None]
        with torch.no_grad():
            want = ((net(x)[0].clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy()
        got = np.asarray(Image.open(tmp_path / "res" / f"{i}.png"), dtype=int)
        assert np.abs(got - want.astype(int)).max() <= 1


def test_list_and_prune_selector(tmp_path, capsys):
    url, run, _, _ = _run(tmp_path)
    assert ganc(["publish", "--store", url, "--run-id", "r", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [["best", "evolution"],
                                                    ["p0.5-nolds", "prune"]]
    assert "0.001G" in lines[0] and "12.50" in lines[0] and "30.00" in lines[1]
    card = publish(run, "prune:p0.5-nolds", tmp_path / "zoo" / "p")
    assert card["method"] == "prune" and card["seed"] == 7
    assert card["recipe"]["agents"]["steps"] == 11 and card["recipe"]["agents"]["target"] == 0.5
    assert card["recipe"]["agents"]["ablation"]["use_lds"] is False
    assert card["recipe"]["finetune"] == {"steps": 4, "lr": 2e-4}
    assert card["licence"] == {"teacher": "trained by ganc", "copyright": None, "file": None}
    assert sorted(os.listdir(tmp_path / "zoo" / "p")) == ["model.json", "model.pt"]
    assert [e["name"] for e in published(run)] == ["best", "p0.5-nolds"]


def test_attribution_without_a_license(tmp_path):
    (tmp_path / "w.pth").write_bytes(b"x")
    assert attribution(str(tmp_path / "w.pth")) == (
        {"teacher": "w.pth", "copyright": None, "file": None}, None)


def test_refusals_are_one_line(tmp_path, capsys):
    url, run, _, _ = _run(tmp_path)
    out = tmp_path / "zoo" / "x"
    with pytest.raises(ConfigError, match=r"MB, over the zoo's limit of 0.001 MB"):
        publish(run, "best", out, max_mb=0.001)
    assert not out.exists() and not (tmp_path / "zoo").exists() or \
        not os.listdir(tmp_path / "zoo")
    with pytest.raises(ConfigError, match=r"no such exported model .*best, p0.5-nolds"):
        publish(run, "prune:0.25", out)
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not empty; pass --force"):
        publish(run, "best", out)
    assert os.listdir(out) == ["keep.txt"]
    publish(run, "best", out, force=True)
    assert sorted(os.listdir(out)) == ["model.json", "model.pt"]
    assert ganc(["publish", "--store", url, "--run-id", "nope", "--list"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no run 'nope'" in err[0]
    assert ganc(["publish", "--store", url, "--run-id", "r", "--model", "budget:5e9",
                 "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--model budget:5e9" in err[0]


def test_a_failed_publish_leaves_nothing(tmp_path, monkeypatch):
    teacher = _teacher_folder(tmp_path)
    _, run, _, _ = _run(tmp_path, str(teacher / "latest_net_G.pth"))

    def broken(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr("ganc.publish.shutil.copyfile", broken)   # the last file written
    with pytest.raises(OSError):
        publish(run, "best", tmp_path / "zoo" / "x")
    assert os.listdir(tmp_path / "zoo") == []
