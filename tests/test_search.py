"""Search: closed-form MACs, the evolution recipe (no Ray), the Tune searchers on a
synthetic objective, resume after a killed driver, and a real small search through the
FID pool."""
from __future__ import annotations

import itertools
import json
import math
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ganc import nn as gnn
from ganc.errors import ConfigError, GancError
from ganc.profile import count_macs, count_params
from ganc.search.cost import BudgetError, CostModel, check_budget
from ganc.search.evolution import DONE, Evolution
from ganc.search.pareto import dominates, pareto_front
from ganc.space import PRESETS, ChannelConfig, SearchSpace


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A small synthetic problem: 2 widths per position (256 configs); score = -(weighted
# width sum), so wider is better and the budget decides which config is optimal.
SPACE = SearchSpace.uniform("tiny", [16, 8])
COST = CostModel(size=32)
WEIGHTS = (8, 6, 4, 3, 2, 1, 5, 7)


def synthetic_score(cfg) -> float:
    return -float(sum(w * c for w, c in zip(WEIGHTS, ChannelConfig.parse(cfg))))


def all_configs(space=SPACE):
    return [ChannelConfig(t) for t in itertools.product(*space.choices)]


def budget_and_optimum():
    configs = all_configs()
    budget = sorted(COST.macs(c) for c in configs)[len(configs) // 3]
    best = min((c for c in configs if COST.macs(c) <= budget), key=synthetic_score)
    return budget, str(best)


# ---------------------------------------------------------------- cost (no Ray)
@pytest.mark.parametrize("size,norm", [(32, "instance"), (35, "batch"), (64, "none")])
def test_closed_form_macs_and_params_match_the_profiler(size, norm):
    rng = random.Random(size)
    space = PRESETS["channels-64-pix2pix"]
    cost = CostModel(size=size, norm=norm)
    for cfg in [space.smallest(), space.largest(), space.sample(rng), space.sample(rng)]:
        net = gnn.build("sub_mobile_resnet_9blocks", config=str(cfg), norm=norm)
        assert cost.macs(cfg) == count_macs(net, (1, 3, size, size))
        assert cost.params(cfg) == count_params(net)


def test_closed_form_macs_of_the_released_horse2zebra_config():
    assert CostModel(256).macs("16_16_32_16_32_32_16_16") == 2_546_204_672


def test_budget_below_the_smallest_subnet_fails_at_once_in_one_line():
    space = PRESETS["channels-64-cycleGAN"]
    smallest = CostModel(256).macs(space.smallest())
    with pytest.raises(BudgetError) as e:
        check_budget(space, smallest - 1, CostModel(256))
    msg = str(e.value)
    assert "\n" not in msg and f"{smallest:,}" in msg and str(space.smallest()) in msg
    assert isinstance(e.value, GancError)
    check_budget(space, smallest, CostModel(256))          # exactly the smallest fits
    from ganc.search.nsga2 import NSGA2Searcher
    from ganc.search.searcher import EvolutionSearcher
    for cls in (EvolutionSearcher, NSGA2Searcher):
        with pytest.raises(BudgetError):
            cls(space, smallest - 1, CostModel(256), population=4, generations=1)


# ---------------------------------------------------------------- evolution (no Ray)
def _drive(evo: Evolution, score=synthetic_score, on_ask=None):
    """Score every config the search asks for, in order; returns the asked configs."""
    asked = []
    while True:
        cfg = evo.ask()
        if cfg == DONE:
            return asked
        assert cfg is not None, "nothing is out, so the search must not wait"
        asked.append(cfg)
        if on_ask:
            on_ask(cfg)
        evo.tell(cfg, score(cfg))


def test_evolution_recipe_budget_cache_and_generation_shape():
    budget, best = budget_and_optimum()
    evo = Evolution(SPACE, budget, COST.macs, population=10, parent_ratio=0.3,
                    mutation_prob=0.2, mutation_ratio=0.5, generations=12, seed=1)
    assert evo.n_parents == 3
    sizes = []
    asked = _drive(evo, on_ask=lambda c: sizes.append(evo.generation))
    assert len(asked) == len(set(asked)), "a config was scored twice"
    assert all(COST.macs(c) <= budget for c in asked), "a config over budget was suggested"
    assert all(SPACE.contains(c) for c in asked)
    assert len(evo.history) == 12 and evo.done
    assert evo.best()[0][0] == best
    # the best score never gets worse from one generation to the next (parents survive)
    scores = [h["score"] for h in evo.history]
    assert all(b <= a for a, b in zip(scores, scores[1:]))


def test_evolution_state_roundtrip_continues_identically():
    budget, _ = budget_and_optimum()
    kw = dict(population=8, generations=6, seed=3)
    ref = Evolution(SPACE, budget, COST.macs, **kw)
    ref_asked = _drive(ref)
    evo = Evolution(SPACE, budget, COST.macs, **kw)
    asked = []
    while evo.generation < 2:           # stop in the middle of the search
        cfg = evo.ask()
        asked.append(cfg)
        evo.tell(cfg, synthetic_score(cfg))
    state = json.loads(json.dumps(evo.state_dict()))
    again = Evolution(SPACE, budget, COST.macs, **{**kw, "seed": 99})
    again.load_state_dict(state)
    asked += _drive(again)
    assert asked == ref_asked


def test_evolution_with_a_budget_only_the_smallest_fits():
    budget = COST.macs(SPACE.smallest())
    evo = Evolution(SPACE, budget, COST.macs, population=4, generations=3, seed=0,
                    max_attempts=5)
    asked = _drive(evo)
    assert asked == [str(SPACE.smallest())]     # scored once, then always from the cache


def test_evolution_makes_population_children_per_generation_like_the_reference():
    """evolution_search.py: parents = round(parent_ratio * P), then round(mutation_ratio * P)
    mutated and the rest of P crossed children per generation (100 = 50 + 50 beside 25
    parents for P = 100), not P - parents."""
    space = PRESETS["channels-64-pix2pix"]            # 7^8 configs: children rarely collide
    evo = Evolution(space, float("inf"), CostModel(16).macs, population=20, parent_ratio=0.25,
                    mutation_prob=0.3, mutation_ratio=0.5, generations=4, seed=0)
    assert (evo.n_parents, evo.n_mutations) == (5, 10)
    shapes = []
    while True:
        cfg = evo.ask()
        if cfg == DONE:
            break
        if not shapes or shapes[-1][0] != evo.generation:
            shapes.append((evo.generation, list(evo.members)))
        evo.tell(cfg, synthetic_score(cfg))
    for (g, members), (_, nxt) in zip(shapes, shapes[1:]):
        best5 = sorted(evo.score_of(c) for c in set(members))[:5]
        assert sorted(evo.score_of(c) for c in nxt[:5]) == best5, "parents: the best five"
        assert set(nxt[:5]) <= set(members)
        assert len(nxt) == 5 + 20 and len(set(nxt)) == 25
    assert [h.get("children") for h in evo.history] == (
        [{"mutation": 10, "crossover": 10}] * 3 + [None])
    assert [h["scored"] for h in evo.history] == [20, 20, 20, 20]


@pytest.mark.parametrize("weighted", [1.0, 2.0])
def test_weighted_first_generation_favours_narrow_widths(weighted):
    """--weighted_sample w: the narrowest width of each position is w times as likely as
    the widest in the first generation, with weights rising evenly in between."""
    from ganc.search.evolution import width_weights
    w = width_weights(5, 2.0)
    assert w[-1] / w[0] == pytest.approx(2.0) and len({b - a for a, b in zip(w, w[1:])}) == 1
    assert width_weights(5, 1.0) is None and width_weights(1, 2.0) is None
    space = PRESETS["channels-64-pix2pix"]
    evo = Evolution(space, float("inf"), CostModel(16).macs, population=600, generations=1,
                    seed=0, weighted_sample=weighted)
    widths = [w for c in evo.members for w in ChannelConfig.parse(c)]
    ratio = widths.count(16) / widths.count(64)
    assert abs(ratio - weighted) < 0.2 * weighted, ratio
    with pytest.raises(ConfigError, match="search.weighted_sample"):
        Evolution(space, 1e12, CostModel(16).macs, weighted_sample=0.5)


def test_evolution_rejects_bad_settings_in_one_line():
    for kw in [dict(population=1), dict(parent_ratio=1.0), dict(mutation_prob=1.5),
               dict(generations=0)]:
        with pytest.raises(ConfigError) as e:
            Evolution(SPACE, 1e12, COST.macs, **kw)
        assert "\n" not in str(e.value) and "search." in str(e.value)


def test_pareto_front_is_non_dominated():
    rows = [{"fid": f, "macs": m} for f, m in [(1, 9), (2, 5), (3, 5), (2, 6), (5, 1), (6, 1),
                                              (math.nan, 0)]]
    front = pareto_front(rows, ["fid", "macs"])
    assert [(r["fid"], r["macs"]) for r in front] == [(1, 9), (2, 5), (5, 1)]
    assert dominates((1, 1), (1, 2)) and not dominates((1, 2), (1, 2))


# ---------------------------------------------------------------- Tune (synthetic)
def synthetic_trainable(trial_cfg):
    from ray import tune
    cfg = trial_cfg["config"]
    tune.report({"score": synthetic_score(cfg), "fid": synthetic_score(cfg) + 1000.0,
                 "macs": COST.macs(cfg), "config_str": cfg,
                 "generation": trial_cfg["generation"]})


def test_evolution_searcher_through_tune_reaches_the_known_optimum(ray_local, tmp_path):
    from ray import tune
    from ganc.search.searcher import EvolutionSearcher
    budget, best = budget_and_optimum()
    searcher = EvolutionSearcher(SPACE, budget, COST, metric="score", mode="min",
                                 population=8, generations=6, seed=0)
    results = tune.Tuner(
        synthetic_trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=1000,
                                    max_concurrent_trials=2, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="syn", verbose=0),
    ).fit()
    df = results.get_dataframe()
    assert not results.errors
    assert len(df) == df["config_str"].nunique(), "a config was scored twice"
    assert (df["macs"] <= budget).all(), "a config over budget was suggested"
    assert set(df["generation"]) <= set(range(6))
    assert df.loc[df["score"].idxmin(), "config_str"] == best
    assert searcher.evo.done and searcher.evo.best()[0][0] == best


def test_nsga2_searcher_through_tune_returns_a_non_dominated_front(ray_local, tmp_path):
    from ray import tune
    from ganc.search.nsga2 import NSGA2Searcher
    budget, _ = budget_and_optimum()
    searcher = NSGA2Searcher(SPACE, budget, COST, population=6, generations=3, seed=0)
    results = tune.Tuner(
        synthetic_trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=1000,
                                    max_concurrent_trials=2, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="nsga", verbose=0),
    ).fit()
    df = results.get_dataframe()
    assert not results.errors
    assert 1 < len(df) <= 18
    assert len(df) == df["config_str"].nunique(), "a config was scored twice"
    assert (df["macs"] <= budget).all(), "a config over budget was scored"
    rows = df[["config_str", "fid", "macs"]].to_dict("records")
    front = pareto_front(rows, ["fid", "macs"])
    assert front
    vec = [(r["fid"], r["macs"]) for r in front]
    assert not any(dominates(a, b) for a in vec for b in vec)
    for r in rows:       # every other point is dominated by (or equal to) a front point
        v = (r["fid"], r["macs"])
        assert v in vec or any(dominates(f, v) for f in vec)


# ---------------------------------------------------------------- resume after a kill
# Two budgets searched side by side (one Tune trial each, a generation per scoring call)
# on a synthetic scorer; the first driver's scorer blocks on its third call (generation
# 2), the driver is SIGKILLed, and a second driver restores the experiment.
DRIVER = textwrap.dedent('''
    import json, os, sys, time
    import ray
    from ray import tune
    from ganc.config import SearchConfig
    from ganc.metrics.pool import Score
    from ganc.search.cost import CostModel
    from ganc.search.driver import _trial_resources, fit_searches, search_trial, searches_of
    from ganc.space import ChannelConfig, SearchSpace
    SPACE, COST, BUDGETS = SearchSpace.uniform("tiny", [16, 8]), CostModel(size=32), {budgets}

    def synthetic_score(cfg):
        return -float(sum(w * c for w, c in zip({weights}, ChannelConfig.parse(cfg))))

    storage, log, mode = sys.argv[1:4]

    class Client:
        calls = 0

        def score(self, specs, kid=None, failures="raise"):
            Client.calls += 1
            while Client.calls >= 3 and mode == "start":   # the first driver's searches
                time.sleep(0.2)                            # never finish generation 2
            with open(log, "a") as f:
                for s in specs:
                    f.write(json.dumps({{"search": s.tag.split("-")[0], "config": s.config}})
                            + "\\n")
            return [Score(i, s, synthetic_score(s.config) + 1000.0)
                    for i, s in enumerate(specs)]

    ray.init(address=os.environ["RAY_ADDRESS"], logging_level="ERROR")
    trainable = tune.with_resources(tune.with_parameters(
        search_trial, client=Client(), space=SPACE, cost=COST,
        settings=SearchConfig(population=6, generations=4, seed=5)), _trial_resources())
    results, resumed = fit_searches(trainable, searches_of("evolution", BUDGETS), storage)
    rows = {{}}
    from ganc.search.driver import rows_of
    for r in results:
        rows[r.config["search"]["index"]] = rows_of(r)
    print("FINISHED", resumed, json.dumps(rows))
''')


def _checkpoints(exp_dir):
    """{trial dir: batches of its newest checkpoint}, and the newest checkpoint's mtime."""
    import glob
    out, newest = {}, 0.0
    for p in glob.glob(os.path.join(exp_dir, "*", "checkpoint_*", "progress.json")):
        try:
            with open(p) as f:
                batches = json.load(f)["batches"]
        except (OSError, ValueError, KeyError):
            continue
        trial = os.path.dirname(os.path.dirname(p))
        out[trial] = max(out.get(trial, 0), batches)
        newest = max(newest, os.path.getmtime(p))
    return out, newest


def _state_mtime(exp_dir):
    import glob
    return max([os.path.getmtime(p) for p in
                glob.glob(os.path.join(exp_dir, "experiment_state-*.json"))] or [0.0])


class _Planted:
    """Unpickling it creates ``path`` (what a planted pickle could do, harmlessly)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.slow
def test_two_budget_search_resumes_after_a_killed_driver_and_rescores_nothing(ray_local,
                                                                             tmp_path):
    configs = all_configs()
    macs = sorted(COST.macs(c) for c in configs)
    budgets = [macs[len(macs) // 3], macs[2 * len(macs) // 3]]
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(budgets=budgets, weights=WEIGHTS))
    storage, log = tmp_path / "tune", tmp_path / "evals.jsonl"
    exp = storage / "tune"
    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address,
           "TUNE_GLOBAL_CHECKPOINT_S": "1", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": REPO}
    args = [sys.executable, str(script), str(storage), str(log)]
    first = subprocess.Popen(args + ["start"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 150
        while time.time() < deadline:   # both searches checkpointed generations 0-1, and
            done, newest = _checkpoints(exp)       # the experiment state saved after that
            if len(done) == 2 and min(done.values()) >= 2 and _state_mtime(exp) > newest + 1:
                break
            assert first.poll() is None, "the first driver exited early"
            time.sleep(0.5)
        else:
            pytest.fail("the searches never reached generation 2")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    before = [json.loads(line) for line in log.read_text().splitlines()]
    assert {e["search"] for e in before} == {"b0", "b1"}
    # whoever can write the store plants a tuner.pkl whose unpickling runs code (issue
    # 28): the resume never reads it (ganc resumes from its own JSON, not Tuner.restore)
    marker = tmp_path / "planted-pickle-ran"
    (exp / "tuner.pkl").write_bytes(pickle.dumps(_Planted(marker)))

    second = subprocess.run(args + ["restore"], env=env, capture_output=True, text=True,
                            timeout=200)
    assert not marker.exists(), "the planted tuner.pkl was unpickled"
    assert second.returncode == 0, second.stderr[-2000:]
    line = next(ln for ln in second.stdout.splitlines() if ln.startswith("FINISHED"))
    resumed, rows = line.split(" ", 2)[1:]
    rows = json.loads(rows)
    assert resumed == "True"
    evals = [json.loads(line) for line in log.read_text().splitlines()]
    assert evals[:len(before)] == before
    for k, budget in enumerate(budgets):
        scored = [e["config"] for e in evals if e["search"] == f"b{k}"]
        assert len(scored) == len(set(scored)), f"budget {k}: a config was scored twice"
        recorded = [r["config"] for r in rows[str(k)]]
        assert sorted(recorded) == sorted(scored), "every scored config is recorded once"
        assert all(COST.macs(c) <= budget for c in recorded)
        assert {r["budget"] for r in rows[str(k)]} == {budget}
        assert max(r["generation"] for r in rows[str(k)]) == 3      # ran to the end
        assert all(r["status"] == "ok" for r in rows[str(k)])


# ---------------------------------------------------------------- real search (pool)
def make_supernet_run(url, run_id="tiny", ngf=8, widths=(8, 4), teacher_ngf=16):
    """A run holding an (untrained) tiny supernet and teacher, as the supernet stage
    writes them: enough for the search, whose FIDs need no trained weights."""
    import torch
    from ganc.store import open_store
    store = open_store(url)
    run = store.run(run_id)
    torch.manual_seed(0)
    teacher = gnn.build("resnet_9blocks", ngf=teacher_ngf)
    run.put_torch("teacher/final_G.pth", teacher.state_dict())
    sup = gnn.build("super_mobile_resnet_9blocks", ngf=ngf)
    run.put_torch("supernet/final.pt", {
        "netG": "super_mobile_resnet_9blocks", "ngf": ngf, "norm": "instance", "dropout": 0.0,
        "input_nc": 3, "output_nc": 3,
        "search_space": SearchSpace.uniform("tiny", widths).to_dict(),
        "teacher": {"netG": "resnet_9blocks", "ngf": teacher_ngf, "norm": "instance",
                    "source": run.url("teacher/final_G.pth")},
        "state_dict": sup.state_dict(), "step": 1})
    return store


def tiny_config(url, run_id="tiny"):
    from ganc.config import RunConfig
    cfg = RunConfig(name=run_id)
    cfg.store.url = url
    d = cfg.data
    d.demo_n, d.demo_size, d.crop_size, d.load_size = 16, 32, 32, 32
    cfg.fid.num_actors, cfg.fid.batch_size, cfg.fid.kid_subset_size = 2, 8, 4
    cfg.search.population, cfg.search.generations = 3, 2
    return cfg


def test_search_budget_below_smallest_fails_before_starting_anything(ray_local, tmp_path):
    from ganc.search.driver import run_search
    url = str(tmp_path / "store")
    make_supernet_run(url)
    cfg = tiny_config(url)
    cfg.search.budget_macs = 1000
    with pytest.raises(BudgetError) as e:
        run_search(cfg, url)
    assert "4_4_4_4_4_4_4_4" in str(e.value) and "\n" not in str(e.value)
    assert not os.path.exists(tmp_path / "store" / "runs" / "tiny" / "search")


@pytest.mark.slow
def test_two_budget_search_through_the_fid_pool(ray_local, tmp_path):
    """Two budgets side by side on one pool: every config is scored exactly once, none
    failed, best.json has an entry per budget; KID only for the Pareto sets. (An FID actor
    killed mid-search: tests/test_faults.py, on a cluster.)"""
    import pyarrow.parquet  # noqa: F401
    from ganc.search.driver import run_search
    from ganc.store import open_store
    url = str(tmp_path / "store")
    make_supernet_run(url)
    cfg = tiny_config(url)
    cost = CostModel(32)
    space = SearchSpace.uniform("tiny", (8, 4))
    macs = sorted(cost.macs(c) for c in all_configs(space))
    cfg.search.budgets = [macs[-1], macs[len(macs) // 2]]     # at crop_size = eval size
    summary = run_search(cfg, url)
    run = open_store(url).run("tiny")
    for key in ("search/results.parquet", "search/pareto.parquet", "search/fid_vs_macs.png",
                "search/fid_vs_macs_1.png", "best.json", "search/teacher.json"):
        assert run.exists(key), key
    rows = run.get_parquet("search/results.parquet").to_pylist()
    assert set(rows[0]) >= {"method", "budget", "config", "macs", "params", "fid", "kid",
                            "generation", "trial_id", "status", "error", "attempts"}
    best = run.get_json("best.json")
    assert best == summary
    assert best["pool"]["restarts"] == 0 and best["pool"]["failed"] == 0
    assert [e["budget_macs"] for e in best["budgets"]] == cfg.search.budgets
    assert best["config"] == best["budgets"][0]["config"]          # primary at the top
    front = run.get_parquet("search/pareto.parquet").to_pylist()
    front_cfgs = {r["config"] for r in front}
    for k, budget in enumerate(cfg.search.budgets):
        mine = [r for r in rows if r["budget"] == budget]
        assert 1 <= len(mine) <= 6 and len({r["config"] for r in mine}) == len(mine), \
            f"budget {k}: a config was scored twice"
        assert all(r["status"] == "ok" and r["error"] is None for r in mine)
        for r in mine:
            assert r["macs"] == cost.macs(r["config"]) <= budget
            assert r["params"] == cost.params(r["config"])
            assert math.isfinite(r["fid"]) and r["generation"] in (0, 1) and r["trial_id"]
        entry = best["budgets"][k]
        assert entry["fid"] == min(r["fid"] for r in mine) and entry["n_failed"] == 0
        assert entry["n_scored"] == len(mine) and entry["method"] == "evolution"
        on_front = [r for r in front if r["budget"] == budget]
        vec = [(r["fid"], r["macs"]) for r in on_front]
        assert vec and not any(dominates(a, b) for a in vec for b in vec)
        assert len(on_front) == entry["n_pareto"]
        # KID: computed for the Pareto sets only (off during the search)
        assert all(r["kid"] is not None for r in on_front)
        assert all((r["kid"] is not None) == (r["config"] in front_cfgs) for r in mine)
    assert best["teacher"]["macs"] > best["macs"] and math.isfinite(best["teacher"]["fid"])
    assert best["search"]["population"] == 3 and best["search"]["method"] == "evolution"
    assert run.read_bytes("search/fid_vs_macs.png")[:8] == b"\x89PNG\r\n\x1a\n"


def test_pull_budget_picks_a_best_json_entry_and_refuses_a_model_of_another(tmp_path):
    from ganc.runs import PullError, pull
    from ganc.search.report import best_entry
    from ganc.store import open_store
    run = open_store(str(tmp_path / "store")).run("r")
    entries = [{"budget_macs": 3e9, "budget_recipe_macs": 3e9, "config": "16_16_32_16_32_32_16_16"},
               {"budget_macs": 1e9, "budget_recipe_macs": 4e9, "config": "8_8_16_8_16_16_8_8"}]
    run.put_json("best.json", {"config": entries[0]["config"], "budgets": entries})
    run.commit_unit("export", {"model.json": {"config": [16, 16, 32, 16, 32, 32, 16, 16]}})
    assert best_entry(run.get_json("best.json"))["config"] == entries[0]["config"]
    assert best_entry(run.get_json("best.json"), 4e9) == entries[1]   # as asked
    got = pull(run.url(), tmp_path / "out", budget=3e9)
    assert sorted(os.path.basename(p) for p in got) == ["best.json", "model.json"]
    with pytest.raises(PullError, match="not the best of budget 1e.09") as e:
        pull(run.url(), tmp_path / "out2", budget=1e9)
    assert "ganc export --subnet-config 8_8_16_8_16_16_8_8" in str(e.value)
    with pytest.raises(PullError, match=r"no search at budget 2e\+09 MACs \(budgets: 3e\+09, 1e\+09\)"):
        pull(run.url(), tmp_path / "out3", budget=2e9)
    assert not os.path.exists(tmp_path / "out2") and not os.path.exists(tmp_path / "out3")
