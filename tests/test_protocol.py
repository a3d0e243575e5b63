"""The published protocol: a search split held out of the training data (deterministic, the
same on every copy of the dataset, disjoint from what the supernet trains on), the search,
fine-tune selection and export never reading val, and the export of the better of the
supernet's slice and the fine-tuned weights."""
from __future__ import annotations

import io
import math
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from ganc.config import from_dict, validate
from ganc.data.datasets import rel_name
from ganc.data.source import DataRef, upload_folder
from ganc.data.splits import (SEARCH, build_split, eval_split, held_out, search_names,
                              split_size, val_names)
from ganc.errors import ConfigError, DataError
from ganc.metrics.splits import scoring_split

from .helpers import H2Z_FULL, REPO, needs_shared

CONFIG = "8_4_8_4_4_8_8_4"


def _images(folder, n, seed, size=16):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
            os.path.join(folder, f"{i:03d}.png"))


def _cfg(root="", **data):
    return from_dict({"seed": 3, "data": {"root": str(root), "crop_size": 8, "load_size": 8,
                                          **data}})


# ---------------------------------------------------------------- the split (no Ray)
def test_search_split_is_deterministic_disjoint_and_the_same_on_every_copy(tmp_path):
    root = tmp_path / "ds"
    _images(root / "train", 20, 0, size=16)
    _images(root / "val", 3, 1, size=16)
    cfg = _cfg(root, search_split=0.25)
    held = search_names(cfg, str(root))["train"]
    assert len(held) == 5 and held == search_names(cfg, str(root))["train"]   # deterministic
    ds = build_split(cfg, str(root), "train", train=True, holdout=True)
    trained = {rel_name(p, root) for p in ds.paths}
    assert not trained & set(held), "the supernet would train on search images"
    assert trained | set(held) == {f"train/{i:03d}.png" for i in range(20)}
    assert len(ds) == 15 == split_size(cfg.data, DataRef(str(root)), "train", holdout=True)
    # the teacher (no holdout) trains on all of it
    assert len(build_split(cfg, str(root), "train", train=True)) == 20
    assert split_size(cfg.data, DataRef(str(root)), "train") == 20
    # another node's copy at another path holds out the same files
    other = tmp_path / "elsewhere" / "copy"
    shutil.copytree(root, other)
    assert search_names(cfg, str(other))["train"] == held
    # the search scores exactly the held-out images, both halves of each pair
    split = scoring_split(cfg, str(root))
    assert [rel_name(p, root) for p in split.inputs.paths()] == held
    assert [rel_name(p, root) for p in split.real.paths()] == held
    assert (split.inputs.crop, split.real.crop) == ("left", "right")
    assert SEARCH in split.label
    assert split.load_inputs().shape == (5, 3, 8, 8)
    # the report's split is val
    assert scoring_split(cfg, str(root), report=True).inputs.folders[0].endswith("val")
    # another seed draws another sample; a count holds out that many
    assert held_out(cfg.data, [f"train/{i:03d}.png" for i in range(20)], 4, "train") != held
    assert len(search_names(_cfg(root, search_split=7), str(root))["train"]) == 7
    assert search_names(_cfg(root), str(root)) == {"train": []}      # 0: no search split


def test_unaligned_search_split_holds_out_a_and_matching_real_b(tmp_path):
    root = tmp_path / "h2z"
    _images(root / "trainA", 12, 0)
    _images(root / "trainB", 9, 1)
    cfg = _cfg(root, kind="unaligned", search_split=0.25)
    held = search_names(cfg, str(root))
    assert len(held["trainA"]) == 3 and len(held["trainB"]) == 2
    ds = build_split(cfg, str(root), "train", train=True, holdout=True)
    assert not {rel_name(p, root) for p in ds.paths_A} & set(held["trainA"])
    assert not {rel_name(p, root) for p in ds.paths_B} & set(held["trainB"])
    assert len(ds) == 9 == split_size(cfg.data, DataRef(str(root)), "train", holdout=True)
    split = scoring_split(cfg, str(root))
    assert [rel_name(p, root) for p in split.inputs.paths()] == held["trainA"]
    assert [rel_name(p, root) for p in split.real.paths()] == held["trainB"]


def test_val_split_of_the_source_folder_scored_against_every_target(tmp_path):
    """data.val_split holds a val split out of the training split, disjoint from the search
    split; with data.split_targets false only the source folder (trainA) is split and both
    splits are scored against every real target (data.fid_real, else all of trainB)."""
    root = tmp_path / "h2z"
    _images(root / "trainA", 20, 0)
    _images(root / "trainB", 6, 1)
    cfg = _cfg(root, kind="unaligned", search_split=4, val_split=5, split_targets=False)
    search, val = search_names(cfg, str(root)), val_names(cfg, str(root))
    assert (len(search["trainA"]), len(val["trainA"]), search["trainB"], val["trainB"]) == (
        4, 5, [], [])
    assert not set(search["trainA"]) & set(val["trainA"])
    assert val == val_names(cfg, str(root))                          # deterministic
    assert search == search_names(_cfg(root, kind="unaligned", search_split=4,
                                       split_targets=False), str(root))  # val takes no search image
    ds = build_split(cfg, str(root), "train", train=True, holdout=True)
    trained = {rel_name(p, root) for p in ds.paths_A}
    assert trained == {f"trainA/{i:03d}.png" for i in range(20)} - set(search["trainA"]) \
        - set(val["trainA"])
    assert len(ds.paths_B) == 6                                      # every zebra trains
    assert len(ds) == 11 == split_size(cfg.data, DataRef(str(root)), "train", holdout=True)
    assert eval_split(cfg.data) == "val"
    vds = build_split(cfg, str(root), "val", train=False)            # the report's grid
    assert sorted(rel_name(p, root) for p in vds.paths_A) == val["trainA"]
    for report, names in ((False, search), (True, val)):
        split = scoring_split(cfg, str(root), report=report)
        assert [rel_name(p, root) for p in split.inputs.paths()] == names["trainA"]
        assert len(split.real.paths()) == 6 and split.real.folders[0].endswith("trainB")
    big = val_names(_cfg(root, kind="unaligned", search_split=4, val_split=15,
                         split_targets=False), str(root))["trainA"]
    assert len(big) == 15 and not set(big) & set(search["trainA"])   # drawn from the rest
    cfg.data.fid_real = "trainB,other"
    _images(root / "other", 2, 2)
    assert len(scoring_split(cfg, str(root), report=True).real.paths()) == 8
    with pytest.raises(ConfigError, match=r"^data.val_split 16 and data.search_split 4 hold "
                                          r"out 16 \+ 4 of the 20 images of 'trainA'"):
        val_names(_cfg(root, kind="unaligned", search_split=4, val_split=16,
                       split_targets=False), str(root))



def test_split_seed_keeps_the_held_out_images_across_run_seeds(tmp_path):
    """data.split_seed draws the search and val splits (-1: the run's seed), so a second
    training seed is scored on the same images; the scoring split's label (the key of
    its cached statistics) follows the split's seed, not the run's."""
    root = tmp_path / "h2z"
    _images(root / "trainA", 20, 0)
    _images(root / "trainB", 6, 1)

    def at(**kw):
        return from_dict({"seed": kw.pop("seed"), "data": {
            "root": str(root), "crop_size": 8, "load_size": 8, "kind": "unaligned",
            "search_split": 4, "val_split": 5, "split_targets": False, **kw}})

    def names(cfg):
        return search_names(cfg, str(root))["trainA"], val_names(cfg, str(root))["trainA"]

    base = at(seed=0)
    assert names(at(seed=1)) != names(base)                  # default: the run's seed
    assert names(at(seed=1, split_seed=0)) == names(base)    # pinned: the same images
    assert names(at(seed=0, split_seed=1)) == names(at(seed=1))
    assert scoring_split(at(seed=1, split_seed=0), str(root)).label == \
        scoring_split(base, str(root)).label
    trained = build_split(at(seed=1, split_seed=0), str(root), "train", train=True,
                          holdout=True)
    assert not {rel_name(p, root) for p in trained.paths_A} & set(sum(names(base), []))
    with pytest.raises(ConfigError, match=r"^data.split_seed: -2 is out of range"):
        validate(at(seed=0, split_seed=-2))
@needs_shared(H2Z_FULL)
def test_horse2zebra_real_splits_are_the_documented_ones():
    """configs/horse2zebra_real.yaml: 100 search and 200 val horses out of trainA, the
    other 767 and all 400 zebras to train on; both splits scored against all 400 zebras."""
    from ganc.config import load_config
    cfg = load_config(str(REPO / "configs" / "horse2zebra_real.yaml"))
    root = str(H2Z_FULL)
    search, val = search_names(cfg, root)["trainA"], val_names(cfg, root)["trainA"]
    assert (len(search), len(val)) == (100, 200) and not set(search) & set(val)
    assert search[:2] == ["trainA/n02381460_1001.jpg", "trainA/n02381460_1063.jpg"]
    assert val[:2] == ["trainA/n02381460_1009.jpg", "trainA/n02381460_1028.jpg"]
    assert split_size(cfg.data, DataRef(root), "train", holdout=True) == 767
    for report in (False, True):
        assert len(scoring_split(cfg, root, report=report).real.paths()) == 400


def test_bad_search_split_fails_in_one_line(tmp_path):
    root = tmp_path / "ds"
    _images(root / "train", 4, 0)
    for bad, words in ((4, "at least one must be left"), (-0.1, "fraction"),
                       (2.5, "whole count")):
        with pytest.raises(ConfigError) as e:
            search_names(_cfg(root, search_split=bad), str(root))
        assert words in str(e.value) and "data.search_split" in str(e.value)
        assert "\n" not in str(e.value)


def test_search_split_of_a_url_dataset_counts_as_its_local_copy(s3_url, tmp_path, monkeypatch):
    monkeypatch.setenv("GANC_CACHE", str(tmp_path / "cache"))
    from ganc.store import open_store
    folder = tmp_path / "ds"
    _images(folder / "train", 10, 0)
    upload_folder(open_store(s3_url), "ds", str(folder))
    cfg = _cfg(f"{s3_url}/ds", search_split=0.3)
    ref = DataRef(f"{s3_url}/ds")
    local = ref.local()
    assert split_size(cfg.data, ref, "train", holdout=True) == 7 == \
        len(build_split(cfg, local, "train", train=True, holdout=True))
    assert search_names(cfg, local) == search_names(cfg, str(folder))


# ---------------------------------------------------------------- stages on a tiny run
def _run_cfg(url, root, **finetune):
    return from_dict({
        "name": "p", "seed": 1, "store": {"url": url},
        "data": {"root": str(root), "demo_size": 32, "load_size": 32, "crop_size": 32,
                 "search_split": 6},
        "model": {"teacher_ngf": 8, "ndf": 8, "student_ngf": 8},
        "teacher": {"steps": 2, "checkpoint_every": 2, "log_every": 1, "eval_every": -1},
        "distill": {"steps": 2, "checkpoint_every": 2, "log_every": 1, "eval_every": 0,
                    "space_widths": [8, 4]},
        "finetune": {"steps": 3, "checkpoint_every": 3, "log_every": 1, "lr": 1e-3,
                     **finetune},
        "search": {"population": 2, "generations": 1, "budget_macs": 4e6},
        "fid": {"batch_size": 8, "kid_subset_size": 4, "num_actors": 1},
        "pipeline": {"report_images": 2},
    })


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data root, store url) of a tiny run whose teacher (2 steps) and supernet (24 steps:
    enough for its inner features to carry structure) are trained in-process on generated
    paired data with a 6-image search split."""
    from ganc.data.demo import make_demo_data
    from ganc.train.supernet import train_supernet
    from ganc.train.teacher import train_teacher
    base = tmp_path_factory.mktemp("protocol")
    root, url = base / "data", str(base / "store")
    make_demo_data("paired", 18, 32, root, seed=0, n_test=4)
    cfg = _run_cfg(url, root)
    cfg.distill.steps, cfg.distill.checkpoint_every, cfg.distill.lr = 24, 24, 2e-3
    train_teacher(cfg, url, runner="local")
    train_supernet(cfg, url, runner="local")
    return root, url


def _copy_run(trained, tmp_path, **finetune):
    """A copy of the trained run's store (the supernet's saved config keeps the data root)."""
    from ganc.store import open_store
    root, url = trained
    mine = str(tmp_path / "store")
    shutil.copytree(url, mine)
    return _run_cfg(mine, root, **finetune), mine, open_store(mine).run("p")


def _put_best(run):
    """Stand-in for the search stage: a best.json naming CONFIG."""
    from ganc.search.cost import CostModel
    cost = CostModel(32)
    run.put_json("best.json", {"config": CONFIG, "macs": cost.macs(CONFIG),
                               "params": cost.params(CONFIG), "fid": 300.0,
                               "fid_split": SEARCH, "teacher": {}})


def _corrupt(folder):
    for f in os.listdir(folder):
        with open(os.path.join(folder, f), "wb") as fh:
            fh.write(b"not an image")


@pytest.mark.slow
def test_search_finetune_and_export_never_read_val(ray_local, trained, tmp_path):
    from ganc.export import export_best
    from ganc.report import write_report
    from ganc.search.driver import run_search
    from ganc.search.finetune import finetune
    cfg, url, run = _copy_run(trained, tmp_path)
    val = trained[0] / "val"
    keep = tmp_path / "val-saved"
    shutil.copytree(val, keep)
    _corrupt(val)                           # val unreadable from here on
    try:
        best = run_search(cfg, url)
        assert best["fid_split"] == SEARCH and math.isfinite(best["fid"])
        assert run.get_json("search/teacher.json")["fid"] is not None
        ft = finetune(cfg, url, runner="local")
        assert ft["fid_split"] == SEARCH and ft["export"] in ("before", "after") and ft["why"]
        card = export_best(cfg, url, latency_repeats=1)
        assert card["fid_split"] == SEARCH
        assert card["exported"] in ("fine-tuned", "supernet slice")
        with pytest.raises(DataError) as e:     # the report is the stage that reads val
            write_report(cfg, url)
        assert "val" in str(e.value)
    finally:
        shutil.rmtree(val)
        shutil.copytree(keep, val)


def _exported_equals(run, key, config):
    from ganc.search.finetune import subnet_from
    want = subnet_from(run, key, config).state_dict()
    got = torch.load(io.BytesIO(run.read_bytes("export/model.pt")), weights_only=True)
    return all(torch.equal(want[k], got[k]) for k in want)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["worse", "better"])
def test_export_is_the_better_of_before_and_after_finetune(case, trained, tmp_path):
    """worse: a blown-up learning rate turns the fine-tuned generator's outputs to NaN;
    better: the supernet's output layer is zeroed (constant images) and a sane fine-tune
    of 8 steps gives it back some structure."""
    from ganc.export import export_best
    from ganc.search.finetune import finetune
    steps = {"worse": 3, "better": 8}[case]
    cfg, url, run = _copy_run(trained, tmp_path, lr={"worse": 1e30, "better": 2e-3}[case],
                              steps=steps, checkpoint_every=steps)
    if case == "better":
        sup = run.get_torch("supernet/final.pt")
        sup["state_dict"]["model.26.weight"].zero_()       # the output conv
        run.put_torch("supernet/final.pt", sup)
    _put_best(run)
    ft = finetune(cfg, url, runner="local")
    before, after = ft["fid_before"], ft["fid_after"]
    if case == "worse":
        assert math.isfinite(before) and after == math.inf, ft   # fine-tuning broke it
        assert ft["export"] == "before"
    else:
        assert after < before, ft            # the constructed case: fine-tuning helps
        assert ft["export"] == "after"
    card = export_best(cfg, url, latency_repeats=1)
    assert card["exported"] == ("fine-tuned" if case == "better" else "supernet slice")
    assert card["fid"] == (after if case == "better" else before)
    assert card["export_why"] == ft["why"]
    key = "finetune/final.pt" if case == "better" else "supernet/final.pt"
    assert _exported_equals(run, key, CONFIG)


@pytest.mark.slow       # over 10 s: it needs the trained fixture, and an export
def test_finetune_disabled_trains_nothing_and_exports_the_slice(trained, tmp_path):
    from ganc.export import export_best
    from ganc.search.finetune import finetune
    cfg, url, run = _copy_run(trained, tmp_path, enabled=False)
    _put_best(run)
    ft = finetune(cfg, url, runner="local")
    assert ft["enabled"] is False and ft["export"] == "before"
    assert not run.exists("finetune/final.pt")
    card = export_best(cfg, url, latency_repeats=1)
    assert card["exported"] == "supernet slice" and not card["finetuned"]
    assert _exported_equals(run, "supernet/final.pt", CONFIG)
