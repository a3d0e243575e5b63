"""Fine-tune at a fixed config, export (state dict, ONNX, torch.export, model card), `ganc runs`,
and `ganc pull` from the local S3 server (moto + s3fs), with translate on what it got."""
from __future__ import annotations

import json
import os

import boto3
import pytest
import torch

from ganc import nn as gnn
from ganc.cli import main as ganc
from ganc.config import from_dict
from ganc.export import export_best
from ganc.runs import PullError, list_runs, pull
from ganc.search.cost import CostModel
from ganc.search.finetune import finetune
from ganc.store import open_store
from ganc.weights import read_state_dict

CONFIG = "8_4_8_4_4_8_8_4"


def tiny_cfg(url, name="ex"):
    return from_dict({
        "name": name, "seed": 1,
        "store": {"url": url},
        "data": {"demo_n": 16, "demo_size": 32, "load_size": 32, "crop_size": 32},
        "model": {"teacher_ngf": 8, "ndf": 8, "student_ngf": 8},
        "teacher": {"steps": 2, "checkpoint_every": 2, "log_every": 1, "eval_every": -1},
        "distill": {"steps": 2, "checkpoint_every": 2, "log_every": 1, "eval_every": 0,
                    "space_widths": [8, 4]},
        "finetune": {"steps": 3, "checkpoint_every": 3, "log_every": 1, "lr": 1e-3},
        "fid": {"batch_size": 8, "kid_subset_size": 4},
    })


def _put_best(run, config=CONFIG):
    """Stand-in for the search stage (tested in test_search.py): a best.json."""
    cost = CostModel(32)
    run.put_json("best.json", {"config": config, "macs": cost.macs(config),
                               "params": cost.params(config), "fid": 123.0,
                               "teacher": {"fid": 200.0, "macs": 1}})


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny teacher + supernet trained in-process (B's loops), fine-tuned and exported."""
    from ganc.train.supernet import train_supernet
    from ganc.train.teacher import train_teacher
    url = str(tmp_path_factory.mktemp("store"))
    cfg = tiny_cfg(url)
    train_teacher(cfg, url, runner="local")
    train_supernet(cfg, url, runner="local")
    run = open_store(url).run("ex")
    _put_best(run)
    ft = finetune(cfg, url, runner="local", score=False)
    card = export_best(cfg, url, latency_repeats=2)
    return cfg, url, run, ft, card


def test_finetune_trains_the_chosen_subnet_from_the_supernet_weights(trained_run):
    cfg, url, run, ft, _ = trained_run
    assert ft["config"] == CONFIG and ft["steps"] == 3 and not ft["skipped"]
    sup = run.get_torch("supernet/final.pt")["state_dict"]
    fin = run.get_torch("finetune/final.pt")
    assert fin["step"] == 3
    assert fin["search_space"]["choices"] == [[int(w)] for w in CONFIG.split("_")]
    # the chosen sub-network's slice moved; channels outside every config (none here
    # beyond width 8) keep the shapes of the supernet
    key = "model.1.weight"
    assert fin["state_dict"][key].shape == sup[key].shape
    assert not torch.equal(fin["state_dict"][key][:8], sup[key][:8])
    # a second call with the same config and steps does nothing
    again = finetune(cfg, url, runner="local", score=False)
    assert again["skipped"]


def test_export_writes_state_dict_onnx_pt2_and_card_that_agree(trained_run):
    cfg, url, run, ft, card = trained_run
    assert sorted(run.ls("export")) == ["export/MANIFEST.json", "export/model.json",
                                        "export/model.onnx", "export/model.pt",
                                        "export/model.pt2"]
    manifest = run.read_unit("export")              # the unit: every file, by hash
    assert sorted(manifest["files"]) == ["model.json", "model.onnx", "model.pt", "model.pt2"]
    assert card == run.get_json("export/model.json")
    assert card["netG"] == "sub_mobile_resnet_9blocks" and card["config_str"] == CONFIG
    assert card["macs"] == CostModel(32).macs(CONFIG) and card["finetuned"]
    for k in ("params", "latency_ms_cpu", "teacher", "dataset", "ganc_version",
              "fid_before_finetune", "fid_after_finetune"):
        assert k in card
    assert card["teacher"]["macs"] > card["macs"] and card["teacher"]["latency_ms_cpu"] > 0
    sd = read_state_dict(run.read_bytes("export/model.pt"), name="model.pt")
    net = gnn.build("sub_mobile_resnet_9blocks", config=CONFIG)
    net.load_state_dict(sd, strict=True)
    import io
    from ganc.onnxrun import OnnxModule
    onnx = OnnxModule(run.read_bytes("export/model.onnx"), threads=1)
    program = torch.export.load(io.BytesIO(run.read_bytes("export/model.pt2"))).module()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        for y in (torch.randn(2, 3, 48, 32), x):        # dynamic batch and sides
            assert (onnx(y) - net.eval()(y)).abs().max() <= 1e-4
            assert (program(y) - net(y)).abs().max() <= 1e-4
    # the card states the ONNX check, latency per runtime and thread count, the machine
    assert card["onnx"]["opset"] == 20 and card["onnx"]["max_abs_diff_vs_eager"] <= 1e-4
    assert set(card["latency_ms"]) == {"eager", "onnxruntime"}
    for per_threads in card["latency_ms"].values():
        assert "1" in per_threads and all(v > 0 for v in per_threads.values())
    for k in ("cpu", "logical_cores", "torch", "onnxruntime"):
        assert card["machine"][k]
    with torch.no_grad():
        # the export equals the fine-tuned supernet at the config
        from ganc.search.finetune import subnet_from
        ref = subnet_from(run, "finetune/final.pt", CONFIG)
        assert torch.allclose(ref(x), net(x), atol=1e-6)


def test_runs_lists_best_fid_and_macs(trained_run, capsys):
    _, url, _, _, card = trained_run
    rows = list_runs(url)
    assert [r["run"] for r in rows] == ["ex"]
    cost = CostModel(32)
    # what best.json says (see _put_best), and that the run has an export
    assert {k: rows[0][k] for k in ("best", "fid", "macs", "params", "teacher_fid",
                                    "teacher_macs", "exported")} == {
        "best": CONFIG, "fid": 123.0, "macs": cost.macs(CONFIG), "params": cost.params(CONFIG),
        "teacher_fid": 200.0, "teacher_macs": 1, "exported": True}
    assert rows[0]["url"] == open_store(url).run("ex").url()
    assert ganc(["runs", url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["run", "best", "config", "FID", "MACs", "teacher", "FID",
                              "teacher", "MACs", "exported"]
    # one row: run, config, FID, MACs in G, teacher FID and MACs, exported
    assert [line.split() for line in out[1:]] == [
        ["ex", CONFIG, "123.00", f"{cost.macs(CONFIG) / 1e9:.3f}G", "200.00", "0.000G", "yes"]]


def test_pull_from_local_s3_loads_and_translates(trained_run, s3_url, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from ganc.onnxrun import load_onnx
    from ganc.search.finetune import subnet_from
    _, url, run, _, card = trained_run
    # the exported generator, in-process, before anything is uploaded: the weights the
    # export chose, sliced from their checkpoint at the config
    ref_net = subnet_from(run, "finetune/final.pt" if card["finetuned"] else
                          "supernet/final.pt", CONFIG).cpu().eval()
    s3run = open_store(s3_url).run("ex")
    for key in run.ls("export") + ["best.json", "search/extra.txt"]:
        if key == "search/extra.txt":
            s3run.write_bytes(key, b"not pulled with --best")
        else:
            s3run.write_bytes(key, run.read_bytes(key))
    out = tmp_path / "pulled"
    assert ganc(["pull", s3run.url(), "--best", "-o", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["best.json", "model.json", "model.onnx", "model.pt",
                                       "model.pt2"]
    assert json.loads((out / "model.json").read_text()) == card
    # translate with what was pulled: architecture and config come from model.json. The
    # input is noise of another size, so the resize (bicubic to --size) matters too.
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    img.save(src / "a.png")
    # what the exported generator makes of it, computed here without ganc's image helpers:
    # bicubic resize to 32x32, [0, 255] -> [-1, 1], generator, [-1, 1] -> rounded uint8
    x = np.asarray(img.resize((32, 32), Image.BICUBIC), dtype=np.float32) / 127.5 - 1.0
    x = torch.from_numpy(x.transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        y_ref = ref_net(x)
    want = ((y_ref[0].clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy().astype(int)
    assert want.std() > 5          # an output with structure, not a constant image
    assert ganc(["translate", "--weights", str(out / "model.pt"), "--input", str(src),
                 "--output", str(tmp_path / "res"), "--size", "32"]) == 0
    assert os.listdir(tmp_path / "res") == ["a.png"]
    # and with the pulled ONNX file through onnxruntime: the same images
    assert ganc(["translate", "--onnx", str(out / "model.onnx"), "--input", str(src),
                 "--output", str(tmp_path / "res_onnx"), "--size", "32"]) == 0
    a = np.asarray(Image.open(tmp_path / "res" / "a.png"), dtype=int)
    b = np.asarray(Image.open(tmp_path / "res_onnx" / "a.png"), dtype=int)
    assert a.shape == b.shape == want.shape == (32, 32, 3)
    # pixels equal the exported generator's output (one level for rounding at .5)
    assert np.abs(a - want).max() <= 1, np.abs(a - want).max()
    assert np.abs(b - want).max() <= 1, np.abs(b - want).max()
    # the pulled ONNX file's values are the eager generator's, before quantisation too
    onnx = load_onnx(out / "model.onnx", threads=1)
    with torch.no_grad():
        for inp in (x, torch.randn(2, 3, 48, 40, generator=torch.Generator().manual_seed(1))):
            assert (onnx(inp) - ref_net(inp)).abs().max() <= 1e-4


def test_pull_refuses_keys_escaping_the_target_folder(s3_url, s3_server, tmp_path, capsys):
    bucket, prefix = s3_url[len("s3://"):].split("/", 1)
    run_url = f"{s3_url}/runs/evil"
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    s3.put_object(Bucket=bucket, Key=f"{prefix}/runs/evil/best.json", Body=b"{}")
    s3.put_object(Bucket=bucket, Key=f"{prefix}/runs/evil/../../escaped.txt", Body=b"x")
    out = tmp_path / "deep" / "target"
    with pytest.raises(PullError) as e:
        pull(run_url, out, best=False)
    assert "outside" in str(e.value) and "\n" not in str(e.value)
    assert not out.exists() and not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "deep" / "escaped.txt").exists()
    # the CLI says it in one line, exit status 2
    assert ganc(["pull", run_url, "--all", "-o", str(out)]) == 2
    assert "refusing" in capsys.readouterr().err
    # --best on a run without an export: one line naming what is missing
    with pytest.raises(PullError, match="export/MANIFEST.json"):
        pull(run_url, out, best=True)


OTHER = "4_8_4_8_8_4_4_8"


@pytest.mark.slow                # two real exports, ~70 s here
def test_a_card_states_only_the_scores_of_its_own_config(trained_run, tmp_path):
    """`export --subnet-config` of a config that neither best.json nor the fine-tune scored:
    its card leaves the scores null and says why, never best.json's FID (the search's best,
    another model); of a budget's best that best.json scored: that entry's FID."""
    import shutil
    _, url, _, _, _ = trained_run
    copy = str(tmp_path / "store")                 # the module's run stays as it is
    shutil.copytree(url, copy, symlinks=True)
    cfg, run = tiny_cfg(copy), open_store(copy).run("ex")
    card = export_best(cfg, copy, config=OTHER, latency_repeats=1)
    assert card["config_str"] == OTHER and not card["finetuned"]
    for k in ("fid", "fid_search", "fid_before_finetune", "fid_after_finetune"):
        assert card[k] is None, (k, card[k])
    assert card["scores_note"] == (f"not measured for this config: best.json scored {CONFIG} "
                                   f"and no fine-tune scored {OTHER}")
    assert run.get_json("export/model.json") == card
    # a config best.json scored as the best of a second budget: that entry's own FID (the
    # card's scores part, as export_best calls it: a second export costs half a minute)
    from ganc.export import _scores
    best = run.get_json("best.json")
    best["budgets"] = [{"config": CONFIG, "fid": 123.0}, {"config": OTHER, "fid": 150.0}]
    scores = _scores(cfg, best, None, False, OTHER)
    assert scores["fid"] == scores["fid_search"] == scores["fid_before_finetune"] == 150.0
    assert scores["scores_note"] is None and scores["fid_after_finetune"] is None
    assert _scores(cfg, best, None, False, CONFIG)["fid"] == 123.0
