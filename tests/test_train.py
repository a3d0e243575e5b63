"""Ray Train teacher and supernet jobs on generated data: real TorchTrainer with 2 gloo
workers on loopback, checkpoints in the store (local folder and the local S3 server),
re-runs of finished jobs. A killed worker and an interrupted job that is re-run are
tests/test_faults.py's training and disk-full cases."""
from __future__ import annotations

import os

import pytest
import torch

from ganc import nn as gnn
from ganc.config import from_dict
from ganc.store import open_store
from ganc.train.supernet import train_supernet
from ganc.train.teacher import train_teacher
from ganc.weights import read_state_dict


# Two workers share a global batch of 2; lengths are explicit step counts.
TINY = {"demo_n": 16, "demo_size": 32, "load_size": 36, "crop_size": 32, "batch_size": 2}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    # one demo-data cache for the whole session
    monkeypatch.setenv("GANC_CACHE", str(tmp_path_factory.getbasetemp() / "ganc-cache"))


def tiny_cfg(name, kind="aligned", teacher=None, distill=None, scale=None, model=None):
    return from_dict({
        "name": name, "seed": 1,
        "data": {"kind": kind, **TINY},
        "model": {"teacher_ngf": 8, "ndf": 8, "student_ngf": 16, **(model or {})},
        "teacher": {"steps": 40, "checkpoint_every": 10, "log_every": 5, "lr": 1e-3,
                    "eval_every": -1, **(teacher or {})},
        "distill": {"steps": 40, "checkpoint_every": 10, "log_every": 5, "lr": 1e-3,
                    "eval_every": 0, "space_widths": [16, 8, 4], **(distill or {})},
        "scale": {"workers": 2, "cpus_per_worker": 1, "max_failures": 2, **(scale or {})},
    })


def first_last(history, key, k=2):
    vals = [h[key] for h in history if key in h]
    assert len(vals) >= 2 * k, history
    return sum(vals[:k]) / k, sum(vals[-k:]) / k


@pytest.fixture(scope="module")
def teacher_run(ray_local, tmp_path_factory):
    """A pix2pix teacher trained once on a local-folder store (2 workers)."""
    root = tmp_path_factory.mktemp("store")
    cfg = tiny_cfg("pix")
    result = train_teacher(cfg, str(root))
    return cfg, root, result


@pytest.mark.slow
def test_teacher_pix2pix_trains_and_lands_in_file_store(teacher_run):
    cfg, root, result = teacher_run
    assert not result["skipped"] and result["step"] == 40
    first, last = first_last(result["history"], "G_L1")
    assert last < 0.8 * first, (first, last)
    run = open_store(str(root)).run("pix")
    for key in ("teacher/final.pt", "teacher/config.yaml", "teacher/latest.json",
                "teacher/metrics.jsonl", "teacher/latest_net_G.pth"):
        assert run.exists(key), key
    assert any(k.startswith("teacher/tb/events.out.tfevents") for k in run.ls("teacher/tb"))
    ckpts = [k for k in run.ls("teacher/ray") if k.endswith("/state.pt")]
    assert "teacher/ray/step-00000040/state.pt" in ckpts
    # the final artifact: metadata plus weights that load strictly, weights_only
    final = run.get_torch("teacher/final.pt")
    assert (final["netG"], final["ngf"], final["step"]) == ("resnet_9blocks", 8, 40)
    assert final["config"]["name"] == "pix"
    G = gnn.build("resnet_9blocks", ngf=8)
    G.load_state_dict(read_state_dict(run.read_bytes("teacher/final.pt")), strict=True)
    # two workers, one start
    assert [s["world"] for s in result["starts"]] == [2]


def _stage_files(root, run_id, stage):
    """{relative path: (bytes, mtime_ns)} of every file a stage has in a local store."""
    base = os.path.join(root, "runs", run_id, stage)
    out = {}
    for d, _, names in os.walk(base):
        for n in names:
            p = os.path.join(d, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, base)] = (f.read(), os.stat(p).st_mtime_ns)
    return out


@pytest.mark.slow
def test_rerunning_a_finished_teacher_job_does_no_training(teacher_run, capsys):
    from ganc.train.common import parse_lines
    cfg, root, _ = teacher_run
    run = open_store(str(root)).run("pix")
    starts_before = [r for r in parse_lines(run.read_bytes("teacher/metrics.jsonl"))
                     if r.get("event") == "start"]
    assert [(s["step"], s["world"]) for s in starts_before] == [(0, 2)]
    files_before = _stage_files(str(root), "pix", "teacher")
    assert "final.pt" in files_before and "metrics.jsonl" in files_before
    capsys.readouterr()
    again = train_teacher(cfg, str(root))
    assert again["skipped"] and again["step"] == 40
    assert "nothing to train" in capsys.readouterr().out
    # no new start event: the job never started, in the store or in what it returned
    starts_after = [r for r in parse_lines(run.read_bytes("teacher/metrics.jsonl"))
                    if r.get("event") == "start"]
    assert starts_after == starts_before and again["starts"] == starts_before
    # nothing under teacher/ was written: same files (no new checkpoint), same bytes and
    # modification times (final.pt, metrics, config, schedule, TensorBoard events)
    files_after = _stage_files(str(root), "pix", "teacher")
    assert sorted(files_after) == sorted(files_before)
    changed = [k for k in files_before if files_after[k] != files_before[k]]
    assert not changed, changed


@pytest.mark.slow
def test_cyclegan_teacher_on_s3(ray_local, s3_url):
    cfg = tiny_cfg("cyc", kind="unaligned", teacher={"steps": 30},
                   model={"gan_mode": "lsgan"})
    result = train_teacher(cfg, s3_url)
    assert result["step"] == 30 and result["final"].startswith("s3://")
    first, last = first_last(result["history"], "cycle")
    assert last < 0.9 * first, (first, last)
    run = open_store(s3_url).run("cyc")
    assert run.exists("teacher/final.pt")
    assert run.exists("teacher/ray/step-00000030/state.pt")  # Ray Train wrote to S3
    final = run.get_torch("teacher/final.pt")
    assert final["recipe"] == "cyclegan" and "netG_B" in final


def _check_supernet_final(final, space_widths, teacher_source_suffix):
    assert final["netG"] == "super_mobile_resnet_9blocks" and final["ngf"] == 16
    assert final["search_space"]["choices"][0] == sorted(space_widths, reverse=True)
    assert final["teacher"]["source"].endswith(teacher_source_suffix)
    assert final["teacher"]["netG"] == "resnet_9blocks" and final["teacher"]["ngf"] == 8
    assert final["step"] == final["config"]["distill"]["steps"]
    sup = gnn.build(final["netG"], ngf=final["ngf"], norm=final["norm"])
    sup.load_state_dict(final["state_dict"], strict=True)
    sub = gnn.extract_subnet(sup, "4_4_4_4_4_4_4_4")
    x = torch.randn(1, 3, 32, 32)
    sup.eval(), sub.eval()
    assert torch.allclose(sub(x), sup(x, "4_4_4_4_4_4_4_4"), atol=1e-5)


@pytest.mark.slow
def test_supernet_sandwich_from_run_teacher_file_store(teacher_run):
    cfg, root, _ = teacher_run
    cfg.distill.sampler = "sandwich"
    cfg.distill.eval_every = 20
    result = train_supernet(cfg, str(root))
    assert not result["skipped"] and result["step"] == 40
    # FID of the largest and smallest sub-networks on the eval split, at 20 and 40
    scored = [h for h in result["history"] if "fid_largest" in h]
    assert [h["step"] for h in scored] == [20, 40], scored
    assert all(h["fid_largest"] > 0 and h["fid_smallest"] > 0 for h in scored)
    for key in ("recon", "distill"):
        first, last = first_last(result["history"], key)
        assert last < 0.8 * first, (key, first, last)
    run = open_store(str(root)).run("pix")
    assert run.exists("supernet/ray/step-00000040/state.pt")
    _check_supernet_final(run.get_torch("supernet/final.pt"), [16, 8, 4], "teacher/final.pt")


@pytest.mark.slow
def test_unpaired_supernet_with_released_style_teacher_on_s3(teacher_run, s3_url):
    _, root, _ = teacher_run
    weights = os.path.join(root, "runs", "pix", "teacher", "latest_net_G.pth")
    cfg = tiny_cfg("sup-s3", kind="unaligned", distill={"steps": 30, "lambda_recon": 10.0,
                                                         "lambda_distill": 0.01},
                   model={"teacher_weights": weights, "gan_mode": "lsgan"})
    result = train_supernet(cfg, s3_url)
    assert result["step"] == 30
    first, last = first_last(result["history"], "recon")
    assert last < 0.9 * first, (first, last)
    run = open_store(s3_url).run("sup-s3")
    assert run.exists("supernet/ray/step-00000030/state.pt")
    _check_supernet_final(run.get_torch("supernet/final.pt"), [16, 8, 4], "latest_net_G.pth")


def _ganc_lines(text):
    # Ray actors of earlier tests may still print to the captured stderr: keep ganc's lines
    return [ln for ln in text.strip().splitlines() if ln.startswith("ganc ")]


def test_cli_errors_are_one_line(tmp_path, capsys):
    from ganc.cli import main
    rc = main(["train-supernet", "--config", "configs/demo.yaml", "--store", str(tmp_path),
               "--set", "distill.steps=5"])
    err = _ganc_lines(capsys.readouterr().err)
    assert rc == 2 and len(err) == 1
    assert "no teacher" in err[0] and "ganc train-teacher" in err[0]
    rc = main(["train-teacher", "--config", "configs/demo.yaml", "--set", "teacher.stepz=5"])
    err = "\n".join(_ganc_lines(capsys.readouterr().err))
    assert rc == 2 and "unknown field 'teacher.stepz'" in err
    rc = main(["train-supernet", "--config", "configs/demo.yaml", "--store", str(tmp_path),
               "--set", "distill.space_widths=[32,16]"])
    err = "\n".join(_ganc_lines(capsys.readouterr().err))
    assert rc == 2 and "student_ngf 16" in err


def test_configs_parse_and_follow_the_published_recipes():
    from ganc.config import load_config
    fac = load_config("configs/facades.yaml")
    assert (fac.data.direction, fac.scale.cpu_crop_size, fac.distill.lambda_recon,
            fac.model.search_space) == ("BtoA", 128, 100.0, "channels-64-pix2pix")
    h2z = load_config("configs/horse2zebra.yaml")
    assert (h2z.model.gan_mode, h2z.distill.lambda_recon, h2z.distill.lambda_distill,
            h2z.teacher.pool_size, h2z.model.search_space) == (
        "lsgan", 10.0, 0.01, 50, "channels-64-cycleGAN")
    e2s = load_config("configs/edges2shoes.yaml")
    assert e2s.search.budget_macs == 4.9e9 and e2s.data.direction == "AtoB"
    assert (fac.teacher.epochs, fac.teacher.epochs_decay, fac.data.batch_size) == (100, 100, 1)
    assert (e2s.distill.epochs, e2s.distill.epochs_decay, e2s.data.batch_size) == (10, 30, 4)
    demo = load_config("configs/demo.yaml")
    assert demo.data.root == "" and demo.data.kind == "aligned"
    from ganc import placement
    from ganc.cluster import ClusterInfo
    cpu = placement.decide(load_config("configs/facades.yaml"), ClusterInfo(1, {"CPU": 2}))
    assert (cpu["device"], cpu["crop_size"], cpu["load_size"]) == ("cpu", 128, 143)
    gpu = placement.decide(load_config("configs/facades.yaml"),
                           ClusterInfo(1, {"CPU": 2, "GPU": 1}))
    assert (gpu["device"], gpu["crop_size"]) == ("cuda", 256)
