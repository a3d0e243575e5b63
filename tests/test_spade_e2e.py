"""GauGAN (SPADE) end to end on a few real CamVid images, tiny: teacher (in-process runner)
-> supernet (Ray Train) -> search ranked by the ESPNet-CamVid mIoU through the FID actor
pool (Ray Tune) -> export -> report, on the local Ray instance with a local-folder store.
One Ray Train stage per family: a launch costs ~20 CPU-s of process start-up and its path is
family-agnostic (tests/test_train.py, the golden run)."""
from __future__ import annotations

import json
import os

import pytest
import torch

from ganc.config import from_dict
from ganc.store import open_store

N_TRAIN, N_VAL = 6, 2


@pytest.fixture(scope="module")
def camvid_few(shared_dir, tmp_path_factory):
    """A CamVid-layout folder of links to the first few shared images (nothing copied)."""
    src = shared_dir / "data" / "camvid"
    weights = shared_dir / "models" / "espnet-camvid" / "espnet_p_2_q_8_camvid.pth"
    if not src.is_dir() or not weights.is_file():
        pytest.skip(f"needs {src} and {weights} (../shared is missing)")
    root = tmp_path_factory.mktemp("camvid-few")
    for split, n in (("train", N_TRAIN), ("val", N_VAL)):
        names = sorted(os.listdir(src / split))[:n]
        for folder in (split, split + "annot"):
            (root / folder).mkdir()
            for name in names:
                os.symlink(src / folder / name, root / folder / name)
    return root


def _cfg(root, store) -> object:
    from ganc.families.spade_cost import SpadeCostModel
    from ganc.space import SearchSpace
    widths = [4, 2]
    cost = SpadeCostModel(height=64, width=64)
    space = SearchSpace.uniform("w", widths, "spade")
    budget = (cost.macs(space.smallest()) + cost.macs(space.largest())) / 2
    return from_dict({
        "name": "spade-tiny", "seed": 0,
        "data": {"kind": "camvid", "root": str(root), "crop_size": 64, "aspect_ratio": 1.0,
                 "batch_size": 2, "search_split": 2},
        "model": {"teacher": "spade", "teacher_ngf": 4, "student": "super_mobile_spade",
                  "student_ngf": 4, "norm": "batch", "netD": "multi_scale", "ndf": 8,
                  "n_layers_D": 4, "gan_mode": "hinge"},
        "teacher": {"steps": 3, "checkpoint_every": 3, "log_every": 1, "eval_every": -1,
                    "lr": 1e-4, "lr_D": 4e-4, "beta1": 0.0, "beta2": 0.9},
        "distill": {"steps": 3, "checkpoint_every": 3, "log_every": 1, "eval_every": 0,
                    "lr": 1e-4, "lr_D": 4e-4, "beta1": 0.0, "beta2": 0.9,
                    "lambda_recon": 0.0, "lambda_distill": 10.0, "space_widths": widths,
                    "lambda_perceptual": 0.0,     # the teacher's steps cover that term
                    "distill_points": ["head_0", "G_middle_1", "up_1"]},
        "search": {"criterion": "miou", "calibration_images": 4, "population": 2,
                   "generations": 2, "budget_macs": budget},
        "fid": {"num_actors": 1, "batch_size": 8, "kid": False},
        "scale": {"workers": 1, "cpus_per_worker": 1, "use_gpu": "false"},
        "pipeline": {"report_images": 2},
        "store": {"url": str(store)},
    }), budget


@pytest.mark.slow
def test_spade_teacher_supernet_miou_search_export(ray_local, camvid_few, tmp_path):
    from ganc import nn as gnn
    from ganc.export import export_best
    from ganc.report import write_report
    from ganc.search.driver import run_search
    from ganc.train.supernet import train_supernet
    from ganc.train.teacher import train_teacher
    from ganc.weights import read_state_dict

    store = tmp_path / "store"
    cfg, budget = _cfg(camvid_few, store)
    t = train_teacher(cfg, str(store), runner="local")
    assert t["step"] == 3 and {"G_GAN", "feat", "perceptual", "D"} <= set(t["metrics"])
    s = train_supernet(cfg, str(store))
    assert s["step"] == 3 and {"distill", "G_GAN", "feat", "D"} <= set(s["metrics"])
    run = open_store(str(store)).run("spade-tiny")
    final = run.get_torch("supernet/final.pt")
    assert (final["netG"], final["input_nc"]) == ("super_mobile_spade", 12)
    assert final["search_space"]["family"] == "spade"
    assert run.get_torch("teacher/final.pt")["recipe"] == "spade"

    best = run_search(cfg, str(store))
    rows = run.get_parquet("search/results.parquet").to_pylist()
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) >= 2 and all(r["macs"] <= budget for r in ok)
    for r in ok:        # both metrics on every scored row
        assert 0.0 <= r["miou"] <= 100.0 and r["fid"] > 0 and r["pixel_acc"] is not None
    assert best["criterion"] == "miou" and best["miou_metric"] == "ESPNet-CamVid mIoU"
    top = max(ok, key=lambda r: (r["miou"], -r["macs"], r["config"]))
    assert (best["config"], best["miou"]) == (top["config"], top["miou"])
    assert json.loads(run.read_bytes("best.json"))["config"] == top["config"]
    assert best["teacher"]["miou"] is not None

    card = export_best(cfg, str(store), latency_repeats=2)
    assert card["netG"] == "sub_mobile_spade" and card["config_str"] == best["config"]
    assert card["miou"] == best["miou"] and card["bn_calibration_images"] == 4
    net = gnn.build("sub_mobile_spade", config=card["config_str"])
    net.load_state_dict(read_state_dict(run.read_bytes("export/model.pt")), strict=True)
    from ganc.data.camvid import CamVidDataset
    x = CamVidDataset(camvid_few, "val", size=(64, 64))[0]["A"][None]
    with torch.no_grad():
        y = net.eval()(x)
    assert y.shape == (1, 3, 64, 64) and torch.isfinite(y).all()

    rep = write_report(cfg, str(store))
    assert {r["method"] for r in rep["rows"]} == {"teacher", "evolution"}
    assert all(r.get("miou") is not None for r in rep["rows"])
    assert "ESPNet-CamVid mIoU" in rep["table"] and run.exists("report/grid.png")
