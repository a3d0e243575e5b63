"""A prune target resumes from its checkpoints: killed in the agents' phase or in its
fine-tune, started again, it continues where the newest checkpoint is, does not redo the
steps before it, and ends where the uninterrupted run ends. A checkpoint of another
config or target is refused in one line. One tiny target in plain PyTorch (no Ray), its
deployed files (ONNX, torch.export) left out."""
from __future__ import annotations

import json

import pytest
import torch

from ganc.config import RunConfig
from ganc.context import stage_context
from ganc.errors import ConfigError
from ganc.prune import checkpoints as prune_checkpoints
from ganc.prune.pruner import Pruner
from ganc.prune.trial import TargetRun, prune_target
from ganc.store import open_store

TARGET = 0.5
STEPS, FINETUNE = 6, 4
SAME = ("config", "macs", "params", "fid", "generation", "ratio_G", "ratio_D", "macs_D",
        "best_sampled_fid", "chosen_by", "finetune_export", "fid_before_finetune",
        "fid_after_finetune", "budget_macs")


class Killed(Exception):
    """The job killed right after a checkpoint was written."""


def tiny(store, **prune) -> RunConfig:
    cfg = RunConfig(name="resume")
    cfg.store.url = str(store)
    d = cfg.data
    d.demo_n, d.demo_size, d.load_size, d.crop_size, d.flip, d.batch_size = 8, 32, 32, 32, True, 2
    m = cfg.model
    m.teacher, m.teacher_ngf, m.ndf, m.n_layers_D = "resnet_6blocks", 8, 8, 2
    p = cfg.prune
    p.steps, p.sample_every, p.samples, p.finetune_steps = STEPS, 3, 2, FINETUNE
    p.lr_agent, p.lambda_resource, p.lds_k, p.checkpoint_every = 2e-2, 5.0, 2, 2
    p.lr = 1e-3                     # G's weights move too: their state must be restored
    #                                 (and the target's folder is prune/p0.5-adaptG)
    for k, v in prune.items():
        setattr(p, k, v)
    return cfg


def score(models):
    """A deterministic stand-in for FID: the sampled sub-generators' choice depends on
    their weights, so the best sample must be restored exactly."""
    x = torch.linspace(-1, 1, 3 * 32 * 32).reshape(1, 3, 32, 32)
    with torch.no_grad():
        return [{"fid": float(m(x).abs().mean()) * 100, "kid": None, "seconds": 0.0,
                 "actor": ""} for m in models]


def run_target(cfg, monkeypatch, kill_at=None, target=TARGET) -> dict:
    """One prune_target call; what it did: its row (None when killed), the agents' steps
    it ran and the (A, B) image shapes they got, the first step of each batch stream it
    opened and the shapes of its batches, the exported G's weights and the history it
    committed."""
    did = {"agent_steps": 0, "agent_shapes": set(), "streams": [], "stream_shapes": {},
           "row": None}
    step, save, batches = Pruner.step, prune_checkpoints.Checkpoints.save, TargetRun.batches

    def counted_step(self, A, B=None):
        did["agent_steps"] += 1
        did["agent_shapes"].add((tuple(A.shape), tuple(B.shape)))
        return step(self, A, B)

    def killing_save(self, phase, at, state):
        key = save(self, phase, at, state)
        if (phase, at) == kill_at:
            raise Killed(key)
        return key

    def recorded_batches(self, dataset, start):
        did["streams"].append(start)
        shapes = did["stream_shapes"].setdefault(start, set())
        stream = batches(self, dataset, start)      # opened now, as the code opens it

        def recorded():
            for batch in stream:
                shapes.add((tuple(batch["A"].shape), tuple(batch["B"].shape)))
                yield batch
        return recorded()

    monkeypatch.setattr(Pruner, "step", counted_step)
    monkeypatch.setattr(prune_checkpoints.Checkpoints, "save", killing_save)
    monkeypatch.setattr(TargetRun, "batches", recorded_batches)
    monkeypatch.setattr("ganc.prune.artifacts.write_deploy_files", lambda *a, **k: {})
    with stage_context(cfg, ray=False) as ctx:
        spec = {"config": ctx.cfg.to_dict(), **ctx.worker_spec()}
        try:
            did["row"] = prune_target(spec, target, scorer=score)
        except Killed:
            return did
        run = ctx.run
        prefix = did["row"]["prefix"]
        did["G"] = run.get_state_dict(f"{prefix}/model.pt")
        did["D"] = run.get_state_dict(f"{prefix}/net_D.pt")
        did["history"] = [json.loads(x) for x in
                          run.read_bytes(f"{prefix}/history.jsonl").decode().splitlines()]
        did["left"] = run.ls(f"{prefix}/state")
    return did


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        return run_target(tiny(tmp_path_factory.mktemp("ref") / "store"), mp)


def same_result(a: dict, b: dict) -> None:
    assert {k: a["row"][k] for k in SAME} == {k: b["row"][k] for k in SAME}
    for net in ("G", "D"):
        assert a[net].keys() == b[net].keys()
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net]), net
    assert a["history"] == b["history"]          # losses, ratios, sampled FIDs, fine-tune


def test_uninterrupted_reference(uninterrupted):
    did = uninterrupted
    assert did["agent_steps"] == STEPS and did["streams"] == [0, STEPS]
    assert did["row"]["chosen_by"] == "sampled-fid"
    assert len(did["history"][-1]["finetune"]) == FINETUNE
    assert did["left"] == []                     # committed: the checkpoints are removed


def test_killed_in_the_agents_phase_continues_from_its_checkpoint(
        tmp_path, monkeypatch, capsys, uninterrupted):
    cfg = tiny(tmp_path / "store")
    killed = run_target(cfg, monkeypatch, kill_at=("agents", 4))
    assert killed["row"] is None and killed["agent_steps"] == 4
    run = open_store(tmp_path / "store").run("resume")
    assert run.get_json("prune/p0.5-adaptG/state/latest.json") == {
        "phase": "agents", "step": 4, "key": "prune/p0.5-adaptG/state/agents/step-00000004.pt"}
    # one checkpoint kept: the one before it is removed once latest.json names the new one
    assert run.ls("prune/p0.5-adaptG/state/agents") == [
        "prune/p0.5-adaptG/state/agents/step-00000004.pt"]
    capsys.readouterr()
    resumed = run_target(cfg, monkeypatch)
    out = capsys.readouterr().out
    assert "[prune p0.5-adaptG] continuing from step 4 (checkpoint " \
           "prune/p0.5-adaptG/state/agents/step-00000004.pt)" in out
    assert "agents step 6/6" in out and "agents step 3/6" not in out
    # steps 5 and 6 only, on the batches the uninterrupted run had there
    assert resumed["agent_steps"] == STEPS - 4 and resumed["streams"] == [4, STEPS]
    same_result(resumed, uninterrupted)
    assert resumed["left"] == []


def test_killed_in_the_finetune_skips_the_agents(tmp_path, monkeypatch, capsys,
                                                 uninterrupted):
    cfg = tiny(tmp_path / "store")
    killed = run_target(cfg, monkeypatch, kill_at=("finetune", 2))
    assert killed["row"] is None and killed["agent_steps"] == STEPS
    capsys.readouterr()
    resumed = run_target(cfg, monkeypatch)
    assert "[prune p0.5-adaptG] continuing the fine-tune from step 2 (checkpoint " \
           "prune/p0.5-adaptG/state/" \
           "finetune/step-00000002.pt)" in capsys.readouterr().out
    # no agents' step, no agents' batch; the fine-tune's stream from its step 2
    assert resumed["agent_steps"] == 0 and resumed["streams"] == [STEPS + 2]
    same_result(resumed, uninterrupted)


def test_a_checkpoint_of_another_config_or_target_is_refused(tmp_path, monkeypatch,
                                                            capsys):
    cfg = tiny(tmp_path / "store")
    run_target(cfg, monkeypatch, kill_at=("agents", 2))
    run = open_store(tmp_path / "store").run("resume")
    before = run.get_json("prune/p0.5-adaptG/state/latest.json")
    for changed, target, field in ((tiny(tmp_path / "store", lr_agent=1e-2), TARGET,
                                    f"prune.lr_agent: recorded {cfg.prune.lr_agent!r}, now 0.01"),
                                   (cfg, 0.5000001,                     # also prune/p0.5-adaptG
                                    "prune.target: recorded 0.5, now 0.5000001")):
        with pytest.raises(ConfigError) as e:
            run_target(changed, monkeypatch, target=target)
        msg = str(e.value)
        assert "\n" not in msg and f"stage prune ran with another config ({field})" \
            in msg and "remove file://" in msg and \
            "prune/p0.5-adaptG/state to start target p0.5-adaptG" in msg
        assert run.get_json("prune/p0.5-adaptG/state/latest.json") == before     # left as it was
    # how, not what: another checkpoint period resumes the same work
    capsys.readouterr()
    done = run_target(tiny(tmp_path / "store", checkpoint_every=3), monkeypatch)
    assert "continuing from step 2" in capsys.readouterr().out
    assert done["agent_steps"] == STEPS - 2
