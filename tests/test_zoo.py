"""The models committed under zoo/: each folder is what `ganc publish` writes (model.pt at
most 2 MB, its card with method, seed, recipe and licence), its weights load strictly into
the generator the card names at the card's MACs, and (with ../shared) `ganc score`
reproduces the FID the card records, by the command docs/horse2zebra_real.md gives."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ganc.cli import main as ganc

REPO = Path(__file__).resolve().parents[1]
ZOO = REPO / "zoo"
MAX_BYTES = 2 * 1024 * 1024
PRESETS = {"horse2zebra": "configs/horse2zebra_real.yaml"}   # the config each dataset's
                                                              # models were scored with
MODELS = sorted(p.parent for p in ZOO.glob("*/*/model.pt"))


def test_the_zoo_holds_models():
    assert MODELS, "no zoo/<dataset>/<name>/model.pt committed"


@pytest.mark.parametrize("folder", MODELS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_zoo_folder_is_a_published_model(folder):
    from ganc.modelio import load_generator, read_model_json, resolve_spec
    from ganc.profile import count_macs
    assert sorted(p.name for p in folder.iterdir()) in (
        ["model.json", "model.pt"], ["LICENSE.teacher", "model.json", "model.pt"])
    assert (folder / "model.pt").stat().st_size <= MAX_BYTES
    card = json.loads((folder / "model.json").read_text())
    assert card["method"] in ("evolution", "nsga2", "prune")
    assert isinstance(card["seed"], int)
    assert card["recipe"] and card["licence"] and card["source"]
    spec = resolve_spec(card=read_model_json(str(folder / "model.pt")))
    net = load_generator(str(folder / "model.pt"), spec)        # strict, weights_only
    assert count_macs(net, (1, 3, 256, 256)) == card["macs"]
    with torch.no_grad():
        out = net(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 3, 64, 64) and torch.isfinite(out).all()


@pytest.mark.slow      # 100 translations and the 400 zebras' Inception features
@pytest.mark.shared
@pytest.mark.parametrize("folder", MODELS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_ganc_score_reproduces_a_zoo_cards_fid(folder, shared_dir, tmp_path, capsys,
                                               monkeypatch):
    monkeypatch.chdir(REPO)                     # the preset's paths are repo-relative
    card = json.loads((folder / "model.json").read_text())
    config = PRESETS[folder.parent.name]
    assert ganc(["score", "--config", config, "--weights", str(folder / "model.pt"),
                 "--split", "search", "--store", str(tmp_path / "cache"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["macs"] == card["macs"]
    assert got["splits"]["search"]["n_fake"] == 100
    assert got["splits"]["search"]["fid"] == pytest.approx(card["fid"], abs=1e-3)
