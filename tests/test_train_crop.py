"""``data.train_crop_size``: every training stage samples random crops that wide of the
images at ``data.load_size`` while everything evaluated stays at ``data.crop_size``;
sizes no run could use are refused in one line; runs recorded before the field existed
resume, and changing it is a changed input."""
from __future__ import annotations

import copy
import types

import pytest
import torch

from ganc import placement
from ganc.cluster import ClusterInfo
from ganc.config import RunConfig, from_dict, load_config, train_crop
from ganc.context import stage_context
from ganc.data.splits import build_split, eval_split, train_crop_line
from ganc.errors import ConfigError
from ganc.export import _dataset
from ganc.metrics.splits import scoring_split
from ganc.prune.trial import agents_crop
from ganc.publish import recipe
from ganc.resume import INPUTS, check_inputs, check_resume, resume_inputs, stage_inputs
from ganc.search.finetune import finetune_config
from ganc.store import open_store
from ganc.train.launch import schedule_of
from ganc.train.loop import train_batches

CROP, LOAD, TRAIN = 32, 40, 16


def tiny(store, **data) -> RunConfig:
    cfg = RunConfig(name="crops")
    cfg.store.url = str(store)
    d = cfg.data
    d.demo_n, d.demo_size, d.load_size, d.crop_size, d.batch_size = 8, 32, LOAD, CROP, 2
    d.search_split = 2
    for k, v in data.items():
        setattr(d, k, v)
    return cfg


def first_batch(ctx, cfg: RunConfig, stage: str) -> dict:
    """The first training batch of ``stage`` as its workers draw it (one rank)."""
    sess = types.SimpleNamespace(rank=0, world=1, device=torch.device("cpu"))
    spec = {"stage": stage, "data": ctx.data.to_spec(),
            "schedule": schedule_of(ctx, cfg, stage, 1).to_dict()}
    return next(iter(train_batches(sess, cfg, spec, 0)[1]))


def test_training_stages_draw_train_crops_and_the_eval_split_keeps_crop_size(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("GANC_CACHE", str(tmp_path / "cache"))
    cfg = tiny(tmp_path / "store", train_crop_size=TRAIN)
    with stage_context(cfg, ray=False) as ctx:
        for stage in ("teacher", "supernet"):
            batch = first_batch(ctx, ctx.cfg, stage)
            assert batch["A"].shape == batch["B"].shape == (2, 3, TRAIN, TRAIN), stage
        # ganc finetune: the supernet's config (trained at crop_size), this run's crops
        sup = copy.deepcopy(ctx.cfg)
        sup.data.train_crop_size = 0
        ft = finetune_config(ctx.cfg, {"config": sup.to_dict()})
        assert train_crop(ft.data) == TRAIN
        assert first_batch(ctx, ft, "finetune")["A"].shape == (2, 3, TRAIN, TRAIN)
        back = finetune_config(sup, {"config": ctx.cfg.to_dict()})   # and back to 0
        assert first_batch(ctx, back, "finetune")["A"].shape == (2, 3, CROP, CROP)
        # the eval split reads the images at data.crop_size, and so do the scorers
        root = ctx.data_root()
        item = build_split(ctx.cfg, root, eval_split(ctx.cfg.data), train=False)[0]
        assert item["A"].shape == item["B"].shape == (3, CROP, CROP)
        for report in (False, True):             # the search split, the eval split
            assert scoring_split(ctx.cfg, root, report=report).inputs.size == CROP
    assert train_crop_line(ctx.cfg.data, "supernet") == (
        f"[supernet] training on {TRAIN}x{TRAIN} crops of the {LOAD} px images; "
        f"evaluation at {CROP}")
    assert train_crop_line(tiny("s").data, "supernet") == ""


def test_the_agents_crop_is_prune_crop_size_else_the_training_crop():
    cfg = load_config(None, ["data.train_crop_size=128"])
    assert (train_crop(cfg.data), agents_crop(cfg)) == (128, 128)
    cfg.prune.crop_size = 64
    assert (train_crop(cfg.data), agents_crop(cfg)) == (128, 64)
    assert agents_crop(RunConfig()) == train_crop(RunConfig().data) == 256


@pytest.mark.parametrize("sets, message", [
    (["data.train_crop_size=-4"],
     "data.train_crop_size: -4 is out of range: must be >= 0"),
    (["data.train_crop_size=130"],
     "data.train_crop_size: 130 is not a multiple of 4 (the generators downsample twice by 2)"),
    (["data.train_crop_size=300"],
     "data.train_crop_size: 300 is larger than data.load_size 286 (the training crops are cut "
     "from the images resized to it)"),
    (["data.kind=camvid", "data.train_crop_size=128"],
     "data.train_crop_size: 128 on label-map data (data.kind camvid), whose training reads "
     "whole images resized to data.crop_size 256, not crops; leave it 0"),
])
def test_a_training_crop_no_run_could_use_is_one_line(sets, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, sets)
    assert str(e.value) == message
    load_config(None, ["data.train_crop_size=288", "data.load_size=288"])  # up to load_size
    load_config(None, ["data.kind=camvid", "data.train_crop_size=256"])    # = crop_size


def test_a_train_crop_wider_than_the_cpu_placements_load_size_is_refused_at_open(tmp_path):
    """``scale.cpu_crop_size`` scales data.load_size (40 -> 20), not the crops: one line
    when the run is opened, before its placement is recorded (prune.crop_size alike)."""
    for field in ("data.train_crop_size", "prune.crop_size"):
        cfg = tiny(tmp_path / "store")
        cfg.store.run_id = field.replace(".", "-")
        cfg.scale.use_gpu, cfg.scale.cpu_crop_size = "false", 16
        section, name = field.split(".")
        setattr(getattr(cfg, section), name, 24)
        with pytest.raises(ConfigError) as e:
            with stage_context(cfg, ray=False):
                pass
        assert str(e.value) == (
            f"{field}: 24 is larger than data.load_size 20 ("
            + ("the training crops" if section == "data" else "the agents' crops")
            + " are cut from the images resized to it); scale.cpu_crop_size=16 (CPU "
            "placement) scales data.load_size 40 to 20")
        run = open_store(tmp_path / "store").run(cfg.store.run_id)
        assert not run.exists(placement.KEY)
    fits = tiny(tmp_path / "store")
    fits.scale.cpu_crop_size, fits.data.train_crop_size = 16, 20
    record = placement.decide(fits, ClusterInfo(nodes=1, resources={"CPU": 2}))
    placement.check_crops(fits, record)                   # 20 of the scaled 20: fine


def _old(cfg: RunConfig) -> RunConfig:
    """``cfg`` as a run stored before data.train_crop_size existed saw it."""
    stored = cfg.to_dict()
    del stored["data"]["train_crop_size"]
    old = from_dict(stored)                  # an old stored config still loads
    assert old.data.train_crop_size == 0
    old.to_dict = lambda: copy.deepcopy(stored)
    return old


def test_a_run_recorded_before_the_field_resumes_and_a_change_is_an_input(tmp_path):
    cfg = load_config(None, ["search.population=8"])
    old = _old(cfg)
    run = open_store(tmp_path / "store").run("old")
    stages = ["teacher", "supernet", "search", "prune", "finetune"]
    for stage in stages:
        run.put_json(INPUTS.format(stage), {"fields": stage_inputs(old, stage)})
    check_inputs(cfg, run, stages)                           # not "ran with another config"
    for stage in ("finetune", "prune"):                      # their own resumable work
        run.put_json(f"{stage}/inputs.json", {"fields": resume_inputs(old, stage)})
        check_resume(run, stage, resume_inputs(cfg, stage), True, "fix it")
    changed = load_config(None, ["search.population=8", "data.train_crop_size=128"])
    with pytest.raises(ConfigError, match=r"stage teacher ran with another config "
                                          r"\(data\.train_crop_size: recorded unset, now 128\)"):
        check_inputs(changed, run, stages)
    for stage in ("supernet", "prune", "finetune"):          # each training stage's inputs
        assert stage_inputs(changed, stage)["data.train_crop_size"] == 128
    for stage in ("finetune", "prune"):
        with pytest.raises(ConfigError, match=rf"stage {stage} ran with another config "
                                              r"\(data\.train_crop_size"):
            check_resume(run, stage, resume_inputs(changed, stage), True, "fix it")


def test_the_model_cards_record_the_training_crop():
    cfg = RunConfig()
    sup = {"config": {"data": {"crop_size": 256, "train_crop_size": 128}}}
    assert (_dataset(cfg, sup)["crop_size"], _dataset(cfg, sup)["train_crop_size"]) == (256, 128)
    before = {"config": {"data": {"crop_size": 256}}}          # a supernet from before it
    assert _dataset(cfg, before)["train_crop_size"] == 256
    card = {"agents_crop_size": 64, "train_crop_size": 128, "finetune": {}}
    stored = {"data": {"crop_size": 256, "load_size": 286, "train_crop_size": 128}}
    made = recipe(None, {"method": "prune"}, card, stored)
    assert made["agents"]["crop_size"] == 64 and made["finetune"]["crop_size"] == 128
    assert made["data"]["train_crop_size"] == 128
