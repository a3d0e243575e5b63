"""End-to-end pruning on Ray Tune (one trial per target) with the FID actor pool."""
from __future__ import annotations

import math

import pytest
import torch

from ganc.cli import main
from ganc.config import RunConfig
from ganc.profile import count_macs
from ganc.store import open_store


def _tiny_config(store: str) -> RunConfig:
    cfg = RunConfig(name="prune-e2e")
    cfg.store.url = store
    d = cfg.data
    d.demo_n, d.demo_size, d.load_size, d.crop_size, d.flip = 8, 32, 32, 32, False
    m = cfg.model
    m.teacher, m.teacher_ngf, m.ndf, m.n_layers_D = "resnet_6blocks", 8, 8, 2
    p = cfg.prune
    p.steps, p.sample_every, p.samples, p.finetune_steps = 10, 10, 2, 2
    p.lr_agent, p.lambda_resource, p.lds_k, p.eval_n = 2e-2, 5.0, 2, 2
    p.d_target = 0.5
    cfg.fid.kid = False
    return cfg


@pytest.mark.slow
def test_prune_on_tune_writes_exports_and_results(tmp_path, ray_local):
    from ganc.prune.artifacts import load_pruned
    from ganc.prune.driver import RESULTS_KEY, run_prune
    store = str(tmp_path / "store")
    cfg = _tiny_config(store)
    run = open_store(store).run("prune-e2e")
    run.put_parquet(RESULTS_KEY, [{"config": "16_16_32_16_32_32_16_16", "macs": 123,
                                   "params": 7, "fid": 50.0, "kid": 0.1, "generation": 3,
                                   "trial_id": "t0", "wall_time": 1.0,
                                   "method": "evolution"}])
    full = count_macs(__import__("ganc.nn", fromlist=["build"]).build(
        "resnet_6blocks", ngf=8), (1, 3, 32, 32))
    # no prune.targets: the prune's budget is the search's (equal MACs)
    cfg.search.budget_macs = budget = 0.3 * full
    summary = run_prune(cfg, scorer="pool")

    rows = {r["target"]: r for r in summary["rows"]}
    assert list(rows) == [0.3]
    for t, r in rows.items():
        assert r["method"] == "prune-lds" and r["base_model"] == "teacher"
        assert 0.98 * budget <= r["macs"] <= budget, (r["macs"] / full, r)   # at the budget
        assert r["budget_macs"] == budget and r["chosen_by"] == "sampled-fid"
        assert r["macs"] == round(r["ratio_G"] * full)
        assert math.isfinite(r["fid"]) and math.isfinite(r["best_sampled_fid"])
        # fine-tuned with the search winner's recipe, then the better of the sliced and
        # the fine-tuned generator on the search split is exported
        ft = (load_pruned(run, f"prune/p{t:g}")[1])["finetune"]
        assert ft["recipe"]["steps"] == 2 and ft["recipe"]["lambda_recon"] == \
            cfg.distill.lambda_recon and ft["recipe"]["points"] == list(cfg.distill.distill_points)
        assert math.isfinite(ft["fid_before"]) and math.isfinite(ft["fid_after"])
        assert r["fid"] == min(ft["fid_before"], ft["fid_after"]) == ft[f"fid_{ft['export']}"]
        assert r["finetune_export"] == ft["export"] and ft["why"]
        assert r["trial_id"] and r["wall_time"] > 0
        G, card = load_pruned(run, f"prune/p{t:g}")
        assert count_macs(G, (1, 3, 32, 32)) == r["macs"] == card["macs"]
        from ganc.onnxrun import OnnxModule
        onnx = OnnxModule(run.read_bytes(f"prune/p{t:g}/model.onnx"), threads=1)
        x = torch.rand(2, 3, 32, 32) * 2 - 1
        with torch.no_grad():
            assert (onnx(x) - G(x)).abs().max() <= 1e-4
        assert card["onnx"]["max_abs_diff_vs_eager"] <= 1e-4 and run.exists(
            f"prune/p{t:g}/model.pt2")
        assert card["teacher_source"] == "random-init" and card["gates_G"]["trunk"][1] == 32
        # the target's files are one unit: the manifest (written last) lists them all
        unit = run.read_unit(f"prune/p{t:g}")
        assert set(unit["files"]) == {"model.pt", "net_D.pt", "model.onnx", "model.pt2",
                                      "model.json", "history.jsonl", "row.json"}
    table = run.get_parquet(RESULTS_KEY).to_pylist()
    assert [r["method"] for r in table] == ["evolution", "prune-lds"]
    assert table[0]["macs"] == 123 and table[1]["target"] == 0.3
    assert run.exists("prune/summary.json") and run.exists("prune/config.yaml")

    # readers trust the manifest only: weights rewritten after the commit, or a unit whose
    # manifest is gone (a rewrite cut short), are refused in one line
    from ganc.errors import GancError
    prefix = "prune/p0.3"
    good = run.read_bytes(f"{prefix}/model.pt")
    run.write_bytes(f"{prefix}/model.pt", good + b"\0")
    with pytest.raises(GancError, match="does not match MANIFEST.json"):
        load_pruned(run, prefix)
    run.write_bytes(f"{prefix}/model.pt", good)
    run.rm(f"{prefix}/MANIFEST.json")
    with pytest.raises(GancError, match=r"no complete pruned model at .*p0\.3 \(no MANIFEST"):
        load_pruned(run, prefix)


def test_prune_cli_errors_are_one_line(capsys):
    assert main(["prune", "--targets", "0.1,2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "ganc prune: error: --targets: item 2 is out of range: must be in (0, 1]"
    assert main(["prune", "--set", "prune.lds_k=1", "--fid", "none"]) == 2
    assert "prune.lds_k: 1 is out of range: must be >= 2" in capsys.readouterr().err
