"""Run set-up without Ray: placement decisions and their record, budget conversion, the GPU
share of FID actors, autoscaler node types, multi-node path checks, resource requests in
the config, and the global-batch schedule and sampler."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import pytest

from ganc import placement
from ganc.cluster import (ClusterInfo, NodeType, find_autoscaling_config, find_monitor,
                          node_types_from_autoscaling_config)
from ganc.config import from_dict, load_config
from ganc.context import check_paths, resolve_placement
from ganc.errors import ConfigError
from ganc.search.cost import CostModel
from ganc.store import open_store
from ganc.train.schedule import GlobalBatchSampler, make_schedule

CPU_ONLY = ClusterInfo(nodes=1, resources={"CPU": 4})
WITH_GPU = ClusterInfo(nodes=2, resources={"CPU": 8, "GPU": 2})
GPU_AUTOSCALER = ClusterInfo(nodes=1, resources={"CPU": 4}, autoscaler="test",
                             node_types=[NodeType("gpu_worker", {"CPU": 8, "GPU": 1}, 4),
                                         NodeType("p4d", {"CPU": 96, "GPU": 8}, 2)])


def cfg_of(**sections):
    base = {"data": {"crop_size": 256, "load_size": 286},
            "model": {"teacher_ngf": 8}, "scale": {"cpu_crop_size": 128}}
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v}
    return from_dict(base)


# ---------------------------------------------------------------- decisions
def test_auto_takes_gpus_the_cluster_has_or_its_autoscaler_can_start():
    cfg = cfg_of()
    now = placement.decide(cfg, WITH_GPU)
    assert now["use_gpu"] and now["device"] == "cuda" and now["crop_size"] == 256
    assert now["gpus"] == 2 and "has 2 GPU" in now["decided_by"]
    later = placement.decide(cfg, GPU_AUTOSCALER)
    assert later["use_gpu"] and later["crop_size"] == 256
    assert "gpu_worker" in later["decided_by"] and later["gpus"] == 4 * 1 + 2 * 8
    none = placement.decide(cfg, CPU_ONLY)
    assert not none["use_gpu"] and none["device"] == "cpu"
    assert "no GPU" in none["decided_by"]


def test_explicit_choices_and_cpu_size_only_on_a_cpu_placement():
    forced = placement.decide(cfg_of(scale={"use_gpu": "true"}), CPU_ONLY)
    assert forced["use_gpu"] and forced["crop_size"] == 256      # no silent fall-back
    off = placement.decide(cfg_of(scale={"use_gpu": False}), WITH_GPU)
    assert not off["use_gpu"] and (off["crop_size"], off["load_size"]) == (128, 143)
    assert "cpu_crop_size" in off["size_rule"]
    full = placement.decide(cfg_of(scale={"cpu_crop_size": 0}), CPU_ONLY)
    assert full["crop_size"] == 256
    with pytest.raises(ConfigError, match="scale.use_gpu 'maybe'"):
        placement.decide(cfg_of(scale={"use_gpu": "maybe"}), CPU_ONLY)
    with pytest.raises(ConfigError, match="multiple of 4"):
        placement.decide(cfg_of(scale={"cpu_crop_size": 130}), CPU_ONLY)


def test_budget_is_converted_to_the_cpu_size_exactly_as_macs_scale():
    cfg = cfg_of(search={"budget_macs": 3.0e9})
    cpu = placement.decide(cfg, CPU_ONLY)
    assert cpu["budget_macs"] == pytest.approx(3.0e9 / 4)
    assert "converted to 128px" in cpu["budget_rule"]
    gpu = placement.decide(cfg, WITH_GPU)
    assert gpu["budget_macs"] == pytest.approx(3.0e9)
    # the conversion is the MACs ratio of every sub-network between the two sizes
    for config in ("16_16_32_16_32_32_16_16", "64_48_32_24_16_64_48_32"):
        ratio = CostModel(128).macs(config) / CostModel(256).macs(config)
        assert ratio == pytest.approx(placement.convert_budget(1.0, 256, 128), rel=1e-12)
    # 0: a tenth of the teacher's MACs at the eval size
    teacher = placement.decide(cfg_of(), CPU_ONLY, teacher_macs=lambda size: size * 1000.0)
    assert teacher["budget_macs"] == pytest.approx(12800.0)
    assert placement.search_budget(cpu, 3.0e9, None) == pytest.approx(cpu["budget_macs"])
    assert placement.search_budget(cpu, 0, 5.0e9) == pytest.approx(5.0e8)
    # several budgets: every one through the same conversion, recorded in the placement
    many = placement.decide(cfg_of(search={"budgets": [3.0e9, 2.0e9, 1.0e9]}), CPU_ONLY)
    assert many["budgets_macs"] == pytest.approx([7.5e8, 5.0e8, 2.5e8])
    assert many["budget_macs"] == pytest.approx(7.5e8)
    assert placement.search_budgets(many, [3.0e9, 2.0e9, 1.0e9], None) == pytest.approx(
        many["budgets_macs"])
    # the teacher's MACs the context records are the profiler's at that size
    from ganc import nn as gnn
    from ganc.context import _teacher_macs
    from ganc.profile import count_macs
    net = gnn.build("resnet_9blocks", ngf=8)
    assert _teacher_macs(cfg_of())(64) == count_macs(net, (1, 3, 64, 64))


def test_placement_is_recorded_once_and_reused_by_resubmissions(tmp_path):
    run = open_store(tmp_path).run("r")
    cfg = cfg_of()
    first = resolve_placement(cfg, run, CPU_ONLY)
    assert run.exists("placement.json") and first["device"] == "cpu"
    # the cluster has GPUs now: the recorded decision stands
    again = resolve_placement(cfg, run, WITH_GPU)
    assert again == first and run.get_json("placement.json") == first
    # workers may change; the explicit choices the placement was decided from may not
    cfg.scale.workers = 4
    resolve_placement(cfg, run, CPU_ONLY)
    for field, value in (("scale.use_gpu", "false"), ("scale.cpu_crop_size", 64),
                         ("data.crop_size", 128), ("scale.resources", {"accel": 1})):
        changed = cfg_of(**{field.split(".")[0]: {field.split(".")[1]: value}})
        with pytest.raises(ConfigError) as e:
            resolve_placement(changed, run, CPU_ONLY)
        msg = str(e.value)
        assert "\n" not in msg and field in msg and "--run-id" in msg, msg


def test_gpu_share_never_strands_an_actor():
    assert placement.gpu_share(3, 2) == 0.5
    assert placement.gpu_share(2, 4) == 1.0
    assert placement.gpu_share(4, 0) == 0.0
    assert placement.gpu_share(7, 1) == 0.1428          # 7 x 0.1428 <= 1 (Ray's 1e-4 unit)
    for n in range(1, 25):
        for g in range(1, 9):
            share = placement.gpu_share(n, g)
            per_gpu = math.ceil(n / g)
            assert per_gpu * share <= 1.0 + 1e-12                  # a GPU holds its actors
            assert math.ceil(n / per_gpu) <= g                      # so N fit on G GPUs
            assert share >= 1.0 / per_gpu - 1e-4                    # and no smaller share


# ---------------------------------------------------------------- the autoscaler
AUTOSCALING = {
    "max_workers": 3, "head_node_type": "head",
    "available_node_types": {
        "head": {"resources": {"CPU": 0}, "max_workers": 0},
        "small": {"resources": {"CPU": 2, "accel": 1}, "min_workers": 0, "max_workers": 10},
        "big": {"resources": {"CPU": 8, "GPU": 8}, "max_workers": 1},
        "off": {"resources": {"CPU": 8}, "max_workers": 0}}}


def test_autoscaler_node_types_from_a_cluster_config():
    types = {t.name: t for t in node_types_from_autoscaling_config(AUTOSCALING)}
    assert set(types) == {"small", "big", "off"}
    assert types["small"].max_workers == 3              # the cluster-wide cap
    info = ClusterInfo(1, {"CPU": 0}, list(types.values()), "test")
    assert info.multi_node and info.can_autoscale
    assert info.addable("accel") == 3 and info.capacity("GPU") == 8
    assert info.types_with("GPU") == ["big"]
    assert not ClusterInfo(1, {"CPU": 2}).multi_node
    assert ClusterInfo(2, {"CPU": 2}).multi_node


def test_the_autoscaler_process_of_this_cluster_is_found_by_its_gcs_address(tmp_path):
    conf = tmp_path / "autoscaling.json"
    conf.write_text(__import__("json").dumps(AUTOSCALING))
    code = "import time; time.sleep(60)"
    monitor = "/x/ray/autoscaler/_private/monitor.py"     # what the processes look like
    mine = subprocess.Popen([sys.executable, "-c", code, monitor, "--gcs-address=127.0.0.1:1",
                             f"--autoscaling-config={conf}"])
    fixed = subprocess.Popen([sys.executable, "-c", code, monitor, "--gcs-address=127.0.0.1:2"])
    try:
        deadline = time.time() + 30
        while time.time() < deadline and not (find_monitor("127.0.0.1:1")[0]
                                              and find_monitor("127.0.0.1:2")[0]):
            time.sleep(0.2)
        assert find_autoscaling_config("127.0.0.1:1") == str(conf)
        assert find_monitor("127.0.0.1:2") == (True, None)    # cannot add nodes
        assert find_monitor("127.0.0.1:3") == (False, None)   # not on this host: unknown
    finally:
        for p in (mine, fixed):
            p.kill()
            p.wait()


# ---------------------------------------------------------------- no shared filesystem
def test_multi_node_refuses_local_store_and_data_unless_marked(tmp_path):
    two = ClusterInfo(2, {"CPU": 4})
    grows = ClusterInfo(1, {"CPU": 4}, [NodeType("w", {"CPU": 4}, 2)], "test")
    local = open_store(tmp_path / "store")
    cfg = from_dict({"data": {"root": str(tmp_path)}})
    for cluster in (two, grows):
        with pytest.raises(ConfigError) as e:
            check_paths(cfg, local, cluster)
        msg = str(e.value)
        assert "\n" not in msg and "store.url" in msg and "s3://" in msg, msg
    check_paths(cfg, local, CPU_ONLY)                          # one node: fine
    cfg.store.shared = True                                    # an NFS mount: fine
    with pytest.raises(ConfigError, match=r"data.root .* s3://bucket/prefix"):
        check_paths(cfg, local, two)
    cfg.data.on_every_node = True
    check_paths(cfg, local, two)
    url = from_dict({"data": {"root": "s3://b/data", "fid_real": "/abs/trainB"},
                     "store": {"shared": True}})
    with pytest.raises(ConfigError, match="data.fid_real"):
        check_paths(url, local, two)
    url.data.fid_real = "trainB,testB"
    check_paths(url, local, two)


# ---------------------------------------------------------------- config
def test_resources_are_a_mapping_of_positive_numbers():
    cfg = load_config(None, ["scale.resources={accel: 1, fast_disk: 0.5}", "scale.wait_s=30"])
    assert cfg.scale.resources == {"accel": 1.0, "fast_disk": 0.5} and cfg.scale.wait_s == 30
    assert load_config(None, []).scale.resources == {}
    for bad, needle in (("{accel: -1}", "scale.resources.accel: expected a positive"),
                        ("{accel: .nan}", "scale.resources.accel"),
                        ("{GPU: 1}", "scale.use_gpu"), ("3", "expected a mapping")):
        with pytest.raises(ConfigError, match=needle):
            load_config(None, [f"scale.resources={bad}"])


# ---------------------------------------------------------------- one batch semantics
class Len:
    def __init__(self, epochs=0, epochs_decay=0, steps=0):
        self.epochs, self.epochs_decay, self.steps = epochs, epochs_decay, steps


def test_schedule_from_epochs_is_the_same_for_any_worker_count():
    one = make_schedule("teacher", Len(3, 2), 10, 4, 1)
    four = make_schedule("teacher", Len(3, 2), 10, 4, 4)
    assert one.steps_per_epoch == four.steps_per_epoch == 2          # floor(10 / 4)
    assert one.total_steps == four.total_steps == 10 and one.decay_start == 6
    assert (one.worker_batch, four.worker_batch) == (4, 1)
    assert one.images_per_epoch == four.images_per_epoch == 8
    assert one.lr_factor(5) == 1.0 and one.lr_factor(6) == 1.0
    assert one.lr_factor(8) == pytest.approx(0.5) and one.lr_factor(10) == 0.0
    fixed = make_schedule("distill", Len(1, 1, steps=7), 10, 2, 2)
    assert (fixed.total_steps, fixed.decay_start, fixed.length_from) == (7, 4, "steps")
    with pytest.raises(ConfigError, match="global batch and must divide evenly over "
                                          "scale.workers=2"):
        make_schedule("teacher", Len(1, 1), 10, 3, 2)
    with pytest.raises(ConfigError, match="larger than the training set"):
        make_schedule("teacher", Len(1, 1), 3, 4, 1)
    with pytest.raises(ConfigError, match="nothing to train"):
        make_schedule("finetune", Len(0, 0), 10, 1, 1)


def test_sampler_global_batches_do_not_depend_on_the_worker_count():
    n, B, steps = 11, 4, 9                       # 2 steps per epoch, 3 images left out
    single = list(GlobalBatchSampler(n, B, 0, 1, seed=3, stop=steps))
    for world in (2, 4):
        parts = [list(GlobalBatchSampler(n, B, r, world, seed=3, stop=steps))
                 for r in range(world)]
        joined = [sum((p[s] for p in parts), []) for s in range(steps)]
        assert joined == single                  # same images, same augmentation seeds
    for e in range(4):                           # an epoch: distinct images, 8 of 11
        epoch = sum(single[2 * e: 2 * e + 2], [])
        assert len({i for i, _ in epoch}) == 8
    resumed = list(GlobalBatchSampler(n, B, 0, 1, seed=3, start=5, stop=steps))
    assert resumed == single[5:]
    other = list(GlobalBatchSampler(n, B, 0, 1, seed=4, stop=steps))
    assert other != single
    assert os.environ.get("GANC_RAY_PRIVATE") == "1"     # conftest keeps tests private
