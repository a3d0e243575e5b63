"""search.criterion (fid | miou) without Ray: validation, ranking, the Pareto front and the
fine-tune's keep/discard rule."""
from __future__ import annotations

import pytest

from ganc.config import check_criterion, from_dict
from ganc.errors import ConfigError
from ganc.results import choose_export
from ganc.search.report import best_of, front_of


def test_miou_needs_label_maps_and_known_criteria_in_one_line():
    check_criterion(from_dict({"data": {"kind": "camvid"}, "search": {"criterion": "miou"}}))
    with pytest.raises(ConfigError, match=r"^search.criterion miou needs data with label "
                                          r"maps \(data.kind camvid\); data.kind is 'aligned'$"):
        check_criterion(from_dict({"search": {"criterion": "miou"}}))
    with pytest.raises(ConfigError, match=r"^search.criterion 'psnr' is not one of: fid, miou$"):
        check_criterion(from_dict({"search": {"criterion": "psnr"}}))


ROWS = [{"config": "a", "macs": 10, "fid": 50.0, "miou": 30.0, "status": "ok"},
        {"config": "b", "macs": 20, "fid": 40.0, "miou": 20.0, "status": "ok"},
        {"config": "c", "macs": 30, "fid": 60.0, "miou": 40.0, "status": "ok"},
        {"config": "d", "macs": 40, "fid": 70.0, "miou": 35.0, "status": "ok"},
        {"config": "e", "macs": 5, "fid": None, "miou": None, "status": "failed"}]


def test_best_and_front_follow_the_criterion():
    assert best_of(ROWS[:4], "fid")["config"] == "b"
    assert best_of(ROWS[:4], "miou")["config"] == "c"          # maximised
    assert [r["config"] for r in front_of(ROWS, criterion="fid")] == ["b", "a"]
    # by mIoU: a (cheapest), c (best); b and d are dominated
    assert sorted(r["config"] for r in front_of(ROWS, criterion="miou")) == ["a", "c"]
    assert all("i" not in r for r in front_of(ROWS, criterion="miou"))


def test_finetune_keeps_the_weights_the_criterion_prefers():
    assert choose_export(50.0, 40.0)[0] == "after"              # FID lowered
    assert choose_export(40.0, 50.0)[0] == "before"
    assert choose_export(40.0, 50.0, "miou")[0] == "after"      # mIoU raised
    keep, why = choose_export(50.0, 40.0, "miou")
    assert keep == "before" and "ESPNet-CamVid mIoU" in why
    assert choose_export(None, 45.0, "miou")[0] == "after"
    assert choose_export(45.0, float("nan"), "miou")[0] == "before"


def test_pool_scores_miou_beside_fid_and_recalibrates_spade_subnets(shared_dir, tmp_path):
    """The pool on a label-map split: every score carries the ESPNet-CamVid mIoU; a model
    registered with ``recalibrate`` has its sub-network's batch-norm statistics re-estimated
    on the split's calibration label maps first (a changed, deterministic score)."""
    import torch

    from ganc import nn as gnn
    from ganc.data.camvid import make_camvid_like
    from ganc.metrics.splits import scoring_split
    from ganc.metrics.pool import LocalPool, SubnetSpec
    weights = shared_dir / "models" / "espnet-camvid" / "espnet_p_2_q_8_camvid.pth"
    if not weights.is_file():
        pytest.skip(f"needs {weights} (../shared is missing)")
    root = tmp_path / "camvid"
    make_camvid_like(root, n_train=8, n_val=2, size=(64, 64), seed=3)
    cfg = from_dict({"data": {"kind": "camvid", "root": str(root), "crop_size": 64,
                              "aspect_ratio": 1.0, "search_split": 2},
                     "search": {"criterion": "miou", "calibration_images": 5}})
    split = scoring_split(cfg, str(root))
    assert split.input_classes == 12 and len(split.gt) == 2 and split.calib.shape[0] == 5
    torch.manual_seed(0)
    sup = gnn.build("super_mobile_spade", ngf=4).eval()
    for bn in (m for m in sup.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-2, 2)          # statistics of some other width
        bn.running_var.uniform_(0.1, 4)
    pool = LocalPool(split, fid={"kid": False, "batch_size": 8})
    pool.register_model("plain", arch="super_mobile_spade", state=sup.state_dict(), ngf=4)
    pool.register_model("cal", arch="super_mobile_spade", state=sup.state_dict(), ngf=4,
                        recalibrate=True)
    c = "2_2_2_2_2_2_2_2"
    plain, cal, again = pool.score([SubnetSpec("plain", c), SubnetSpec("cal", c),
                                    SubnetSpec("cal", c)])
    for s in (plain, cal, again):
        assert s.status == "ok" and 0 <= s.miou <= 100 and s.pixel_acc is not None
    assert (cal.fid, cal.miou) == (again.fid, again.miou)            # deterministic
    assert cal.fid != plain.fid                                      # statistics re-estimated
