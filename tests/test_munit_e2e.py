"""MUNIT end to end on a few shoes-sketch-128 files, tiny: teacher (unpaired, two
auto-encoders; the in-process runner) -> supernet (Ray Train; teacher and student given the
same style codes) -> search (Ray Tune, FID actor pool) -> fine-tune (in-process runner) ->
export (ONNX with the style code as an input) -> report (3 styles per input), on the local
Ray instance with a local-folder store. One Ray Train stage per family is enough here: each
Ray Train launch costs ~20 CPU-s of process start-up, and the launch path itself is
family-agnostic (tests/test_train.py, the golden run). The preset
(configs/shoes_munit.yaml) loads and its data layout is checked."""
from __future__ import annotations


import pytest
import torch

from ganc.config import from_dict, load_config
from ganc.store import open_store

from .helpers import linked_subset

# make test runs this module in the cluster tier's session (tests/run_tiers.sh)
pytestmark = pytest.mark.beside

N_TRAIN, N_VAL = 6, 2


@pytest.fixture(scope="module")
def shoes_few(shared_dir, tmp_path_factory):
    """A shoes-sketch layout folder of links to the first few shared files (nothing copied)."""
    return linked_subset(shared_dir / "data" / "shoes-sketch-128",
                         tmp_path_factory.mktemp("shoes-few"), {"train": N_TRAIN, "val": N_VAL})


def _cfg(root, store):
    from ganc.families.munit_cost import MunitCostModel
    from ganc.space import SearchSpace
    widths = [4, 2]
    cost = MunitCostModel(32, 32)
    space = SearchSpace.uniform("w", widths, "munit")
    budget = (cost.macs(space.smallest()) + cost.macs(space.largest())) / 2
    return from_dict({
        "name": "munit-tiny", "seed": 0,
        "data": {"kind": "aligned", "root": str(root), "direction": "BtoA", "unpaired": True,
                 "load_size": 32, "crop_size": 32, "batch_size": 2, "search_split": 2},
        "model": {"teacher": "munit", "teacher_ngf": 4, "student": "super_mobile_munit",
                  "student_ngf": 4, "netD": "ms_image", "ndf": 8, "n_layers_D": 2,
                  "gan_mode": "lsgan"},
        "teacher": {"steps": 2, "checkpoint_every": 2, "log_every": 1, "eval_every": -1,
                    "lr": 1e-4},
        "distill": {"steps": 2, "checkpoint_every": 2, "log_every": 1, "eval_every": 0,
                    "lr": 1e-4, "lambda_recon": 10.0, "lambda_distill": 1.0,
                    "space_widths": widths, "distill_points": ["content"]},
        "search": {"population": 2, "generations": 2, "budget_macs": budget},
        "finetune": {"steps": 2, "checkpoint_every": 2, "log_every": 1},
        "fid": {"num_actors": 1, "batch_size": 8, "kid": False},
        "scale": {"workers": 1, "cpus_per_worker": 1, "use_gpu": "false"},
        "pipeline": {"report_images": 2},
        "store": {"url": str(store)},
    }), budget


def test_preset_loads_and_names_the_munit_family():
    from ganc.families import family_of
    cfg = load_config("configs/shoes_munit.yaml")
    assert family_of(cfg.model.teacher).name == family_of(cfg.model.student).name == "munit"
    assert cfg.data.unpaired and cfg.data.direction == "BtoA" and cfg.data.crop_size <= 128
    assert "prune" not in cfg.pipeline.stages


def test_wrong_layout_is_refused_in_one_line(shoes_few, tmp_path):
    from ganc.data.datasets import AlignedDataset
    from ganc.errors import DataError
    ds = AlignedDataset(shoes_few, "train", "BtoA", unpaired=True)   # the right layout
    import random
    random.seed(0)
    items = [ds[i % len(ds)] for i in range(12)]     # unpaired pools: B of another file
    assert any(it["path_B"] != it["path"] for it in items)
    assert items[0]["A"].shape == items[0]["B"].shape       # default transform: 256 crops
    with pytest.raises(DataError, match="not the grey sketch") as e:
        AlignedDataset(shoes_few, "train", "AtoB", unpaired=True)    # photo as the input
    assert "\n" not in str(e.value)
    from PIL import Image
    (tmp_path / "train").mkdir()
    Image.new("RGB", (128, 128), (200, 10, 10)).save(tmp_path / "train" / "1.jpg")
    with pytest.raises(DataError, match="is 128x128.*twice as wide"):
        AlignedDataset(tmp_path, "train", "BtoA", unpaired=True)


@pytest.mark.slow
def test_munit_teacher_supernet_search_finetune_export_report(ray_local, shoes_few, tmp_path):
    from ganc import nn as gnn
    from ganc.export import export_best
    from ganc.onnxrun import OnnxModule
    from ganc.report import write_report
    from ganc.search.driver import run_search
    from ganc.search.finetune import finetune
    from ganc.train.supernet import train_supernet
    from ganc.train.teacher import train_teacher
    from ganc.weights import read_state_dict

    store = tmp_path / "store"
    cfg, budget = _cfg(shoes_few, store)
    t = train_teacher(cfg, str(store), runner="local")
    assert t["step"] == 2 and {"G_GAN", "rec_x", "rec_s", "rec_c", "D"} <= set(t["metrics"])
    s = train_supernet(cfg, str(store))
    assert s["step"] == 2 and {"distill", "G_GAN", "recon", "D"} <= set(s["metrics"])
    run = open_store(str(store)).run("munit-tiny")
    final = run.get_torch("supernet/final.pt")
    assert final["netG"] == "super_mobile_munit" and final["search_space"]["family"] == "munit"
    assert run.get_torch("teacher/final.pt")["recipe"] == "munit"

    best = run_search(cfg, str(store))
    rows = run.get_parquet("search/results.parquet").to_pylist()
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) >= 2 and all(r["macs"] <= budget for r in ok)
    assert len(best["config"].split("_")) == 10
    ft = finetune(cfg, str(store), runner="local")
    assert ft["steps"] == 2 and ft["export"] in ("before", "after")

    card = export_best(cfg, str(store), latency_repeats=2)
    assert card["netG"] == "sub_mobile_munit" and card["style_dim"] == 8
    assert card["onnx"]["extra_inputs"] == {"style": [8]}
    net = gnn.build("sub_mobile_munit", config=card["config_str"])
    net.load_state_dict(read_state_dict(run.read_bytes("export/model.pt")), strict=True)
    ort = OnnxModule(run.read_bytes("export/model.onnx"), threads=1)
    x, style = torch.rand(1, 3, 32, 32) * 2 - 1, torch.randn(1, 8)
    with torch.no_grad():
        assert (ort(x, style=style) - net.eval()(x, style=style)).abs().max() <= 1e-4

    rep = write_report(cfg, str(store))
    assert {r["method"] for r in rep["rows"]} >= {"teacher", "evolution"}
    assert run.exists("report/grid.png")
