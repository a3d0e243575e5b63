"""A standalone ``ganc search`` restores its Tune experiment, and a fine-tune continues its
checkpoints, only under what they started with: otherwise one line names the stage and
the changed fields (the compress path's fingerprint machinery, ganc.resume)."""
from __future__ import annotations

import pytest

from ganc.errors import ConfigError
from ganc.search.cost import CostModel
from ganc.store import open_store

from .test_search import make_supernet_run, tiny_config


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


@pytest.mark.slow
def test_search_restore_under_another_method_budget_or_supernet_stops_in_one_line(
        ray_local, tmp_path):
    from ganc.search.driver import run_search
    url = str(tmp_path / "store")
    make_supernet_run(url)
    cfg = tiny_config(url)
    cfg.fid.num_actors, cfg.fid.kid = 1, False
    cfg.search.population, cfg.search.generations = 2, 1
    first = run_search(cfg, url)
    run = open_store(url).run("tiny")
    assert run.get_json("search/inputs.json")["fields"]["search.method"] == "evolution"

    with pytest.raises(ConfigError) as e:
        run_search(cfg, url, method="nsga2")
    msg = _one_line(e)
    assert ("stage search ran with another config (search.method: recorded 'evolution', "
            "now 'nsga2')") in msg, msg
    assert "--fresh" in msg and "--restart-from search" in msg

    with pytest.raises(ConfigError) as e:
        run_search(cfg, url, budget_macs=CostModel(32).macs("8_8_8_8_8_8_8_8"))
    assert "search.budgets_macs" in _one_line(e)

    # the supernet was trained again (other weights, another space) since the search began
    saved = run.read_bytes("supernet/final.pt")
    make_supernet_run(url, widths=(8, 6, 4))
    with pytest.raises(ConfigError) as e:
        run_search(cfg, url)
    msg = _one_line(e)
    assert "search.space" in msg and "supernet.sha256" in msg, msg
    run.write_bytes("supernet/final.pt", saved)

    again = run_search(cfg, url)          # unchanged: restored, nothing scored again
    assert again["search"]["resumed"] is True and again["config"] == first["config"]


def test_finetune_resume_under_another_config_stops_in_one_line(tmp_path):
    from ganc.search.finetune import finetune
    url = str(tmp_path / "store")
    make_supernet_run(url)
    cfg = tiny_config(url)
    cfg.finetune.steps, cfg.finetune.checkpoint_every = 4, 2
    chosen = "8_4_8_4_8_4_8_4"
    out = finetune(cfg, url, config=chosen, runner="local", score=False)
    assert out["steps"] == 4
    run = open_store(url).run("tiny")
    # what a crash after the last checkpoint leaves: checkpoints, no final weights
    run.rm("finetune/final.pt")
    run.rm("finetune/result.json")

    lr = cfg.finetune.lr
    cfg.finetune.lr = lr / 10
    with pytest.raises(ConfigError) as e:
        finetune(cfg, url, config=chosen, runner="local", score=False)
    msg = _one_line(e)
    assert (f"stage finetune ran with another config (finetune.lr: recorded {lr!r}, "
            f"now {lr / 10!r})") in msg, msg
    cfg.finetune.lr = lr
    with pytest.raises(ConfigError) as e:
        finetune(cfg, url, config="4_4_4_4_4_4_4_4", runner="local", score=False)
    assert ("finetune.subnet_config: recorded '8_4_8_4_8_4_8_4', now '4_4_4_4_4_4_4_4'"
            in _one_line(e))
    assert not run.exists("finetune/final.pt"), "a refused resume trained something"

    out = finetune(cfg, url, config=chosen, runner="local", score=False)   # unchanged
    assert out["steps"] == 4 and out["config"] == chosen
