"""The U-Net family end to end: configs/facades_unet.yaml scaled down to a few real facades
images (unet_128 at 128 px, ngf 4): teacher (in-process runner) -> supernet (Ray Train) ->
search through the FID actor pool (Ray Tune) -> fine-tune (in-process runner) -> export
(ONNX) -> report, on the local Ray instance with a local-folder store (the harness of
tests/test_spade_e2e.py). One Ray Train stage per family: a launch costs ~20 CPU-s of
process start-up and its path is family-agnostic (tests/test_train.py, the golden run)."""
from __future__ import annotations

import json

import pytest
import torch

from ganc.config import load_config
from ganc.store import open_store

from .helpers import REPO, linked_subset

N_TRAIN, N_VAL = 6, 2
TINY = ["model.teacher_ngf=4", "model.student_ngf=4", "model.ndf=8",
        "data.batch_size=2", "data.search_split=2", "data.load_size=136",
        "teacher.steps=3", "teacher.checkpoint_every=3", "teacher.log_every=1",
        "distill.steps=3", "distill.checkpoint_every=3", "distill.log_every=1",
        "distill.space_widths=[4,2]", "search.population=2", "search.generations=2",
        "finetune.steps=2", "finetune.checkpoint_every=2", "finetune.log_every=1",
        "fid.num_actors=1", "fid.batch_size=8", "fid.kid=false",
        "scale.cpus_per_worker=1", "pipeline.report_images=2"]


@pytest.fixture(scope="module")
def facades_few(shared_dir, tmp_path_factory):
    """A facades-layout folder of links to the first few shared images (nothing copied)."""
    return linked_subset(shared_dir / "data" / "facades", tmp_path_factory.mktemp("facades-few"),
                         {"train": N_TRAIN, "val": N_VAL})


@pytest.mark.slow
def test_unet_preset_tiny_end_to_end(ray_local, facades_few, tmp_path):
    from ganc import nn as gnn
    from ganc.export import export_best
    from ganc.families.unet_cost import UnetCostModel
    from ganc.report import write_report
    from ganc.search.driver import run_search
    from ganc.search.finetune import finetune
    from ganc.train.supernet import train_supernet
    from ganc.train.teacher import train_teacher
    from ganc.weights import read_state_dict

    store = tmp_path / "store"
    cost = UnetCostModel(size=128, levels=7)
    budget = (cost.macs([2] * 7) + cost.macs([4] * 7)) / 2
    cfg = load_config(str(REPO / "configs" / "facades_unet.yaml"),
                      TINY + [f"data.root={facades_few}", f"search.budget_macs={budget}",
                              "name=unet-tiny"], store=str(store))
    t = train_teacher(cfg, str(store), runner="local")
    assert t["step"] == 3 and {"G_GAN", "G_L1", "D"} <= set(t["metrics"])
    s = train_supernet(cfg, str(store))
    assert s["step"] == 3 and {"distill", "recon", "G_GAN", "D"} <= set(s["metrics"])
    run = open_store(str(store)).run("unet-tiny")
    final = run.get_torch("supernet/final.pt")
    assert final["netG"] == "super_mobile_unet_128" and final["norm"] == "instance"
    assert final["teacher"]["norm"] == "batch"      # model.norm; model.student_norm: instance
    assert final["search_space"]["family"] == "unet"
    assert len(final["search_space"]["choices"]) == 7
    assert run.get_torch("teacher/final.pt")["netG"] == "unet_128"

    best = run_search(cfg, str(store))
    rows = run.get_parquet("search/results.parquet").to_pylist()
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) >= 2 and all(r["macs"] <= budget for r in ok)
    assert all(r["macs"] == cost.macs(r["config"]) and r["fid"] > 0 for r in ok)
    assert json.loads(run.read_bytes("best.json"))["config"] == best["config"]

    ft = finetune(cfg, str(store), runner="local")
    assert ft["config"] == best["config"] and ft["steps"] == 2

    card = export_best(cfg, str(store), latency_repeats=2)
    assert card["netG"] == "sub_mobile_unet" and card["config_str"] == best["config"]
    assert card["macs"] == cost.macs(best["config"])
    assert card["onnx"]["max_abs_diff_vs_eager"] <= 1e-4
    net = gnn.build("sub_mobile_unet", config=card["config_str"], norm=card["norm"])
    net.load_state_dict(read_state_dict(run.read_bytes("export/model.pt")), strict=True)
    with torch.no_grad():
        y = net.eval()(torch.zeros(1, 3, 128, 128))
    assert y.shape == (1, 3, 128, 128) and torch.isfinite(y).all()

    rep = write_report(cfg, str(store))
    assert {r["method"] for r in rep["rows"]} == {"teacher", "evolution"}
    assert all(r["fid"] > 0 for r in rep["rows"]) and run.exists("report/grid.png")
