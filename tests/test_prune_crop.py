"""``prune.crop_size``: the agents' phase trains on smaller crops of the images at
``data.load_size``, while MACs, the budget, the scoring and the export stay at
``data.crop_size`` and the fine-tune trains on the run's training crops
(``data.train_crop_size``, else ``data.crop_size``); sizes no run could use are refused
in one line."""
from __future__ import annotations

import pytest

from ganc import nn as gnn
from ganc.config import load_config
from ganc.errors import ConfigError
from ganc.profile import count_macs
from ganc.prune.artifacts import load_pruned
from ganc.store import open_store

from .test_prune_resume import STEPS, TARGET, run_target, tiny

# 16 px crops: D's last feature maps are smaller than the LDS's 4x4 grid there, so the
# features (and the critic) are shorter than at 32 px: the Pruner sizes them at the crops
CROP, LOAD, AGENTS, TRAIN = 32, 40, 16, 24


def test_the_agents_train_on_crops_and_everything_else_is_at_the_crop_size(tmp_path,
                                                                           monkeypatch):
    cfg = tiny(tmp_path / "store", crop_size=AGENTS)
    cfg.data.load_size = LOAD
    did = run_target(cfg, monkeypatch)
    row = did["row"]
    # every agents' step got 16 px crops (A and its real B); the fine-tune's stream,
    # after the agents' steps, 32 px ones
    assert did["agent_shapes"] == {((2, 3, AGENTS, AGENTS), (2, 3, AGENTS, AGENTS))}
    assert did["streams"] == [0, STEPS]
    assert did["stream_shapes"][0] == did["agent_shapes"]
    assert did["stream_shapes"][STEPS] == {((2, 3, CROP, CROP), (2, 3, CROP, CROP))}
    # the budget and the MACs at data.crop_size (32 px), not at the crops' 16
    full = count_macs(gnn.build("resnet_6blocks", ngf=8), (1, 3, CROP, CROP))
    assert row["budget_macs"] == pytest.approx(TARGET * full)
    G, card = load_pruned(open_store(tmp_path / "store").run("resume"), row["prefix"])
    assert row["macs"] == card["macs"] == count_macs(G, (1, 3, CROP, CROP)) <= row["budget_macs"]
    assert row["macs"] == pytest.approx(row["ratio_G"] * full, rel=1e-6)
    assert card["input_size"] == CROP and card["agents_crop_size"] == AGENTS
    assert card["finetune"]["recipe"]["steps"] > 0


@pytest.mark.parametrize("value, message", [
    (30, "prune.crop_size: 30 is not a multiple of 4 (the generators downsample twice by 2)"),
    (44, "prune.crop_size: 44 is larger than data.load_size 40 (the agents' crops are cut "
         "from the images resized to it)"),
])
def test_a_crop_no_run_could_use_is_one_line(value, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, ["data.load_size=40", f"prune.crop_size={value}"])
    assert str(e.value) == message
    load_config(None, ["data.load_size=40", "prune.crop_size=40"])     # at most load_size


def test_the_fine_tune_trains_on_the_runs_training_crops(tmp_path, monkeypatch):
    """``data.train_crop_size``: the fine-tune after the agents trains on its crops (and
    so would the agents without prune.crop_size, :func:`ganc.prune.trial.agents_crop`);
    the budget, MACs and export stay at data.crop_size, the card records both crops."""
    cfg = tiny(tmp_path / "store", crop_size=AGENTS)
    cfg.data.load_size, cfg.data.train_crop_size = LOAD, TRAIN
    did = run_target(cfg, monkeypatch)
    assert did["agent_shapes"] == {((2, 3, AGENTS, AGENTS), (2, 3, AGENTS, AGENTS))}
    assert did["stream_shapes"][STEPS] == {((2, 3, TRAIN, TRAIN), (2, 3, TRAIN, TRAIN))}
    full = count_macs(gnn.build("resnet_6blocks", ngf=8), (1, 3, CROP, CROP))
    assert did["row"]["budget_macs"] == pytest.approx(TARGET * full)
    G, card = load_pruned(open_store(tmp_path / "store").run("resume"), did["row"]["prefix"])
    assert card["input_size"] == CROP and card["macs"] == count_macs(G, (1, 3, CROP, CROP))
    assert (card["agents_crop_size"], card["train_crop_size"]) == (AGENTS, TRAIN)
